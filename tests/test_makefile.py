"""`make setup` says which torch it installs: pip's configured index by default (CI's local CPU
wheel; on a stock Linux machine PyPI's CUDA build), PyTorch's CPU index with TORCH_INDEX or
setup-cpu, and a last line naming the build. Checked with `make -n` (nothing is installed)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CPU_INDEX = "https://download.pytorch.org/whl/cpu"

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="no make program")


def dry_run(*args) -> list[str]:
    # as a user runs it: not under `make test`'s own make (whose MAKEFLAGS and MAKELEVEL would
    # add "make[1]: Entering directory" lines)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MAKELEVEL", "MFLAGS", "MAKEOVERRIDES")}
    r = subprocess.run(["make", "--no-print-directory", "-n", "-B", *args], cwd=ROOT, capture_output=True,
                       text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()


def torch_install(lines: list[str]) -> list[str]:
    return [ln for ln in lines if "pip install" in ln and "torch==" in ln]


def test_default_setup_uses_pips_own_index():
    (line,) = torch_install(dry_run("setup"))
    assert line.endswith('pip install --quiet "torch==2.13.0"') and "--index-url" not in line


@pytest.mark.parametrize("args", [["setup", f"TORCH_INDEX={CPU_INDEX}"], ["setup-cpu"]])
def test_cpu_index_on_request(args):
    (line,) = torch_install(dry_run(*args))
    assert f"--index-url {CPU_INDEX} " in line and line.endswith('"torch==2.13.0"')


def test_setup_names_the_build_it_installed():
    lines = dry_run("setup")
    note = next(i for i, ln in enumerate(lines) if "import torch" in ln)
    assert "torch.version.cuda" in " ".join(lines[note:note + 2]) and lines[-1].startswith("touch ")
    assert note > max(i for i, ln in enumerate(lines) if "pip install" in ln)      # after everything is installed

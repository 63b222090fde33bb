"""One namespace: the code installs as webtext.pipeline, webtext.stages and webtext.model.

A user's working directory often has folders of its own named ``model/`` or ``pipeline/``.
Before the namespace, ``from model.train import train`` run there imported the user's code
instead of ours. These tests run Python in such a directory, outside the checkout.
"""
import subprocess
import sys
import textwrap

PROBE = textwrap.dedent("""
    import importlib, pkgutil, sys
    import webtext
    from webtext.model.train import train          # ours, not ./model/train.py
    assert callable(train), train
    for pkg in ("webtext.pipeline", "webtext.stages", "webtext.model"):
        mod = importlib.import_module(pkg)
        for info in pkgutil.iter_modules(mod.__path__, pkg + "."):
            importlib.import_module(info.name)
    # importing every module of ours loaded nothing from the user's folders
    users = [m for m in sys.modules if m.split(".")[0] in ("pipeline", "stages", "model")]
    assert users == [], users
    import model.train                            # the user's own module still works
    assert model.train.USER is True
    print("ok", len([m for m in sys.modules if m.startswith("webtext.")]))
""")


def _user_dir(tmp_path):
    for pkg in ("model", "pipeline", "stages"):
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("raise ImportError('the user package was imported')\n"
                                                   if pkg != "model" else "")
    (tmp_path / "model" / "train.py").write_text("USER = True\ndef train():\n    raise SystemExit('user code')\n")
    return tmp_path


def test_our_modules_never_resolve_to_a_users_folders(tmp_path):
    cwd = _user_dir(tmp_path)
    r = subprocess.run([sys.executable, "-c", PROBE], cwd=cwd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.startswith("ok ") and int(r.stdout.split()[1]) > 40


def test_the_cli_runs_from_a_directory_with_a_model_folder(tmp_path):
    cwd = _user_dir(tmp_path)
    for argv in ([sys.executable, "-m", "webtext", "--help"], [sys.executable, "-m", "webtext.pipeline.cli", "--help"]):
        r = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "harvest" in r.stdout and "train" in r.stdout


def test_no_top_level_package_of_ours_is_installed(tmp_path):
    code = "import importlib.util as u; print([n for n in ('pipeline', 'stages', 'model') if u.find_spec(n)])"
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", (r.stdout, r.stderr)

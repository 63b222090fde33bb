"""Token corpus versions as tools see them: one folder per version (tokens/vNNNN/), the
latest pointer, the dataset card (HF datasets loads exactly the latest version), the
nanoGPT export in the version's folder, `webtext gc --keep N`, the demo's loading
recipe, and the migration of a work directory in the old flat layout."""

import glob
import json
import os
import shutil
import subprocess
import sys

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from typer.testing import CliRunner

from webtext.model.data import read_manifest
from webtext.pipeline.cli import app
from webtext.pipeline.demo import loading_recipe
from webtext.stages import shard as S
from webtext.stages import tokenlayout as L

from conftest import ROOT

TRAIN = ["train", "--model", "tiny", "--steps", "1", "--batch-size", "2", "--block-size", "16", "--device", "cpu",
         "--compile", "off"]


def _cli(work, *args):
    return CliRunner().invoke(app, ["--workdir", str(work), *args])


def _webtext(work, *args):
    return subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(work), *args],
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})


def _docs(work, version=0) -> dict[str, list[str]]:
    m = read_manifest(work / "tokens", version=version)
    out = {"train": [], "val": []}
    for f in m["shards"]:
        out[f["split"]] += S.read_tokens(work / "tokens" / f["file"])["doc_id"].to_pylist()
    return out


@pytest.fixture(scope="module")
def taken(demo_run, tmp_path_factory):
    """The demo corpus (versions 1 and 2) with one document taken down: version 3."""
    work = tmp_path_factory.mktemp("versions") / "w"
    shutil.copytree(demo_run, work, symlinks=True)
    before = _docs(work)
    doc = before["train"][0]
    url = pq.read_table(sorted((work / "clean").glob("clean-*.parquet")), columns=["doc_id", "url"],
                        filters=[("doc_id", "=", doc)]).column("url")[0].as_py()
    r = _cli(work, "remove", "--url", url, "--no-apply")
    assert r.exit_code == 0, r.output
    r = _cli(work, "shard", "--export", "nanogpt")
    assert r.exit_code == 0, r.output
    return work, doc


def test_a_folder_per_version_and_the_latest_pointer(taken):
    work, doc = taken
    tokens = work / "tokens"
    m = json.loads((tokens / "manifest.json").read_text())
    assert m["schema_version"] == L.LAYOUT_SCHEMA
    assert [v["folder"] for v in m["versions"]] == ["v0001", "v0002", "v0003"]
    assert (tokens / "LATEST").read_text().strip() == "v0003"
    assert (tokens / "latest").is_symlink() and os.readlink(tokens / "latest") == "v0003"
    assert not list(tokens.glob("*.arrow"))                        # nothing flat in tokens/ itself
    for v in m["versions"]:
        folder = tokens / v["folder"]
        assert sorted(p.relative_to(tokens).as_posix() for p in folder.glob("*.arrow")) == sorted(v["shards"])
        own = json.loads((folder / "manifest.json").read_text())
        assert own["version"] == v["version"]
        for s in own["shards"]:            # self-describing: folder-relative names, sizes, hashes
            assert S.read_tokens(folder / s["file"]).num_rows == s["docs"]
            assert S.sha256_file(folder / s["file"]) == s["sha256"]
    # version 3 reuses version 2's unchanged shards as hard links; the rewritten one is new
    v2, v3 = (tokens / "v0002"), (tokens / "v0003")
    shared = [p for p in v3.glob("*.arrow") if any(os.path.samefile(p, q) for q in v2.glob("*.arrow"))]
    assert shared and len(shared) < len(list(v3.glob("*.arrow")))
    assert doc not in _docs(work)["train"] and doc in _docs(work, version=2)["train"]


def test_datasets_loads_exactly_the_latest_version(taken, tmp_path):
    work, doc = taken
    tokens = work / "tokens"
    card = DatasetCard.load(tokens / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["default", "v0001", "v0002", "v0003"]
    m = json.loads((tokens / "manifest.json").read_text())
    cache = str(tmp_path / "hf")
    ds = datasets.load_dataset(str(tokens), cache_dir=cache)
    assert {s: ds[s].num_rows for s in ds} == {s: m["totals"][s]["docs"] for s in ("train", "val")}
    assert sorted(ds["train"]["doc_id"]) == sorted(_docs(work)["train"]) and doc not in ds["train"]["doc_id"]
    flat = datasets.load_dataset("arrow", data_files=str(tokens / "latest" / "train-*.arrow"), cache_dir=cache)
    assert flat["train"].num_rows == m["totals"]["train"]["docs"]
    old = datasets.load_dataset(str(tokens), "v0001", cache_dir=cache)
    v1 = read_manifest(tokens, version=1)["totals"]
    assert {s: old[s].num_rows for s in old} == {s: v1[s]["docs"] for s in ("train", "val")}
    old_flat = datasets.load_dataset("arrow", data_files=str(tokens / "v0001" / "train-*.arrow"), cache_dir=cache)
    assert old_flat["train"].num_rows == v1["train"]["docs"]


def test_nanogpt_export_is_the_versions_tokens(taken):
    work, _ = taken
    tokens = work / "tokens"
    m = read_manifest(tokens)
    for split in ("train", "val"):
        got = np.memmap(tokens / "latest" / "nanogpt" / f"{split}.bin", dtype=np.uint16, mode="r")
        want = [S.read_tokens(tokens / f["file"])["tokens"] for f in m["shards"] if f["split"] == split]
        want = np.concatenate([c.flatten().to_numpy() for t in want for c in t.chunks] or [np.empty(0, np.uint16)])
        assert np.array_equal(got, want) and len(got) == m["totals"][split]["tokens"]
    assert not (tokens / "nanogpt").exists()


def test_demo_recipe_runs(taken, tmp_path):
    work, _ = taken
    lines = loading_recipe(work)
    assert 4 <= len(lines) <= 10
    expr = {ln.split(":", 1)[0].strip(): ln.split(":", 1)[1].strip() for ln in lines[1:]}
    env = {"datasets": datasets, "pa": pa, "glob": glob, "np": np}
    ds = eval(expr["datasets"].replace(")", f", cache_dir={str(tmp_path / 'hf')!r})", 1), env)
    m = read_manifest(work / "tokens")
    assert ds["train"].num_rows == m["totals"]["train"]["docs"]
    tables = eval(expr["pyarrow"], env)
    assert sum(t.num_rows for t in tables) == m["totals"]["train"]["docs"]
    assert len(eval(expr["nanogpt"], env)) == m["totals"]["train"]["tokens"]
    assert "export --format parquet OUT" in expr["text"] and "OUT/data/*.parquet" in expr["text"]


def test_gc_keeps_pinned_versions_and_training_still_works(taken, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(taken[0], work, symlinks=True)
    r = _webtext(work, "gc", "--keep", "0")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "--keep" in r.stderr
    r = _cli(work, *TRAIN, "--corpus-version", "1", "--run-name", "old")
    assert r.exit_code == 0, r.output
    assert json.loads((work / "runs" / "old" / "corpus.json").read_text())["corpus_version"] == 1
    r = _cli(work, "gc", "--keep", "1", "--json")
    assert r.exit_code == 0, r.output
    res = json.loads(r.stdout.strip().splitlines()[-1])
    assert res["removed"] == [2] and res["pinned"] == {"1": ["old"]} and res["kept"] == [1, 3]
    tokens = work / "tokens"
    assert not (tokens / "v0002").exists() and (tokens / "v0001").is_dir()
    assert res["bytes_freed"] > 0 and res["files"] > 0
    m = json.loads((tokens / "manifest.json").read_text())
    assert [v["version"] for v in m["versions"]] == [1, 3] and not any(f.startswith("v0002/") for f in m["shard_files"])
    assert [c["config_name"] for c in DatasetCard.load(tokens / "README.md").data.configs] == ["default", "v0001", "v0003"]
    r = _cli(work, "gc", "--keep", "1", "--force")
    assert r.exit_code == 0 and "removed corpus version(s) 1" in r.stdout
    assert not (tokens / "v0001").exists() and (tokens / "LATEST").read_text().strip() == "v0003"
    r = _webtext(work, "train", "--corpus-version", "1")        # one error line (after the stage's header)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("error: tokens/ has no corpus version 1")
    assert "gc" in r.stderr and r.stderr.count("error") == 1
    r = _cli(work, *TRAIN, "--run-name", "new")
    assert r.exit_code == 0, r.output
    assert json.loads((work / "runs" / "new" / "corpus.json").read_text())["corpus_version"] == 3
    ds = datasets.load_dataset(str(tokens), cache_dir=str(tmp_path / "hf"))
    assert ds["train"].num_rows == m["totals"]["train"]["docs"]


def _flatten(work):
    """Rebuild the old flat layout (webtext before version folders) from a foldered
    tokens/: v1's shards as train-00000.arrow, later versions' new ones as
    train-v0002-00000.arrow, a manifest listing those names."""
    tokens = work / "tokens"
    m = json.loads((tokens / "manifest.json").read_text())
    files, flat_of, versions = {}, {}, []
    for v in m["versions"]:
        n, shards = {"train": 0, "val": 0}, []
        for f in v["shards"]:
            e = m["shard_files"][f]
            if e.get("origin"):
                name = flat_of[e["origin"]]
            else:
                tag = f"v{v['version']:04d}-" if v["version"] > 1 else ""
                name = f"{e['split']}-{tag}{n[e['split']]:05d}.arrow"
                n[e["split"]] += 1
                shutil.copy2(tokens / f, tokens / name)
                files[name] = {k: e[k] for k in ("split", "docs", "tokens", "sha256")} | {"file": name,
                                                                                          "version": v["version"]}
            flat_of[f] = name
            shards.append(name)
        versions.append({k: x for k, x in v.items() if k != "folder"} | {"shards": shards})
    for v in m["versions"]:
        shutil.rmtree(tokens / v["folder"])
    for p in ("LATEST", "latest", "README.md"):
        (tokens / p).unlink()
    old = {k: x for k, x in m.items() if k != "folder"} | {
        "schema_version": "4", "versions": versions, "shard_files": files,
        "shards": [files[f] for f in versions[-1]["shards"]]}
    (tokens / "manifest.json").write_text(json.dumps(old))
    return old


def test_a_flat_work_directory_is_migrated(demo_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(demo_run, work, symlinks=True)
    want = {v: _docs(work, v) for v in (1, 2)}
    old = _flatten(work)
    tokens = work / "tokens"
    assert (tokens / "train-v0002-00000.arrow").exists() and not (tokens / "v0001").exists()
    assert _docs(work, 1) == want[1]                    # readers still read the old layout
    r = _cli(work, "shard")
    assert r.exit_code == 0, r.output
    assert not list(tokens.glob("*.arrow"))
    m = json.loads((tokens / "manifest.json").read_text())
    assert [v["folder"] for v in m["versions"]] == ["v0001", "v0002"] and m["version"] == old["version"]
    assert {v: _docs(work, v) for v in (1, 2)} == want
    assert os.path.samefile(tokens / "v0001" / "train-00000.arrow", tokens / "v0002" / "train-00000.arrow")
    assert (tokens / "latest").resolve() == (tokens / "v0002").resolve()
    ds = datasets.load_dataset(str(tokens), cache_dir=str(tmp_path / "hf"))
    assert ds["train"].num_rows == m["totals"]["train"]["docs"]

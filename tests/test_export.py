"""The text release (`webtext export --format parquet|jsonl [--version N] OUT`) on the demo
corpus (two versions), read back with the tools people use: huggingface_hub's
DatasetCard, HF datasets, duckdb and pyarrow; takedowns stay out of every version."""

import gzip
import json
import shutil
import subprocess
import sys

import datasets
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from typer.testing import CliRunner

from webtext.model.data import read_manifest
from webtext.pipeline.cli import app
from webtext.pipeline.export import RELEASE, export_text
from webtext.stages import shard as S
from webtext.stages.urls import normalize_url_id

COLUMNS = ["doc_id", "url", "text", "karma", "subreddits", "first_seen", "domain", "lang", "extractor",
           "source", "captured_at"]


def _export(work, out, *args):
    return CliRunner().invoke(app, ["--workdir", str(work), "export", *args, str(out)])


def _version_docs(work, version=0) -> dict[str, set[str]]:
    m = read_manifest(work / "tokens", version=version)
    docs = {"train": set(), "val": set()}
    for f in m["shards"]:
        docs[f["split"]] |= set(S.read_tokens(work / "tokens" / f["file"])["doc_id"].to_pylist())
    return docs


def _clean(work) -> dict[str, dict]:
    """The newest clean row of each doc_id."""
    rows = {}
    for p in sorted((work / "clean").glob("clean-*.parquet")):
        for r in pq.read_table(p).to_pylist():
            rows[r["doc_id"]] = r
    return rows


@pytest.fixture(scope="module")
def release(demo_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("release") / "v2"
    r = _export(demo_run, out, "--format", "parquet")
    assert r.exit_code == 0, r.output
    return out


def test_card_names_the_data_files_and_reports_the_corpus(demo_run, release):
    card = DatasetCard.load(release / "README.md")
    (config,) = card.data.configs
    files = {d["split"]: d["path"] for d in config["data_files"]}
    assert set(files) == {"train", "val"}
    on_disk = sorted(p.relative_to(release).as_posix() for p in (release / "data").iterdir())
    assert sorted(files["train"] + files["val"]) == on_disk
    assert all(f.startswith("data/train-") for f in files["train"]) and files["val"][0].endswith("-of-00001.parquet")
    assert card.data.license == "other"
    text = card.text
    for heading in ("## Funnel", "## Decontamination", "## Sources and dates", "## Filters and settings",
                    "## Licensing", "## Removal requests"):
        assert heading in text
    overlap = json.loads((demo_run / "clean" / "_meta" / "overlap.json").read_text())
    assert overlap["benchmarks"][0]["benchmark"] in text                  # the overlap report
    assert "| decontaminate |" in text and "| dedup |" in text             # the funnel
    assert '"min_words": 100' in text and '"threshold": 0.8' in text       # extract's and dedup's settings
    assert "RS_2026-01.zst" in text and "r/programming" in text and "2026-01-01" in text
    assert "webtext remove --url URL" in text and "belongs to its authors" in text


def test_datasets_and_duckdb_load_exactly_the_version(demo_run, release):
    docs = _version_docs(demo_run)
    ds = datasets.load_dataset(str(release))
    assert set(ds) == {"train", "val"}
    assert ds["train"].num_rows == len(docs["train"]) and ds["val"].num_rows == len(docs["val"])
    assert ds["train"].column_names == COLUMNS
    assert ds["train"].features["first_seen"].dtype.startswith("timestamp")
    assert set(ds["train"]["doc_id"]) == docs["train"] and set(ds["val"]["doc_id"]) == docs["val"]
    n = duckdb.sql(f"select count(*) from '{release}/data/*.parquet'").fetchall()[0][0]
    assert n == len(docs["train"]) + len(docs["val"]) == read_manifest(demo_run / "tokens")["totals"]["train"]["docs"] \
        + read_manifest(demo_run / "tokens")["totals"]["val"]["docs"]
    assert duckdb.sql(f"select typeof(first_seen) from '{release}/data/*.parquet' limit 1").fetchall()[0][0] \
        == "TIMESTAMP WITH TIME ZONE"
    # the text is clean/'s (after decontamination), first_seen the same instant as clean/'s
    clean = _clean(demo_run)
    t = pq.read_table(release / "data")
    assert t.schema.field("first_seen").type.tz == "UTC"
    for r in t.to_pylist():
        c = clean[r["doc_id"]]
        assert r["text"] == c["text"] and r["url"] == c["url"] and r["karma"] == c["karma"]
        assert r["first_seen"] == c["first_seen"]
        assert r["source"] == c["source"]
        assert (r["captured_at"] is None) == (c["captured_at"] is None)


def test_an_old_version_and_a_takedown_after_it(demo_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(demo_run, work)
    v1 = _version_docs(work, version=1)
    clean = _clean(work)
    doc_id = min(v1["train"])
    url = clean[doc_id]["url"]
    assert normalize_url_id(url)[0] == doc_id
    assert _export(work, tmp_path / "before", "--format", "parquet", "--version", "1").exit_code == 0
    before = datasets.load_dataset(str(tmp_path / "before"))
    assert before["train"].num_rows == len(v1["train"]) and doc_id in before["train"]["doc_id"]

    r = CliRunner().invoke(app, ["--workdir", str(work), "remove", "--url", url])
    assert r.exit_code == 0, r.output
    assert doc_id in _version_docs(work, version=1)["train"]           # version 1's shards still hold it
    for version in ("1", "2", "3"):
        out = tmp_path / f"v{version}"
        r = _export(work, out, "--format", "parquet", "--version", version)
        assert r.exit_code == 0, r.output
        ids = duckdb.sql(f"select doc_id from '{out}/data/*.parquet'").fetchall()
        assert doc_id not in {i for (i,) in ids}
        if version == "1":
            assert len(ids) == len(v1["train"]) + len(v1["val"]) - 1
            assert "1 of this version's documents were left out" in (out / "README.md").read_text()

    # a domain takedown recorded but not yet applied to any version: still out of every release
    domain = min(clean[d]["domain"] for d in v1["val"])
    r = CliRunner().invoke(app, ["--workdir", str(work), "remove", "--no-apply", "--domain", domain])
    assert r.exit_code == 0, r.output
    r = _export(work, tmp_path / "d1", "--format", "jsonl", "--version", "1")
    assert r.exit_code == 0, r.output
    ds = datasets.load_dataset("json", data_files=str(tmp_path / "d1" / "data" / "*.jsonl.gz"))["train"]
    assert domain not in ds["domain"] and doc_id not in ds["doc_id"]
    on_domain = {d for d in v1["train"] | v1["val"] if clean[d]["domain"] == domain}
    assert on_domain and ds.num_rows == len(v1["train"]) + len(v1["val"]) - len(on_domain | {doc_id})


def test_jsonl_loads_with_the_json_builder(demo_run, tmp_path):
    out = tmp_path / "j"
    r = _export(demo_run, out, "--format", "jsonl", "--version", "1")
    assert r.exit_code == 0, r.output
    v1 = _version_docs(demo_run, version=1)
    ds = datasets.load_dataset("json", data_files={s: str(out / "data" / f"{s}-*.jsonl.gz") for s in ("train", "val")})
    assert ds["train"].num_rows == len(v1["train"]) and ds["val"].num_rows == len(v1["val"])
    assert ds["train"].column_names == COLUMNS
    # ISO 8601 strings in UTC, which the json builder reads back as timestamps
    assert ds["train"].features["first_seen"].dtype.startswith("timestamp")
    with gzip.open(next((out / "data").glob("train-*.jsonl.gz")), "rt") as f:
        line = json.loads(f.readline())
    assert line["first_seen"].endswith("Z") and line["doc_id"] in v1["train"]
    card = DatasetCard.load(out / "README.md")
    assert [d["path"][0].endswith(".jsonl.gz") for d in card.data.configs[0]["data_files"]] == [True, True]


def test_files_are_cut_by_size_and_a_newer_revision_is_not_in_the_version(demo_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(demo_run, work)
    # a revisit that came after the last version was cut: a later clean shard, new text
    first = pq.read_table(sorted((work / "clean").glob("clean-*.parquet"))[0])
    row = first.slice(0, 1)
    row = row.set_column(row.schema.get_field_index("text"), row.schema.field("text"),
                         pa.array(["a newer revision " * 50], pa.string()))
    pq.write_table(row, work / "clean" / "clean-00099.parquet")
    s = export_text(work, tmp_path / "out", "parquet", file_bytes=8_000)
    assert len(s.files["train"]) > 2
    assert s.files["train"][-1].endswith(f"-of-{len(s.files['train']):05d}.parquet")
    t = pq.read_table(tmp_path / "out" / "data")
    assert t.num_rows == sum(len(v) for v in _version_docs(work).values())
    assert t["doc_id"].to_pylist().count(row["doc_id"][0].as_py()) == 1
    assert "a newer revision" not in "".join(t["text"].to_pylist())
    assert pq.read_schema(tmp_path / "out" / "data" / s.files["train"][0].split("/")[1]).names == RELEASE.names


def _cli(work, *args):
    """The real entry point (one line on stderr, exit code), as a user runs it."""
    return subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(work), "export", *map(str, args)],
                          check=False, capture_output=True, text=True, timeout=120)


def _one_error(r, needle):
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("error: ") and needle in errors[0], r.stderr


def test_bad_input_is_one_line_and_exit_2(demo_run, tmp_path):
    _one_error(_cli(demo_run, "--format", "parquet", "--version", "9", tmp_path / "x"),
               "tokens/ has no corpus version 9. Versions: 1, 2")
    empty = tmp_path / "empty"
    (empty / "clean").mkdir(parents=True)
    _one_error(_cli(empty, "--format", "parquet", tmp_path / "y"), "Run `webtext shard`")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    _one_error(_cli(demo_run, "--format", "parquet", "--hf", tmp_path / "z"), "--hf")
    _one_error(_cli(demo_run, "--format", "parquet"), "OUT")
    _one_error(_cli(demo_run, "--version", "1", tmp_path / "z"), "--format")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    _one_error(_cli(demo_run, "--format", "jsonl", tmp_path / "full"), "not an empty folder")


def test_a_failed_export_leaves_no_half_release(demo_run, tmp_path, monkeypatch):
    import webtext.pipeline.exportcard as exportcard

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(exportcard, "write_card", broken)
    with pytest.raises(OSError, match="disk full"):
        export_text(demo_run, tmp_path / "out", "parquet")
    assert list(tmp_path.iterdir()) == []                 # neither OUT nor its staging folder
    monkeypatch.undo()
    (tmp_path / "out").mkdir()                            # an empty folder is a fine OUT
    s = export_text(demo_run, tmp_path / "out", "parquet")
    assert (tmp_path / "out" / "README.md").is_file() and len(s.files["val"]) == 1

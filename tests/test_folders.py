"""Stage folders hold their data only, as the real tools see it: duckdb's ``'<stage>/*.parquet'``
and ``datasets.load_dataset(<stage folder>)`` read exactly the rows the stage's stats count;
bookkeeping lies under ``<stage>/_meta/``; no Parquet file is empty; every time column is an
Arrow timestamp; and a work directory of the old layout and schema is migrated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webtext.pipeline import layout
from webtext.pipeline.schemas import REMOVALS, SCHEMA_VERSION, TIME_FIELDS, UTC_S, unix_seconds

DATA_STAGES = ("urls", "docs", "dedup", "clean")


def stage_out(workdir: Path, folder: str) -> int:
    return json.loads(layout.stats_path(workdir / folder).read_text())["out"]


def empty_parquet(workdir: Path) -> list[str]:
    return [str(p.relative_to(workdir)) for p in Path(workdir).rglob("*.parquet")
            if ".tmp-" not in p.name and pq.read_metadata(p).num_rows == 0]


@pytest.mark.parametrize("folder", DATA_STAGES)
def test_duckdb_counts_a_stage_folder_as_its_stats_do(demo_run, folder):
    import duckdb

    n = duckdb.sql(f"select count(*) from '{demo_run / folder}/*.parquet'").fetchall()[0][0]
    assert n == stage_out(demo_run, folder) > 0


def test_warc_parquet_files_are_fetch_logs_only(demo_run):
    import duckdb

    files = sorted((demo_run / "warc").glob("*.parquet"))
    assert files and all(p.name.startswith("fetchlog-") for p in files)
    n = duckdb.sql(f"select count(*) from '{demo_run / 'warc'}/*.parquet'").fetchall()[0][0]
    assert n == json.loads(layout.stats_path(demo_run / "warc").read_text())["in"]


@pytest.mark.parametrize("folder", DATA_STAGES)
def test_load_dataset_reads_exactly_the_data_rows(demo_run, folder, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    card = DatasetCard.load(demo_run / folder / "README.md")
    assert card.data["configs"][0]["data_files"][0]["path"] == layout.DATA_FILES[folder]
    ds = datasets.load_dataset(str(demo_run / folder), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == stage_out(demo_run, folder)
    assert "doc_id" in ds.column_names if folder != "urls" else "url_id" in ds.column_names


def test_bookkeeping_lies_under_meta(demo_run):
    for folder in layout.STAGE_FOLDERS:
        d = demo_run / folder
        assert layout.stats_path(d).is_file() and layout.config_path(d).is_file() and layout.done_dir(d).is_dir()
        stray = [p.name for p in d.iterdir() if p.name.startswith("_") and p.name not in (layout.META, "_versions")]
        assert not stray, f"{folder}/ keeps {stray} beside its data"
    assert layout.meta(demo_run / "dedup", layout.CLUSTERS).is_file()
    assert layout.meta(demo_run / "clean", layout.OVERLAP).is_file()
    assert any(layout.meta(demo_run / "urls", layout.PARTS).glob("*.parquet"))
    assert not layout.legacy_paths(demo_run)


def test_no_empty_parquet_file_in_the_demo(demo_run):
    assert not empty_parquet(demo_run)
    # the demo's decontamination removes nothing from some shards: their removals file is absent
    shards = sorted((demo_run / "clean").glob("clean-*.parquet"))
    removals = sorted(layout.meta(demo_run / "clean", layout.REMOVALS).glob("*.parquet"))
    assert len(removals) < len(shards)


def test_every_time_column_is_a_utc_timestamp(demo_run):
    """The schemas declare timestamp[s, tz=UTC]; Parquet has no seconds unit, so a file holds
    TIMESTAMP(MILLIS, UTC), which pyarrow reads as timestamp[ms, tz=UTC] of whole seconds."""
    from webtext.pipeline import schemas

    for name in dir(schemas):
        if isinstance(schema := getattr(schemas, name), pa.Schema):
            for f in schema:
                assert f.name not in TIME_FIELDS or f.type == UTC_S == pa.timestamp("s", tz="UTC"), (name, f)
    seen = set()
    for p in demo_run.rglob("*.parquet"):
        t = pq.read_table(p)
        assert t.schema.metadata[b"webtext.schema_version"].decode() == SCHEMA_VERSION, p
        for f in t.schema:
            if f.name in TIME_FIELDS:
                assert pa.types.is_timestamp(f.type) and f.type.tz == "UTC", (p, f)
                assert t[f.name].cast(UTC_S).equals(t[f.name].cast(UTC_S)), p     # whole seconds: a safe cast
                seen.add(f.name)
    assert seen == set(TIME_FIELDS)
    docs = pq.read_table(sorted((demo_run / "docs").glob("docs-*.parquet"))[0], columns=["first_seen"])
    assert docs["first_seen"][0].as_py().year == 2026          # the demo's submissions: January 2026
    assert schemas.unix_seconds(docs)["first_seen"][0].as_py() == int(docs["first_seen"][0].as_py().timestamp())


def test_a_stage_that_drops_everything_writes_no_parquet(tmp_path):
    """decontaminate (policy drop) over documents that each carry a LAMBADA passage: no clean
    file at all, the removals file holds every row, a dedup shard with no rows left no file,
    and the tasks still count as done (a rerun runs nothing)."""
    from conftest import doc_row, make_context, shared_path

    from webtext.pipeline.io import write_parquet
    from webtext.pipeline.schemas import DEDUP
    from webtext.stages import decontaminate

    bench_dir = shared_path("benchmarks")
    lines = (bench_dir / "lambada" / "lambada_test.jsonl").read_text().splitlines()
    rows = [doc_row(f"d{i}", "An introduction of some length. " + json.loads(lines[i])["text"]) for i in range(3)]
    write_parquet(pa.Table.from_pylist(rows, schema=DEDUP), tmp_path / "dedup" / "dedup-00000.parquet", DEDUP)
    assert not write_parquet(DEDUP.empty_table(), tmp_path / "dedup" / "dedup-00001.parquet", DEDUP)
    assert not (tmp_path / "dedup" / "dedup-00001.parquet").exists()         # no rows: no file
    cfg = {"benchmarks": ["lambada"], "benchmark_dir": str(bench_dir), "fp_probes": 1000, "policy": "drop"}
    out = decontaminate.run(make_context(tmp_path, decontaminate=cfg))
    again = decontaminate.run(make_context(tmp_path, decontaminate=cfg))
    assert out["in"] == 3 and out["out"] == 0 and out["dropped"] == {"benchmark_overlap": 3}
    assert not list((tmp_path / "clean").glob("*.parquet"))
    log = pq.read_table(layout.meta(tmp_path / "clean", layout.REMOVALS) / "removals-00000.parquet")
    assert set(log["doc_id"].to_pylist()) == {"d0", "d1", "d2"} and set(log["action"].to_pylist()) == {"document_dropped"}
    assert again["tasks_run"] == 0 and again["out"] == 0
    assert not empty_parquet(tmp_path)


def make_old_layout(workdir: Path) -> None:
    """Turn a work directory of today's layout into one of schema version 4: sidecars back
    beside the data as ``_<name>`` (completion records renamed with them), time columns
    back to int64 unix seconds."""
    for p in workdir.rglob("*.parquet"):
        t = unix_seconds(pq.read_table(p))
        meta = {**t.schema.metadata, b"webtext.schema_version": b"4"}
        pq.write_table(t.replace_schema_metadata(meta), p)
    for folder, names in layout.LEGACY.items():
        fdir = workdir / folder
        for rec in layout.done_dir(fdir).glob("*.json"):
            r = json.loads(rec.read_text())
            r["outputs"] = {(f"_{n[len(layout.META) + 1:]}" if n.startswith(layout.META + "/") else n): v
                            for n, v in r["outputs"].items()}
            for n, v in r["outputs"].items():       # before version 5 a writer of no rows wrote an empty file
                if v.get("absent") and n.startswith(f"_{layout.REMOVALS}/"):
                    pq.write_table(REMOVALS.empty_table(), layout.meta(fdir, n[1:]))
                    v.pop("absent")
                    v["size"] = layout.meta(fdir, n[1:]).stat().st_size
            rec.write_text(json.dumps(r))
        for name in names:
            if layout.meta(fdir, name).exists():
                layout.meta(fdir, name).rename(fdir / f"_{name}")
        (fdir / "README.md").unlink(missing_ok=True)
        shutil.rmtree(layout.meta(fdir, layout.DECIDED), ignore_errors=True)     # version 6's: not in the old layout
        if layout.meta_dir(fdir).exists():
            assert not any(layout.meta_dir(fdir).iterdir())
            layout.meta_dir(fdir).rmdir()


def test_old_layout_work_directory_is_migrated(demo_run, tmp_path):
    from webtext.pipeline.export import export_text
    from webtext.pipeline.funnel import collect
    from webtext.pipeline.report import collect_report
    from webtext.pipeline.status import collect_status

    old = tmp_path / "old"
    shutil.copytree(demo_run, old, symlinks=True)
    make_old_layout(old)
    assert (old / "dedup" / "_clusters.parquet").exists() and (old / "clean" / "_removals").is_dir()
    assert empty_parquet(old)           # the old writers' empty removals files
    old_docs = pq.read_table(next((old / "docs").glob("*.parquet")), columns=["first_seen"])
    assert old_docs.schema.field("first_seen").type == pa.int64() and 1.7e9 < old_docs["first_seen"][0].as_py() < 1.8e9

    st = collect_status(old)            # migrates, then reads
    assert all(s["done"] for s in st["stages"] if s["stage"] != "train")
    assert not layout.legacy_paths(old) and not empty_parquet(old)
    assert layout.meta(old / "dedup", layout.CLUSTERS).is_file()
    assert (old / "dedup" / "README.md").is_file()
    assert [s["out"] for s in collect(old)["stages"]] == [s["out"] for s in collect(demo_run)["stages"]]
    r = collect_report(old)
    assert r["dedup"] == collect_report(demo_run)["dedup"]
    assert r["documents"] == collect_report(demo_run)["documents"]
    s = export_text(old, tmp_path / "release")
    assert s.rows == export_text(demo_run, tmp_path / "release-new").rows

    # Finished tasks stay finished: their completion records name the outputs where they now
    # lie (the executor skips a task whose recorded outputs are there, at their size; this
    # test rewrote the Parquet files, so only the JSON and npy outputs keep theirs).
    renamed = 0
    for rec in layout.done_dir(old / "clean").glob("*.json"):
        for name, info in json.loads(rec.read_text())["outputs"].items():
            assert info.get("absent") or (old / "clean" / name).exists() or (rec.name.startswith(
                ("filters", "probe", "scan", "common")) and name.count("/") == 0), (rec.name, name)
            renamed += name.startswith(f"{layout.META}/{layout.REMOVALS}/")
            if name.endswith((".json", ".npy")) and "/" in name:
                assert (old / "clean" / name).stat().st_size == info["size"]
    assert renamed > 0

    # A stage run over the old int64 files (rewritten here, so every task runs again) reads
    # them as timestamps and writes today's schema, with the same result.
    from conftest import make_context

    from webtext.stages import dedup

    again = dedup.run(make_context(old))
    assert again["tasks_run"] > 0 and again["out"] == stage_out(demo_run, "dedup")
    for p in [*layout.meta(old / "dedup", layout.SIGNATURES).glob("*.parquet"), *(old / "dedup").glob("*.parquet")]:
        assert pq.read_schema(p).field("first_seen").type == pa.timestamp("ms", tz="UTC"), p
    assert not empty_parquet(old / "dedup")

"""A work directory on object storage: the demo pipeline with ``--workdir s3://...`` against
moto's S3 server on loopback gives the local run's bytes, keeps everything it needs in the
bucket (a fresh scratch redoes nothing), and commits a task only with its marker."""

import importlib.util
import io
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from webtext.pipeline.config import load_config
from webtext.pipeline.demo import demo_overrides
from webtext.pipeline.demoweb import DemoProxy, build_demo_web
from webtext.pipeline.errors import ConfigError, WebtextError
from webtext.pipeline.executor import Context, Task, _execute
from webtext.pipeline.remote import StoreSpec, open_store, redact
from webtext.pipeline.run import ORDER, run_all
from webtext.pipeline.stats import Stats

from conftest import KEY, SECRET, gcs_emulator, moto_s3, pipeline_outputs, s3_url as _url

if importlib.util.find_spec("moto") is None:
    pytest.skip("moto is not installed (pip install 'moto[server]')", allow_module_level=True)



@pytest.fixture(scope="module")
def s3():
    with moto_s3() as server:
        yield server


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("s3")
    web = build_demo_web(tmp / "web", n_articles=40)
    with DemoProxy(web.pages, web.archive) as proxy:
        _pipeline(tmp / "local", web, proxy)
        yield tmp, web, proxy


def _pipeline(workdir, web, proxy, scratch: Path | None = None, log: io.StringIO | None = None) -> list[dict]:
    over = demo_overrides(web, proxy.url, steps=1, workers=2)
    if scratch:
        over["run"]["scratch"] = str(scratch)
    console = Console(file=log or io.StringIO(), width=200)
    ctx = Context(workdir, load_config(None, over), console)
    try:
        return run_all(ctx, ORDER[:-1])
    finally:
        ctx.close()


def _download(fs, prefix: str, dest: Path) -> None:
    for info in fs.get_file_info(pafs.FileSelector(f"webtext-test/{prefix}", recursive=True)):
        if info.type == pafs.FileType.File:
            p = dest / info.path[len(f"webtext-test/{prefix}/"):]
            p.parent.mkdir(parents=True, exist_ok=True)
            with fs.open_input_stream(info.path, compression=None) as src:
                p.write_bytes(src.read())


def _allocated(folder: Path) -> tuple[int, int]:
    """(bytes of the data files, bytes they occupy on disk) under ``folder``."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files), sum(p.stat().st_blocks * 512 for p in files)


@pytest.fixture(scope="module")
def in_bucket(s3, demo, tmp_path_factory):
    """The demo pipeline run once with its work directory at s3://webtext-test/corpus."""
    fs, endpoint = s3
    tmp, web, proxy = demo
    url, log, scratch = _url(endpoint, "corpus"), io.StringIO(), tmp_path_factory.mktemp("scratch1")
    _pipeline(url, web, proxy, scratch=scratch, log=log)
    return url, scratch, log


def test_s3_workdir_gives_the_local_bytes_and_a_fresh_scratch_redoes_nothing(s3, demo, in_bucket, tmp_path):
    import gzip

    from webtext.pipeline.remote import is_placeholder

    fs, endpoint = s3
    tmp, web, proxy = demo
    url, scratch, log = in_bucket
    local = pipeline_outputs(tmp / "local")
    assert len(local) > 50 and any(k.startswith("tokens/v0001/train-") for k in local)
    # the bucket holds the whole work directory, state database included
    _download(fs, "corpus", tmp_path / "bucket")
    assert pipeline_outputs(tmp_path / "bucket") == local
    assert (tmp_path / "bucket" / "state.sqlite").stat().st_size > 0
    assert not list((tmp_path / "bucket").rglob("*.tmp-*")) and not (tmp_path / "bucket" / ".lock").exists()
    segments = sorted((tmp_path / "bucket" / "warc").glob("warc-*.warc.gz"))
    assert segments and all(gzip.open(f).read(8) == b"WARC/1.1" for f in segments)   # stored as written
    assert SECRET not in log.getvalue() and KEY not in log.getvalue()
    assert "s3://webtext-test/corpus" in log.getvalue()
    # the scratch keeps bulk data as placeholders (no blocks on disk), and the rest for real
    store = open_store(url, str(scratch))
    files = [p for p in scratch.rglob("*") if p.is_file() and p.name != ".lock"]
    lazy = [p for p in files if store.is_lazy(store.rel(p))]
    assert len(lazy) > 100 and all(is_placeholder(p) for p in lazy)
    assert not any(is_placeholder(p) for p in files if p not in lazy)
    size, disk = _allocated(scratch)
    real = sum(p.stat().st_size for p in files if p not in lazy)
    assert size == _allocated(tmp_path / "bucket")[0] and real < size / 2, (real, size)   # the bulk stays there
    assert sum(p.stat().st_blocks for p in lazy) == 0
    assert is_placeholder(scratch / "docs" / "docs-00000.parquet")
    assert not is_placeholder(scratch / "warc" / "fetchlog-00000.parquet")
    with pytest.raises(Exception):          # a placeholder is never mistaken for data
        pq.read_table(scratch / "docs" / "docs-00000.parquet")
    assert store.materialize_all() == len(lazy)
    assert pipeline_outputs(scratch) == local

    # another machine (an empty scratch): everything comes from the bucket and nothing runs again
    results = _pipeline(url, web, proxy, scratch=tmp_path / "scratch2")
    assert sum(r.get("tasks_run", 0) for r in results) == 0
    assert open_store(url, str(tmp_path / "scratch2")).materialize_all() > 20
    assert pipeline_outputs(tmp_path / "scratch2") == local


def test_gs_workdir_gives_the_local_bytes(demo, tmp_path):
    """The same pipeline with the work directory in a Google Cloud Storage bucket
    (gcp-storage-emulator on loopback, anonymous access through pyarrow's GcsFileSystem)."""
    if importlib.util.find_spec("gcp_storage_emulator") is None:
        pytest.skip("gcp-storage-emulator is not installed")
    tmp, web, proxy = demo
    with gcs_emulator() as endpoint:
        url = f"gs://webtext-gs/corpus?endpoint_override={endpoint}&scheme=http&anonymous=true"
        _pipeline(url, web, proxy, scratch=tmp_path / "scratch")
        fs = pafs.GcsFileSystem(anonymous=True, scheme="http", endpoint_override=endpoint)
        with fs.open_input_stream("webtext-gs/corpus/tokens/manifest.json") as f:
            manifest = f.read()
        with pytest.raises(ConfigError, match="Unexpected query parameter in GCS URI: 'colour'"):
            open_store("gs://webtext-gs/x?colour=blue", str(tmp_path / "x"))
        open_store(url, str(tmp_path / "scratch")).materialize_all()
    assert pipeline_outputs(tmp_path / "scratch") == pipeline_outputs(tmp / "local")
    assert manifest == (tmp_path / "scratch" / "tokens" / "manifest.json").read_bytes()


def _done_markers(fs, prefix: str) -> list[str]:
    sel = pafs.FileSelector(f"webtext-test/{prefix}/docs/_meta/done", recursive=True)
    return sorted(i.path for i in fs.get_file_info(sel) if i.type == pafs.FileType.File)


def test_an_object_without_its_marker_is_redone_with_the_same_bytes(s3, demo, in_bucket, tmp_path):
    """A store has no rename: a task's outputs go up first and its completion record last.
    Without the record (a crash between the two), the next run redoes the task."""
    fs, endpoint = s3
    tmp, web, proxy = demo
    url = _url(endpoint, "crash")
    for info in fs.get_file_info(pafs.FileSelector("webtext-test/corpus", recursive=True)):   # a copy of the run
        if info.type == pafs.FileType.File:
            fs.copy_file(info.path, "webtext-test/crash/" + info.path.split("/corpus/", 1)[1])
    markers = _done_markers(fs, "crash")
    assert markers
    fs.delete_file(markers[0])                       # the run "died" before this marker was written
    results = _pipeline(url, web, proxy, scratch=tmp_path / "b")
    extract = next(r for r in results if r.get("stage") == "extract")
    assert extract["tasks_run"] == 1
    assert _done_markers(fs, "crash") == markers
    open_store(url, str(tmp_path / "b")).materialize_all()
    assert pipeline_outputs(tmp_path / "b") == pipeline_outputs(tmp / "local")


def _copy_first_line(task: Task) -> Stats:
    src, dst = task.inputs[0], task.outputs[0]
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(src.read_text().splitlines()[0] + "\n")
    return Stats(records_in=1, records_out=1)


def test_a_task_on_another_node_downloads_its_inputs_and_uploads_itspipeline_outputs(s3, tmp_path):
    fs, endpoint = s3
    url = _url(endpoint, "node")
    with fs.open_output_stream("webtext-test/node/in/a.txt") as f:
        f.write(b"first line\nsecond\n")
    scratch = tmp_path / "node2"                       # this node has never seen the input
    store = open_store(url, str(scratch))
    task = Task("copy", "a", _copy_first_line, [scratch / "in" / "a.txt"], [scratch / "out" / "a.txt"],
                options={"_store": store.spec})
    stats, outputs = _execute(task)
    assert stats["out"] == 1 and outputs["a.txt"]["size"] == len("first line\n")
    with fs.open_input_stream("webtext-test/node/out/a.txt") as f:
        assert f.read() == b"first line\n"
    # uploaded files carry the object's time, so the next publish has nothing to send
    assert store.publish() == {"uploaded": 0, "bytes": 0, "deleted": 0, "evicted": 0}
    (scratch / "out" / "a.txt").unlink()               # a file deleted here is deleted there
    assert store.publish()["deleted"] == 1
    assert not fs.get_file_info("webtext-test/node/out/a.txt").is_file


def test_bad_urls_and_unreachable_stores_are_clear_errors(tmp_path):
    assert redact(f"s3://{KEY}:{SECRET}@b/p?secret_key={SECRET}") == "s3://b/p"
    with pytest.raises(ConfigError, match="scheme 'ftp' is not supported"):
        open_store("ftp://host/dir", str(tmp_path / "x"))
    # a closed port: a clear, resumable error naming the bucket, and no credential in it
    with pytest.raises(ConfigError, match="Unexpected query parameter in S3 URI: 'nonsense'"):
        open_store("s3://b/p?nonsense=1", str(tmp_path / "x"))
    dead = open_store(f"s3://{KEY}:{SECRET}@nobucket/p?endpoint_override=127.0.0.1:9&scheme=http"
                      "&region=us-east-1", str(tmp_path / "y"))
    with pytest.raises(WebtextError, match="object storage: cannot list s3://nobucket/p") as e:
        dead.pull()
    assert SECRET not in str(e.value)
    assert StoreSpec("s3://b/p", "/x") == StoreSpec("s3://b/p", "/x")   # hashable: one store per process


def test_cli_status_mirrors_a_bucket_workdir(s3, tmp_path):
    """Read-only commands on a bucket work directory see its files (mirrored into the scratch)."""
    from typer.testing import CliRunner

    from webtext.pipeline.cli import app

    fs, endpoint = s3
    with fs.open_output_stream("webtext-test/cli/tokens/manifest.json") as f:
        f.write(b'{"versions": []}')
    env = {**os.environ, "WEBTEXT_WORKDIR": _url(endpoint, "cli")}
    cfg = tmp_path / "webtext.toml"
    cfg.write_text(f'[run]\nscratch = "{tmp_path / "scr"}"\n')
    r = CliRunner().invoke(app, ["--config", str(cfg), "status", "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "scr" / "tokens" / "manifest.json").read_bytes() == b'{"versions": []}'
    assert SECRET not in r.output


def test_schedule_names_the_bucket_and_logs_in_its_scratch():
    import shlex

    from webtext.pipeline import schedule as S
    from webtext.pipeline.remote import default_scratch

    url = "s3://bucket/prefix?endpoint_override=minio:9000&scheme=http"
    cmd = S.cron_command(url, None)
    assert f"--workdir {shlex.quote(url)}" in cmd
    assert str(default_scratch(url) / "logs" / "refresh.log") in cmd
    service, _ = S.systemd_units(url)
    assert "Description=webtext refresh of s3://bucket/prefix\n" in service


def test_pull_replaces_a_stale_state_database_with_its_wal_and_keeps_logs(s3, tmp_path):
    """A scratch left by a crashed run: its state.sqlite (and WAL) are replaced by the
    bucket's, stale data files are removed, and a cron log opened before the run is kept."""
    import sqlite3

    fs, endpoint = s3
    url = _url(endpoint, "stale")
    src = tmp_path / "bucket-state.sqlite"
    db = sqlite3.connect(src)
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES ('from the bucket')")
    db.commit()
    db.close()
    with fs.open_output_stream("webtext-test/stale/state.sqlite") as f:
        f.write(src.read_bytes())
    scratch = tmp_path / "scratch"
    (scratch / "docs").mkdir(parents=True)
    (scratch / "state.sqlite").write_bytes(b"left by a crashed run")
    (scratch / "state.sqlite-wal").write_bytes(b"stale write-ahead log")
    (scratch / "docs" / "docs-00009.parquet").write_bytes(b"not in the bucket")
    (scratch / "logs").mkdir()
    (scratch / "logs" / "refresh.log").write_text("cron output\n")
    got = open_store(url, str(scratch)).pull()
    assert got["downloaded"] == 1 and got["deleted"] == 1
    assert not (scratch / "state.sqlite-wal").exists() and not (scratch / "docs" / "docs-00009.parquet").exists()
    assert sqlite3.connect(scratch / "state.sqlite").execute("SELECT x FROM t").fetchall() == [("from the bucket",)]
    assert (scratch / "logs" / "refresh.log").read_text() == "cron output\n"


def test_refresh_takedown_and_training_on_a_bucket(s3, tmp_path):
    """The service loop on a bucket work directory, each step from a fresh scratch (another
    machine, or a cron job whose scratch was wiped): January, then a refresh with February,
    a takedown, and training. Every step reads what it needs from the bucket."""
    from webtext.pipeline.refresh import refresh
    from webtext.pipeline.run import run_stage
    from webtext.stages.urls import normalize_url_id

    fs, endpoint = s3
    url = _url(endpoint, "service")
    web = build_demo_web(tmp_path / "web", n_articles=40, months=2)

    def ctx_for(scratch: str, dumps) -> Context:
        over = demo_overrides(web, proxy.url, steps=2, workers=1)
        over["harvest"]["dumps"] = [str(d) for d in dumps]
        over["run"]["scratch"] = str(tmp_path / scratch)
        return Context(url, load_config(None, over), Console(file=io.StringIO()))

    with DemoProxy(web.pages, web.archive) as proxy:
        ctx = ctx_for("a", web.dumps[:1])
        run_all(ctx, ORDER[:-1])
        ctx.close()
        ctx = ctx_for("b", web.dumps)
        diff = refresh(ctx)
        ctx.close()
        assert diff["updated"] and diff["documents_added"] > 0 and diff["tokens_added"] > 0
        ctx = ctx_for("c", web.dumps)
        docs = pq.read_table(ctx.materialize([sorted((ctx.workdir / "clean").glob("clean-*.parquet"))[0]])[0])
        assert ctx.state.add_takedown(docs["doc_id"][0].as_py(), normalize_url_id(docs["url"][0].as_py())[1], "test")
        shard = run_stage(ctx, "shard")
        assert shard["info"]["removed_docs"] == 1
        summary = run_stage(ctx, "train")
        ctx.close()
    assert summary["_trained"]
    names = {i.path.split("/service/", 1)[1] for i in fs.get_file_info(pafs.FileSelector("webtext-test/service", recursive=True))}
    assert "runs/demo/ckpt.pt" in names and "refresh/latest.json" in names
    assert sum(n.startswith("tokens/_versions/v") and n.endswith(".json") for n in names) == 3


def test_placeholders_come_and_go_and_mirror_mode_keeps_everything(s3, tmp_path):
    from webtext.pipeline.config import load_config as load
    from webtext.pipeline.remote import is_placeholder

    fs, endpoint = s3
    url = _url(endpoint, "lazy")
    pq.write_table(pa.table({"x": list(range(1000))}), tmp_path / "docs.parquet")
    with fs.open_output_stream("webtext-test/lazy/docs/docs-00000.parquet", compression=None) as f:
        f.write((tmp_path / "docs.parquet").read_bytes())
    lazy = open_store(url, str(tmp_path / "a"))
    assert lazy.pull()["placeholders"] == 1
    p = tmp_path / "a" / "docs" / "docs-00000.parquet"
    assert is_placeholder(p) and p.stat().st_size == (tmp_path / "docs.parquet").stat().st_size
    with pytest.raises(WebtextError, match="placeholder"):
        lazy.put(p)
    assert lazy.stage_in([p]) == 1 and pq.read_table(p)["x"].to_pylist() == list(range(1000))
    assert lazy.evict() == 1 and is_placeholder(p)
    mirror = open_store(url, str(tmp_path / "b"), lazy=())
    assert mirror.pull()["placeholders"] == 0
    assert pq.read_table(tmp_path / "b" / "docs" / "docs-00000.parquet").num_rows == 1000
    with pytest.raises(ConfigError, match="scratch_data"):
        load(None, {"run": {"scratch_data": "sometimes"}})


def test_cli_pull_downloads_bulk_data_and_status_does_not(s3, tmp_path):
    from typer.testing import CliRunner

    from webtext.pipeline.cli import app
    from webtext.pipeline.remote import is_placeholder

    fs, endpoint = s3
    pq.write_table(pa.table({"x": [1, 2, 3]}), tmp_path / "d.parquet")
    with fs.open_output_stream("webtext-test/pull/docs/docs-00000.parquet", compression=None) as f:
        f.write((tmp_path / "d.parquet").read_bytes())
    env = {**os.environ, "WEBTEXT_WORKDIR": _url(endpoint, "pull")}
    cfg = tmp_path / "webtext.toml"
    cfg.write_text(f'[run]\nscratch = "{tmp_path / "scr"}"\n')
    docs = tmp_path / "scr" / "docs" / "docs-00000.parquet"
    r = CliRunner().invoke(app, ["--config", str(cfg), "status", "--json"], env=env)
    assert r.exit_code == 0, r.output
    assert is_placeholder(docs)
    r = CliRunner().invoke(app, ["--config", str(cfg), "pull"], env=env)
    assert r.exit_code == 0, r.output
    assert pq.read_table(docs)["x"].to_pylist() == [1, 2, 3]
    assert "work directory ready" in r.output and SECRET not in r.output


def test_a_scratch_without_sparse_files_falls_back_to_a_full_copy(s3, tmp_path, monkeypatch):
    import webtext.pipeline.executor as E

    fs, endpoint = s3
    monkeypatch.setattr(E, "sparse_files_work", lambda folder: False)    # e.g. a FUSE mount
    log = io.StringIO()
    ctx = Context(_url(endpoint, "nosparse"), load_config(None, {"run": {"scratch": str(tmp_path / "s")}}),
                  Console(file=log, width=300))
    try:
        assert ctx.store.spec.lazy == () and "keeps no sparse files" in log.getvalue()
    finally:
        ctx.close()

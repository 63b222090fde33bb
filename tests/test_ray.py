"""Scale-out on Ray: the demo pipeline on a real two-node Ray cluster (``ray start`` on
127.0.0.1, a head and a worker node, one CPU each) gives the same bytes as the local
executor, also when a worker process is SIGKILLed in the middle of a stage."""

import importlib.util
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webtext.pipeline.config import load_config
from webtext.pipeline.demo import demo_overrides
from webtext.pipeline.demoweb import DemoProxy, build_demo_web
from webtext.pipeline.executor import Context
from webtext.pipeline.run import ORDER, run_all

from conftest import free_port, moto_s3, pipeline_outputs, s3_url

# ray itself is imported only after the cluster fixture set the auth token: Ray reads it once
if importlib.util.find_spec("ray") is None:
    pytest.skip("ray is not installed (pip install webtext[ray])", allow_module_level=True)
RAY = str(Path(sys.executable).parent / "ray")


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second worker node, as two `ray start` processes on loopback,
    with token authentication (the token every node and the driver share)."""
    port = free_port()
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    run = lambda *a: subprocess.run([RAY, *a], capture_output=True, text=True, timeout=180)  # noqa: E731
    try:
        r = run("start", "--head", f"--port={port}", "--include-dashboard=false", *common)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        r = run("start", f"--address=127.0.0.1:{port}", *common)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        yield f"127.0.0.1:{port}"
    finally:
        run("stop", "--force")
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ray")
    web = build_demo_web(tmp / "web", n_articles=40)
    with DemoProxy(web.pages, web.archive) as proxy:
        _pipeline(tmp / "local", web, proxy, executor="local", workers=1)
        yield tmp, web, proxy


def _pipeline(workdir, web, proxy, **run):
    over = demo_overrides(web, proxy.url, steps=1, workers=None)
    over["run"].update(run)
    ctx = Context(workdir, load_config(None, over))
    try:
        run_all(ctx, ORDER[:-1])
    finally:
        ctx.close()


def test_ray_cluster_gives_the_local_executors_bytes(cluster, demo):
    tmp, web, proxy = demo
    _pipeline(tmp / "ray", web, proxy, executor="ray", ray_address=cluster)
    local, on_ray = pipeline_outputs(tmp / "local"), pipeline_outputs(tmp / "ray")
    assert len(local) > 50 and any(k.startswith("tokens/v0001/train-") for k in local)
    assert on_ray == local
    cfg = (tmp / "ray" / "docs" / "_meta" / "config.json").read_text()
    assert '"executor": "ray"' in cfg


def test_ray_with_the_work_directory_in_a_bucket(cluster, demo):
    """Ray tasks read their inputs from and write their outputs to an s3:// work directory
    (moto on loopback): the same bytes again, in the scratch and in the bucket."""
    if importlib.util.find_spec("moto") is None:
        pytest.skip("moto is not installed")
    tmp, web, proxy = demo
    with moto_s3() as (fs, endpoint):
        _pipeline(s3_url(endpoint, "ray"), web, proxy, executor="ray", ray_address=cluster,
                  scratch=str(tmp / "ray-s3"))
        with fs.open_input_stream("webtext-test/ray/tokens/manifest.json") as f:
            manifest = f.read()
        from webtext.pipeline.remote import open_store

        open_store(s3_url(endpoint, "ray"), str(tmp / "ray-s3")).materialize_all()
    assert pipeline_outputs(tmp / "ray-s3") == pipeline_outputs(tmp / "local")
    assert manifest == (tmp / "ray-s3" / "tokens" / "manifest.json").read_bytes()


def _ray_workers(prefix: str) -> list[int]:
    """Pids of Ray worker processes running a task named ``prefix...`` (Ray sets the
    process title to ``ray::<task name>`` while a task runs)."""
    pids = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0", 1)[0]
        except OSError:
            continue
        if argv0.startswith(f"ray::{prefix}".encode()):
            pids.append(int(pid))
    return pids


def test_a_killed_worker_is_retried_and_the_outputs_are_the_same(cluster, demo):
    tmp, web, proxy = demo
    killed: list[int] = []
    done = threading.Event()

    def assassin():                      # SIGKILL the first worker caught running an extract task
        while not done.is_set() and not killed:
            for pid in _ray_workers("extract:"):
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                break
            time.sleep(0.005)

    t = threading.Thread(target=assassin, daemon=True)
    t.start()
    try:
        _pipeline(tmp / "killed", web, proxy, executor="ray", ray_address=cluster)
    finally:
        done.set()
        t.join()
    assert killed, "no extract task was caught running"
    assert pipeline_outputs(tmp / "killed") == pipeline_outputs(tmp / "local")
    assert not list((tmp / "killed").rglob("*.tmp-*"))          # the killed writer's temporaries are gone


def test_a_failing_task_is_not_retried_and_names_its_shard(cluster, tmp_path):
    """A task that raises (here: a docs shard that is not Parquet) fails the stage at once
    with the shard named, as under the local executor."""
    from webtext.pipeline.errors import WebtextError
    from webtext.stages import dedup

    docs = tmp_path / "w" / "docs"
    docs.mkdir(parents=True)
    good = pa.table({"doc_id": ["a"], "karma": [3], "first_seen": [1], "text": ["one two three four five six"]})
    pq.write_table(good, docs / "docs-00000.parquet")
    (docs / "docs-00001.parquet").write_bytes(b"not parquet at all")
    over = {"run": {"executor": "ray", "ray_address": cluster}}
    ctx = Context(tmp_path / "w", load_config(None, over))
    try:
        with pytest.raises(WebtextError, match="signatures failed on shard 00001"):
            dedup.run(ctx)
    finally:
        ctx.close()


def test_progress_counts_records_from_ray_workers(cluster, tmp_path):
    import io

    import ray.cloudpickle
    from rich.console import Console

    import test_progress

    ray.cloudpickle.register_pickle_by_value(test_progress)     # the workers cannot import tests/
    over = {"run": {"executor": "ray", "ray_address": cluster, "progress_interval_s": 0.2}}
    out = io.StringIO()
    ctx = Context(tmp_path / "w", load_config(None, over), Console(file=out, width=200))
    try:
        res = test_progress._phase(ctx, tmp_path, "count", n=4, items=20, sleep=0.05)
    finally:
        ctx.close()
    assert res.ran == 4
    text = out.getvalue()
    assert "count: 4 shard(s) done, 80 items" in text
    assert re.search(r"count: [\d,]+/80 items \([\d.]+%\), [\d.]+ items/s, \d/4 shards, ETA", text), text

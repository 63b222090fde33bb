"""The shard executor: completion records, skipping, fingerprints, atomic writes, failures."""

import json
import os
from pathlib import Path

import pytest

from webtext.pipeline.errors import WebtextError
from webtext.pipeline.executor import Task, remove_stale_temporaries, run_phase
from webtext.pipeline.io import atomic_path
from webtext.pipeline.stats import Stats

from conftest import make_context


def upper(task: Task) -> Stats:
    (src,), (out,) = task.inputs, task.outputs
    text = src.read_text()
    if "boom" in text:
        raise ValueError("boom in input")
    with atomic_path(out) as tmp:
        tmp.write_text(text.upper() * task.params.get("times", 1))
    return Stats(records_in=1, records_out=1)


def _tasks(tmp_path: Path, names, times=1):
    return [Task("up", n, upper, [tmp_path / f"in-{n}.txt"], [tmp_path / "out" / f"out-{n}.txt"], {"times": times})
            for n in names]


def test_rerun_skips_done_and_reruns_on_change(tmp_path):
    for n in "abc":
        (tmp_path / f"in-{n}.txt").write_text(n)
    ctx = make_context(tmp_path / "w", workers=1)
    first = run_phase(ctx, tmp_path / "out", "up", _tasks(tmp_path, "abc"))
    assert (first.ran, first.skipped, first.stats.records_out) == (3, 0, 3)
    rec = json.loads((tmp_path / "out" / "_meta" / "done" / "up-a.json").read_text())
    assert rec["outputs"]["out-a.txt"]["size"] == 1 and rec["stats"]["out"] == 1
    again = run_phase(ctx, tmp_path / "out", "up", _tasks(tmp_path, "abc"))
    assert (again.ran, again.skipped, again.stats.records_out) == (0, 3, 3)
    (tmp_path / "in-b.txt").write_text("bb")          # changed input: only b reruns
    changed = run_phase(ctx, tmp_path / "out", "up", _tasks(tmp_path, "abc"))
    assert (changed.ran, changed.skipped) == (1, 2)
    params = run_phase(ctx, tmp_path / "out", "up", _tasks(tmp_path, "abc", times=2))   # changed params: all
    assert params.ran == 3 and (tmp_path / "out" / "out-a.txt").read_text() == "AA"
    (tmp_path / "out" / "out-c.txt").unlink()         # a lost output reruns its task
    assert run_phase(ctx, tmp_path / "out", "up", _tasks(tmp_path, "abc", times=2)).ran == 1


def test_failing_shard_keeps_finished_ones_and_leaves_no_partial(tmp_path):
    for n, text in zip("abc", ["a", "boom", "c"]):
        (tmp_path / f"in-{n}.txt").write_text(text)
    ctx = make_context(tmp_path / "w", workers=1)
    with pytest.raises(WebtextError, match="up failed on shard b: ValueError: boom in input"):
        run_phase(ctx, tmp_path / "out", "up", _tasks(tmp_path, "abc"))
    assert (tmp_path / "out" / "_meta" / "done" / "up-a.json").exists()
    assert not (tmp_path / "out" / "out-b.txt").exists()
    (tmp_path / "in-b.txt").write_text("b")
    res = run_phase(ctx, tmp_path / "out", "up", _tasks(tmp_path, "abc"))
    assert (res.ran, res.skipped) == (2, 1)


def test_process_pool_gives_same_result_as_inline(tmp_path):
    for n in "abcd":
        (tmp_path / f"in-{n}.txt").write_text(n * 3)
    pooled = run_phase(make_context(tmp_path / "w1", workers=2), tmp_path / "o1", "up",
                       [Task("up", n, upper, [tmp_path / f"in-{n}.txt"], [tmp_path / "o1" / f"{n}.txt"]) for n in "abcd"])
    assert pooled.ran == 4
    assert [(tmp_path / "o1" / f"{n}.txt").read_text() for n in "abcd"] == ["AAA", "BBB", "CCC", "DDD"]


def test_atomic_path_and_stale_temporaries(tmp_path):
    target = tmp_path / "f.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert not target.exists() and not list(tmp_path.glob("*.tmp-*"))
    dead = tmp_path / "x.parquet.tmp-999999999"     # no such pid
    live = tmp_path / f"y.parquet.tmp-{os.getpid()}"
    dead.write_text("x"); live.write_text("y")
    assert remove_stale_temporaries(tmp_path) == 1
    assert not dead.exists() and live.exists()


def test_unsupported_work_directory_urls_are_refused_with_a_clear_error(tmp_path, monkeypatch):
    from webtext.pipeline.config import load_config
    from webtext.pipeline.errors import ConfigError
    from webtext.pipeline.executor import Context

    monkeypatch.chdir(tmp_path)
    for url in ("ftp://host/prefix", "hdfs://namenode/x"):
        with pytest.raises(ConfigError, match="is not supported"):
            Context(url, load_config(None, {}))
    assert not list(tmp_path.iterdir())          # no "ftp:" folder made on the way
    with pytest.raises(ConfigError, match="unknown executor 'spark'"):
        load_config(None, {"run": {"executor": "spark"}})

"""The warm process pool (one per command, reused across phases and stages) and
record-level progress from every worker: rich bars on a terminal, plain lines every
``run.progress_interval_s`` without one."""

import io
import os
import re
import time
from pathlib import Path

import pytest
from rich.console import Console

from webtext.pipeline import progress
from webtext.pipeline.config import load_config
from webtext.pipeline.errors import WebtextError
from webtext.pipeline.executor import Context, Task, run_phase
from webtext.pipeline.io import atomic_path
from webtext.pipeline.stats import Stats


def counting(task: Task) -> Stats:
    """Counts ``items`` records slowly, and notes its worker's pid; input "die" kills the worker."""
    (src,), (out,) = task.inputs, task.outputs
    if src.read_text() == "die":
        os._exit(3)
    for _ in range(task.params["items"]):
        time.sleep(task.params.get("sleep", 0))
        progress.advance(1)
    with atomic_path(out) as tmp:
        tmp.write_text(str(task.params["items"]))
    stats = Stats(records_in=1, records_out=1)
    stats.add_info(f"pid_{os.getpid()}", 1)
    return stats


def _ctx(tmp_path: Path, workers: int, terminal: bool = False, interval: float = 60.0):
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=150)
    ctx = Context(tmp_path / "w", load_config(None, {"run": {"workers": workers, "progress_interval_s": interval}}),
                  console)
    return ctx, out


def _phase(ctx, tmp_path, phase: str, n: int = 4, items: int = 5, sleep: float = 0.0, texts=None):
    tasks = []
    for i in range(n):
        src = tmp_path / f"{phase}-{i}.txt"
        src.write_text((texts or {}).get(i, "ok"))
        tasks.append(Task(phase, f"{i:05d}", counting, [src], [tmp_path / "out" / f"{phase}-{i}.out"],
                          {"items": items, "sleep": sleep}, units="items", size=items))
    return run_phase(ctx, tmp_path / "out", phase, tasks)


def _pids(res) -> set[str]:
    return {k for k in res.stats.info if k.startswith("pid_")}


def test_one_warm_pool_serves_every_phase_until_close(tmp_path):
    ctx, _ = _ctx(tmp_path, workers=2)
    try:
        first = _phase(ctx, tmp_path, "a")
        second = _phase(ctx, tmp_path, "b")
        pool = ctx._pool
        assert pool is not None and f"pid_{os.getpid()}" not in _pids(first)
        assert _pids(second) <= _pids(first), "the second phase ran on new processes"
        third = _phase(ctx, tmp_path, "c")
        assert ctx._pool is pool and _pids(third) <= _pids(first)
    finally:
        ctx.close()
    assert ctx._pool is None


def test_a_dead_worker_fails_its_phase_clearly_and_the_next_phase_gets_a_new_pool(tmp_path):
    ctx, _ = _ctx(tmp_path, workers=2)
    try:
        before = _pids(_phase(ctx, tmp_path, "a"))
        with pytest.raises(WebtextError, match=r"b failed: a worker process died while shard \d+ or another one ran"):
            _phase(ctx, tmp_path, "b", texts={1: "die"})
        after = _phase(ctx, tmp_path, "c")
        assert after.ran == 4 and not (_pids(after) & before)
    finally:
        ctx.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_lines_count_records_from_every_worker_without_a_terminal(tmp_path, workers):
    ctx, out = _ctx(tmp_path, workers=workers, interval=0.2)
    try:
        _phase(ctx, tmp_path, "count", n=4, items=20, sleep=0.03)
    finally:
        ctx.close()
    text = out.getvalue()
    lines = re.findall(r"count: ([\d,]+)/80 items \(([\d.]+)%\), [\d.]+k? items/s, (\d)/4 shards, ETA \d+m\d\ds",
                       text)
    assert lines, text
    done = [int(d.replace(",", "")) for d, _, _ in lines]
    assert done == sorted(done) and 0 < done[0] < 80
    assert "count: 4 shard(s) done, 80 items" in text


def test_progress_interval_spaces_the_plain_lines(tmp_path):
    ctx, out = _ctx(tmp_path, workers=1, interval=30)
    try:
        _phase(ctx, tmp_path, "quiet", n=2, items=20, sleep=0.01)
    finally:
        ctx.close()
    assert "items/s" not in out.getvalue() and "quiet: 2 shard(s) done, 40 items" in out.getvalue()


def test_a_terminal_gets_a_rich_bar_with_records_rate_and_eta(tmp_path):
    ctx, out = _ctx(tmp_path, workers=2, terminal=True)
    try:
        _phase(ctx, tmp_path, "bar", n=4, items=20, sleep=0.03)
    finally:
        ctx.close()
    text = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", out.getvalue())
    assert re.search(r"bar \[\d/4 shards\].*/80 items", text), text
    assert "items/s" in text and "ETA" in text


def test_progress_interval_is_range_checked():
    from webtext.pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="run.progress_interval_s must be"):
        load_config(None, {"run": {"progress_interval_s": 0}})

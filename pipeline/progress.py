"""Record-level progress, from every worker to the driver.

A task calls ``advance(n)`` as it finishes records (URLs for fetch, pages for extract,
documents for dedup and decontaminate, tokens for shard). The call only adds to a
counter in the worker; at most every ``FLUSH_S`` seconds, and when the task ends, the
count goes to the driver through the sink the executor installed: a queue shared with
the process pool, a Ray actor, or a plain callback when the task runs inline. With no
sink (a stage function called directly) ``advance`` costs one addition.

The driver (``pipeline.executor``) sums the counts per phase, and shows a rich
progress bar on a terminal, or one plain line every ``run.progress_interval_s``
seconds without one (cron, CI, logs), with the rate and the ETA.
"""

from __future__ import annotations

import time
from typing import Callable

FLUSH_S = 0.5

_sink: Callable[[str, int], None] | None = None   # set in each worker by the executor
_key = ""          # the phase the running task belongs to
_pending = 0
_last = 0.0


def install(sink: Callable[[str, int], None] | None) -> None:
    """Route this process's counts to ``sink(key, n)`` (the executor's pool initializer)."""
    global _sink
    _sink = sink


def begin(key: str) -> None:
    """A task of phase ``key`` starts in this process."""
    global _key, _pending, _last
    _key, _pending, _last = key, 0, time.monotonic()


def advance(n: int = 1) -> None:
    """``n`` more records done by the running task."""
    global _pending, _last
    _pending += n
    if _sink is not None and _pending:
        now = time.monotonic()
        if now - _last >= FLUSH_S:
            _last = now
            flush()


def flush(settle: bool = False) -> None:
    """Send what is counted so far (the executor calls it when a task ends, with
    ``settle``: wait until a Ray actor has it)."""
    global _pending
    try:
        if _sink is not None and _pending and _key:
            n, _pending = _pending, 0
            _sink(_key, n)
        if settle and hasattr(_sink, "settle"):
            _sink.settle()
    except Exception:       # progress is advisory: a closed queue or a lost actor never fails a task
        pass
    _pending = 0


class QueueSink:
    """A picklable sink over a multiprocessing queue (pool workers)."""

    def __init__(self, queue):
        self.queue = queue

    def __call__(self, key: str, n: int) -> None:
        self.queue.put_nowait((key, n))


class ActorSink:
    """A picklable sink over a Ray actor (``ProgressActor``): fire and forget while the
    task runs; ``settle`` waits for the last count, so the task's counts are in before
    the driver sees its result."""

    def __init__(self, actor):
        self.actor = actor
        self.last = None

    def __call__(self, key: str, n: int) -> None:
        self.last = self.actor.add.remote(key, n)

    def __getstate__(self):
        return {"actor": self.actor, "last": None}

    def settle(self) -> None:
        if self.last is not None:
            import ray

            ray.get(self.last)
            self.last = None


class ProgressActor:
    """Ray actor body: counts per phase key, taken by the driver while it waits."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def add(self, key: str, n: int) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def take(self) -> dict[str, int]:
        out, self.counts = self.counts, {}
        return out


def install_queue(queue) -> None:
    """Pool initializer: counts go to ``queue``."""
    install(QueueSink(queue))

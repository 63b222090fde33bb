"""Helpers the stage benchmarks share: a Python child timed in CPU-seconds of its whole
process tree (``getrusage(RUSAGE_CHILDREN)`` after it is reaped: pool workers and
forkservers included), and the median (range) format they print."""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys


def child(args: list[str]) -> tuple[dict, float]:
    """Run a Python child; (its last JSON line, CPU-seconds of its whole process tree)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", *args], capture_output=True, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return json.loads(r.stdout.strip().splitlines()[-1]), cpu


def fmt(xs: list[float], scale: float = 1e6) -> str:
    """``median (min-max)`` of ``xs`` divided by ``scale``."""
    return f"{statistics.median(xs) / scale:5.2f} ({min(xs) / scale:.2f}-{max(xs) / scale:.2f})"

"""Shard-at-a-time execution with completion records.

A stage is a list of phases; a phase is a list of ``Task``s, each mapping input files to
output files through a module-level function ``fn(task) -> Stats``. The function writes
its outputs atomically (``pipeline.io.atomic_path``). When it returns, the executor
records completion in ``<folder>/_done/<phase>-<task>.json``: the task's fingerprint
(its parameters and the sha256 of its inputs), its stats and its outputs' sizes and
digests. A rerun skips every task whose record matches, so after a crash only the
unfinished shards run again, and they produce the same bytes.

Executors: ``local`` runs tasks in a process pool (spawned workers), or inline when
there is one worker or one task. ``ray`` submits every task to a Ray cluster (a local
instance with ``workers`` CPUs, or the one at ``run.ray_address``): fetch tasks reserve
``ray_fetch_cpus`` (they wait on the network, so several share a core), the others one
CPU. A task whose worker process or node dies is retried (``ray_max_retries``); an
exception raised by the task itself is not (it would fail again). Retries are safe
because a task writes its outputs atomically under fixed names and only the driver
writes completion records, so a retry never duplicates output. A stage never knows
which executor runs it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from .config import Config
from .errors import WebtextError
from .io import ensure_workdir, read_json, sha256_file, write_json
from .remote import LAZY_DEFAULT, is_url, open_store, sparse_files_work, store_for
from .state import State
from .stats import Stats


@dataclass
class Task:
    phase: str
    name: str                              # unique within the phase, e.g. "00003"
    fn: Callable[["Task"], Stats]          # module-level, so it pickles
    inputs: list[Path]
    outputs: list[Path]
    params: dict = field(default_factory=dict)   # JSON-able; decides the output: part of the fingerprint
    options: dict = field(default_factory=dict)  # how to run (proxy, timeouts): not fingerprinted
    units: str = ""                        # what the task counts with pipeline.progress.advance: "pages"
    size: int = 0                          # how many of them it expects (0: unknown); the progress total


@dataclass
class PhaseResult:
    stats: Stats                  # every task of the phase, finished now or earlier
    ran: int
    skipped: int
    fresh: Stats = field(default_factory=Stats)   # only the tasks run by this call


class Context:
    """What a stage needs to run: work directory, config, state and an executor."""

    def __init__(self, workdir: Path | str, cfg: Config, console: Console | None = None):
        self.cfg = cfg
        self.console = console or Console(stderr=True)
        self.json_logs = False     # --log-json: one JSON object per line on stderr, no progress bars
        self.store = None          # the bucket, when the work directory is s3:// or gs:// (pipeline.remote)
        self._pulled = False       # this context mirrored the bucket, so it may publish to it
        self.keep_data = False     # publish leaves downloaded bulk data in the scratch (webtext pull)
        if is_url(workdir):
            self.store = open_store(str(workdir), cfg.run.scratch,
                                    LAZY_DEFAULT if cfg.run.scratch_data == "on_demand" else ())
            self.workdir = self.store.scratch
            self.workdir.mkdir(parents=True, exist_ok=True)
            if self.store.spec.lazy and not sparse_files_work(self.workdir):
                self.log(f"[yellow]warning:[/yellow] {self.workdir}'s file system keeps no sparse files, so bulk "
                         "data cannot wait in the bucket: keeping a full copy (run.scratch_data = \"mirror\")")
                self.store = open_store(str(workdir), cfg.run.scratch, ())
            self.pull()
        else:
            self.workdir = ensure_workdir(Path(workdir))
        self.state = State(self.workdir)
        if self.store is not None:      # a placeholder's digest needs its bytes (when not cached)
            self.state.materialize = lambda path: self.store.stage_in([path])
        workers = cfg.run.workers or os.cpu_count() or 1
        self.workers = max(1, workers)
        self.run_id: int | None = None
        self._ray_started = False

    def pull(self) -> None:
        """Mirror the bucket into the scratch (not while another run holds it: that run
        exits at its lock, and must not have its files replaced under it)."""
        from .lock import WorkdirLock

        if WorkdirLock(self.workdir, "").inspect()["state"] == "held":
            return
        got = self.store.pull()
        self._pulled = True
        self.log(f"work directory {self.store.url}: {got['objects']} objects, {got['downloaded']} downloaded "
                 f"({got['bytes'] / 2**20:.1f} MiB) into {self.workdir}"
                 + (f", {got['deleted']} stale local file(s) removed" if got["deleted"] else ""))

    def materialize(self, paths) -> list[Path]:
        """Make sure the driver has the bytes of ``paths`` (bulk data in a bucket work
        directory is a placeholder between uses); returns them as a list."""
        paths = [Path(p) for p in paths]
        if self.store is not None:
            self.store.stage_in(paths)
        return paths

    def publish(self) -> None:
        """Upload what changed in the scratch to the bucket (no-op for a local work directory)."""
        if self.store is not None and self._pulled:
            self.state.db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            self.store.publish(evict=not self.keep_data)

    def ray(self):
        """The ``ray`` module, connected: to ``run.ray_address`` if set, else to a local
        instance started here (and stopped by ``close``) with ``workers`` CPUs. An instance
        the caller already started is used as it is."""
        import ray

        if not ray.is_initialized():
            address = self.cfg.run.ray_address or None
            ray.init(address=address, num_cpus=None if address else self.workers, include_dashboard=False,
                     logging_level="WARNING", configure_logging=True)
            self._ray_started = True
        return ray

    def dir(self, name: str) -> Path:
        return self.workdir / name

    def log(self, msg: str, level: str = "info") -> None:
        if self.json_logs:
            sys.stderr.write(json.dumps({"ts": round(time.time(), 3), "level": level,
                                         "msg": Text.from_markup(msg).plain.strip()}) + "\n")
            sys.stderr.flush()
        else:
            self.console.print(msg, highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def tracked_run(self, command: str):
        """Record a run in the state database (``runs``): ``ok``, or ``failed`` on any exception."""
        self.run_id = self.state.start_run(command)
        status = "failed"
        try:
            yield self.run_id
            status = "ok"
        finally:
            self.state.finish_run(self.run_id, status)

    def close(self) -> None:
        try:
            self.publish()
        finally:
            self.state.close()
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False


def _fingerprint(ctx: Context, task: Task) -> str:
    inputs = [(p.name, ctx.state.digest(p)) for p in task.inputs]
    blob = json.dumps(
        {"phase": task.phase, "name": task.name, "params": task.params, "inputs": inputs},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _record_path(folder: Path, task: Task) -> Path:
    return folder / "_done" / f"{task.phase}-{task.name}.json"


def _is_done(path: Path, fingerprint: str, task: Task) -> dict | None:
    if not path.exists():
        return None
    try:
        rec = read_json(path)
    except (OSError, ValueError):
        return None
    if rec.get("fingerprint") != fingerprint:
        return None
    folder = task.outputs[0].parent if task.outputs else None
    recorded = rec.get("outputs", {})
    if any(_output_name(folder, p) not in recorded for p in task.outputs):
        return None
    for name, info in recorded.items():
        p = folder / name
        if not p.exists() or p.stat().st_size != info["size"]:
            return None
    return rec


def _output_name(folder: Path, path: Path) -> str:
    """How a completion record names an output: its path relative to the first output's folder."""
    return path.relative_to(folder).as_posix()


def _execute(task: Task) -> tuple[dict, dict]:
    """Run one task (in a worker) and describe its outputs. With the work directory on
    object storage, inputs missing on this node are downloaded first, and the outputs are
    uploaded before the task reports back (the driver then uploads the completion marker)."""
    store = store_for(task.options.get("_store"))
    if store is not None:
        store.stage_in([*task.inputs, *_paths_in(task.options)])
    stats = task.fn(task)
    # A task may add outputs it decided on while running (e.g. rotated WARC segments).
    extra = [Path(p) for p in stats.info.pop("_outputs", [])]
    outputs = {}
    for p in [*task.outputs, *extra]:
        if not p.exists():
            raise RuntimeError(f"task {task.phase}/{task.name} did not write {p.name}")
        outputs[_output_name(task.outputs[0].parent, p)] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    if store is not None:
        written = [*task.outputs, *extra]
        store.parallel(store.put, written)
        for p in written:          # uploaded: bulk data leaves the scratch (a phase reads it later)
            st = p.stat()
            outputs[_output_name(task.outputs[0].parent, p)]["_mtime_ns"] = st.st_mtime_ns
            if store.is_lazy(store.rel(p)):
                store.placeholder(p, st.st_size, st.st_mtime_ns)
    return stats.to_dict(), outputs


def _paths_in(obj) -> list[Path]:
    """Paths named anywhere in a task's options (files a task reads besides its inputs)."""
    if isinstance(obj, Path):
        return [obj]
    if isinstance(obj, dict):
        return [p for v in obj.values() for p in _paths_in(v)]
    if isinstance(obj, (list, tuple)):
        return [p for v in obj for p in _paths_in(v)]
    return []


def remove_stale_temporaries(folder: Path) -> int:
    """Delete ``*.tmp-<pid>`` files whose writer process is gone (e.g. after SIGKILL)."""
    removed = 0
    for p in folder.rglob("*.tmp-*"):
        try:
            pid = int(p.name.rsplit(".tmp-", 1)[1])
            os.kill(pid, 0)
            continue  # its writer is still alive
        except ProcessLookupError:
            pass
        except (ValueError, PermissionError):
            continue
        p.unlink(missing_ok=True)
        removed += 1
    return removed


def run_phase(ctx: Context, folder: Path, phase: str, tasks: list[Task]) -> PhaseResult:
    """Run the tasks of one phase that are not done yet; return merged stats of all tasks."""
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(folder)
    total, fresh = Stats(), Stats()
    todo: list[tuple[Task, Path, str]] = []
    skipped = 0
    for task in tasks:
        rec_path = _record_path(folder, task)
        fp = _fingerprint(ctx, task)
        rec = _is_done(rec_path, fp, task)
        if rec is not None:
            total.merge(Stats.from_dict(rec["stats"]))
            skipped += 1
        else:
            todo.append((task, rec_path, fp))
    if not todo:
        if tasks:
            ctx.log(f"  {phase}: {len(tasks)} shard(s) already done, skipped")
        return PhaseResult(total, 0, skipped)

    def finished(task: Task, rec_path: Path, fp: str, result: tuple[dict, dict]) -> None:
        stats, outputs = result
        folder = task.outputs[0].parent if task.outputs else None
        if ctx.store is not None:      # written on another node: the driver's mirror needs it too
            for name, info in outputs.items():
                mtime = info.pop("_mtime_ns", None)
                p = folder / name
                if not p.exists():
                    if ctx.store.is_lazy(ctx.store.rel(p)):
                        ctx.store.placeholder(p, info["size"], mtime)
                    else:
                        ctx.store.get(p, mtime_ns=mtime)
        for name, info in outputs.items():
            ctx.state.remember_digest(folder / name, info["sha256"])
        write_json(rec_path, {"fingerprint": fp, "stats": stats, "outputs": outputs, "finished": time.time()})
        if ctx.store is not None:      # the marker: only now is the task done in the bucket
            ctx.store.put(rec_path)
        total.merge(Stats.from_dict(stats))
        fresh.merge(Stats.from_dict(stats))

    if ctx.store is not None:
        for task, _, _ in todo:
            task.options = {**task.options, "_store": ctx.store.spec}
    workers = min(ctx.workers, len(todo))
    label = f"  {phase}" + (f" ({skipped} already done)" if skipped else "")
    with _progress(ctx, label, len(todo)) as advance:
        if ctx.cfg.run.executor == "ray":
            try:
                _run_on_ray(ctx, phase, todo, finished, advance)
            finally:
                if ctx.store is not None:
                    _evict_on_every_node(ctx)
            remove_stale_temporaries(folder)        # left by a worker killed mid-write
        elif workers <= 1:
            for task, rec_path, fp in todo:
                finished(task, rec_path, fp, _guarded(task, lambda: _execute(task)))
                advance()
        else:
            mp = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(max_workers=workers, mp_context=mp) as pool:
                futures = {pool.submit(_execute, t): (t, r, f) for t, r, f in todo}
                try:
                    for fut in cf.as_completed(futures):
                        task, rec_path, fp = futures[fut]
                        finished(task, rec_path, fp, _guarded(task, fut.result))
                        advance()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    if ctx.store is not None:
        ctx.store.evict()          # inputs the tasks downloaded here become placeholders again
    return PhaseResult(total, len(todo), skipped, fresh)


def _evict_here(spec) -> int:
    return store_for(spec).evict()


def _evict_on_every_node(ctx: Context) -> None:
    """After a phase on Ray: every node turns the inputs its tasks downloaded back into
    placeholders (no task of the phase runs any more, so none is about to read one)."""
    ray = ctx.ray()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    evict = ray.remote(_evict_here)
    try:
        refs = [evict.options(num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(ctx.store.spec) for n in ray.nodes() if n.get("Alive")]
        ray.get(refs, timeout=600)
    except Exception as e:      # housekeeping: a node lost meanwhile must not fail the phase
        ctx.log(f"[yellow]warning:[/yellow] could not clear every node's scratch after the phase: "
                f"{type(e).__name__}: {e}")


def _run_on_ray(ctx: Context, phase: str, todo: list[tuple[Task, Path, str]], finished, advance) -> None:
    """Every task of ``todo`` as a Ray task; results are recorded on the driver as they come."""
    ray = ctx.ray()
    run = ctx.cfg.run
    remote = ray.remote(_execute)
    opts = {"num_cpus": run.ray_fetch_cpus if phase == "fetch" else 1, "max_retries": run.ray_max_retries,
            "retry_exceptions": False}
    refs = {remote.options(name=f"{phase}:{t.name}", **opts).remote(t): (t, r, f) for t, r, f in todo}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            for ref in done:
                task, rec_path, fp = refs[ref]
                finished(task, rec_path, fp, _guarded(task, lambda: ray.get(ref)))
                advance()
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


def _guarded(task: Task, result: Callable[[], tuple[dict, dict]]) -> tuple[dict, dict]:
    """``result()`` (the task run inline, or a worker's future), with a crash of one shard
    turned into a clear, resumable error."""
    try:
        return result()
    except WebtextError:
        raise
    except Exception as e:
        raise WebtextError(
            f"{task.phase} failed on shard {task.name}: {type(e).__name__}: {e}",
            "Finished shards are kept; fix the cause and rerun to resume",
        ) from e


class _Rate(ProgressColumn):
    """Shards per minute, once rich has measured a speed."""

    def render(self, task) -> Text:
        return Text(f"{task.speed * 60:.1f} shards/min" if task.speed else "")


class _progress:
    """A rich progress bar on a terminal; periodic plain lines otherwise (cron, CI)."""

    def __init__(self, ctx: Context, label: str, total: int):
        self.ctx, self.label, self.total, self.done = ctx, label, total, 0
        self.bar = None
        self.last = self.started = time.monotonic()

    def __enter__(self):
        if self.ctx.console.is_terminal and not self.ctx.json_logs:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                _Rate(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=self.ctx.console, transient=True)
            self.bar.start()
            self.bar_task = self.bar.add_task(self.label, total=self.total)
        return self.advance

    def advance(self) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.advance(self.bar_task)
        elif time.monotonic() - self.last > 10 and self.done < self.total:   # plain lines under cron/CI
            self.last = time.monotonic()
            rate = self.done / max(self.last - self.started, 1e-9)
            eta = (self.total - self.done) / rate if rate else float("inf")
            self.ctx.log(f"{self.label.strip()}: {self.done}/{self.total} shards, {rate * 60:.1f}/min, "
                         f"ETA {eta:.0f} s")

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        if exc[0] is None:
            self.ctx.log(f"{self.label}: {self.done} shard(s) done")
        return False


def finish_stage(ctx: Context, stage: str, folder: Path, stats: Stats, config: dict,
                 ran: int, skipped: int, started: float) -> dict:
    """Write ``_stats.json`` and ``_config.json`` beside a stage's output and log it in state."""
    out = {"stage": stage, **stats.to_dict(), "tasks_run": ran, "tasks_skipped": skipped}
    write_json(folder / "_stats.json", out)
    write_json(folder / "_config.json", {stage: config, "run": {"executor": ctx.cfg.run.executor}})
    if ctx.run_id is not None:
        ctx.state.record_stage(ctx.run_id, stage, started, ran, skipped, out)
    return out

"""Shard-at-a-time execution with completion records.

A stage is a list of phases; a phase is a list of ``Task``s, each mapping input files to
output files through a module-level function ``fn(task) -> Stats``. The function writes
its outputs atomically (``pipeline.io.atomic_path``). When it returns, the executor
records completion in ``<folder>/_meta/done/<phase>-<task>.json``: the task's fingerprint
(its parameters and the sha256 of its inputs), its stats and its outputs' sizes and
digests. A rerun skips every task whose record matches, so after a crash only the
unfinished shards run again, and they produce the same bytes.

Executors: ``local`` runs tasks in one pool of spawned workers that the context keeps
warm for every phase and stage of a command (``Context.pool``), or inline when there is
one worker or one task. ``ray`` submits every task to a Ray cluster (a local
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
from rich.progress import (BarColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)
from rich.text import Text

from . import layout, progress
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
        layout.migrate(self.workdir)     # a work directory from before version 5: sidecars into _meta/
        self.state = State(self.workdir)
        if self.store is not None:      # a placeholder's digest needs its bytes (when not cached)
            self.state.materialize = lambda path: self.store.stage_in([path])
        workers = cfg.run.workers or os.cpu_count() or 1
        self.workers = max(1, workers)
        self.run_id: int | None = None
        self._ray_started = False
        self._pool: cf.ProcessPoolExecutor | None = None
        self._progress_queue = None
        self._ray_remote = None
        self._ray_progress = None

    def pool(self) -> tuple[cf.ProcessPoolExecutor, object]:
        """The warm process pool (``workers`` spawned processes) and the queue its workers
        send progress counts on. Started on first use and kept for every later phase and
        stage of this context, so each worker imports pyarrow, numpy and the stages once
        per command, not once per phase. ``close`` shuts it down."""
        if self._pool is None:
            mp = multiprocessing.get_context("spawn")
            self._progress_queue = mp.Queue()
            self._pool = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=mp,
                                                initializer=progress.install_queue,
                                                initargs=(self._progress_queue,))
        return self._pool, self._progress_queue

    def drop_pool(self) -> None:
        """Shut the pool down (at the end, or after a worker died: the next phase starts a new one)."""
        pool, queue, self._pool, self._progress_queue = self._pool, self._progress_queue, None, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
        if queue is not None:
            queue.close()
            queue.join_thread()

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
            self.drop_pool()
            self.publish()
        finally:
            self.state.close()
        if self._ray_started:
            import ray

            ray.shutdown()
            self._ray_started = False
        self._ray_remote = self._ray_progress = None


def _fingerprint(ctx: Context, task: Task) -> str:
    # An absent input is a Parquet output an earlier task left unwritten: it had no rows.
    inputs = [(p.name, ctx.state.digest(p) if p.exists() else None) for p in task.inputs]
    blob = json.dumps(
        {"phase": task.phase, "name": task.name, "params": task.params, "inputs": inputs},
        sort_keys=True, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def _record_path(folder: Path, task: Task) -> Path:
    return _record_dir(folder) / f"{task.phase}-{task.name}.json"


def _record_dir(folder: Path) -> Path:
    return layout.done_dir(folder)


def update_recorded_outputs(folder: Path, files: dict[str, Path], gone: set[str] = frozenset()) -> int:
    """After a sanctioned rewrite of finished outputs (``remove --purge``): the completion
    records under ``folder`` that name a rewritten file (``files``: name -> its path) take
    its new size and hash, so the task stays done; one that names a removed file (``gone``) is left
    to fail its check, so the task runs again. Returns the records updated."""
    n = 0
    rdir = _record_dir(folder)
    for p in sorted(rdir.glob("*.json")) if rdir.is_dir() else []:
        try:
            rec = read_json(p)
        except (OSError, ValueError):
            continue
        outs = rec.get("outputs", {})
        hit = {name for name in outs if Path(name).name in files and Path(name).name not in gone}
        if not hit:
            continue
        for name in hit:
            f = files[Path(name).name]
            outs[name].update(size=f.stat().st_size, sha256=sha256_file(f))
        write_json(p, rec)
        n += 1
    return n


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
        if info.get("absent"):
            if p.exists():
                return None
        elif not p.exists() or p.stat().st_size != info["size"]:
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
    if (sink := task.options.get("_progress_sink")) is not None:    # a Ray worker: counts go to an actor
        progress.install(sink)
    progress.begin(task.options.get("_progress_key", ""))
    try:
        stats = task.fn(task)
    finally:
        progress.flush(settle=True)
    # A task may add outputs it decided on while running (e.g. rotated WARC segments).
    extra = [Path(p) for p in stats.info.pop("_outputs", [])]
    outputs = {}
    for p in [*task.outputs, *extra]:
        if not p.exists() and p.suffix == ".parquet":     # no rows: no file (pipeline.io.write_parquet)
            outputs[_output_name(task.outputs[0].parent, p)] = {"absent": True}
            continue
        if not p.exists():
            raise RuntimeError(f"task {task.phase}/{task.name} did not write {p.name}")
        outputs[_output_name(task.outputs[0].parent, p)] = {"size": p.stat().st_size, "sha256": sha256_file(p)}
    if store is not None:
        written = [p for p in [*task.outputs, *extra] if p.exists()]
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
        written = {name: info for name, info in outputs.items() if not info.get("absent")}
        if ctx.store is not None:      # written on another node: the driver's mirror needs it too
            for name, info in written.items():
                mtime = info.pop("_mtime_ns", None)
                p = folder / name
                if not p.exists():
                    if ctx.store.is_lazy(ctx.store.rel(p)):
                        ctx.store.placeholder(p, info["size"], mtime)
                    else:
                        ctx.store.get(p, mtime_ns=mtime)
        for name, info in written.items():
            ctx.state.remember_digest(folder / name, info["sha256"])
        write_json(rec_path, {"fingerprint": fp, "stats": stats, "outputs": outputs, "finished": time.time()})
        if ctx.store is not None:      # the marker: only now is the task done in the bucket
            ctx.store.put(rec_path)
        total.merge(Stats.from_dict(stats))
        fresh.merge(Stats.from_dict(stats))

    if ctx.store is not None:
        for task, _, _ in todo:
            task.options = {**task.options, "_store": ctx.store.spec}
    key = f"{folder.name}/{phase}#{time.monotonic_ns()}"      # tells this phase's counts from stray ones
    for task, _, _ in todo:
        task.options = {**task.options, "_progress_key": key}
    label = f"  {phase}" + (f" ({skipped} already done)" if skipped else "")
    sizes = [t.size for t, _, _ in todo]
    units = todo[0][0].units
    expected = sum(sizes) if units and all(sizes) else None
    with _Progress(ctx, label, len(todo), units, expected) as bar:
        if ctx.cfg.run.executor == "ray":
            try:
                _run_on_ray(ctx, phase, key, todo, finished, bar)
            finally:
                if ctx.store is not None:
                    _evict_on_every_node(ctx)
            remove_stale_temporaries(folder)        # left by a worker killed mid-write
        elif ctx.workers <= 1 or len(todo) == 1:
            progress.install(lambda k, n: bar.add(n) if k == key else None)
            try:
                for task, rec_path, fp in todo:
                    finished(task, rec_path, fp, _guarded(task, lambda: _execute(task)))
                    bar.task_done()
            finally:
                progress.install(None)
        else:
            _run_on_pool(ctx, key, todo, finished, bar)
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


def _run_on_pool(ctx: Context, key: str, todo: list[tuple[Task, Path, str]], finished, bar: "_Progress") -> None:
    """Every task of ``todo`` on the context's warm pool; results are recorded on the driver
    as they come, and the workers' counts are read between them."""
    pool, queue = ctx.pool()

    def drain() -> None:
        while True:
            try:
                k, n = queue.get_nowait()
            except Exception:       # queue.Empty, or a queue closed under us
                return
            if k == key:
                bar.add(n)

    futures = {pool.submit(_execute, t): (t, r, f) for t, r, f in todo}
    pending = set(futures)
    try:
        while pending:
            done, pending = cf.wait(pending, timeout=0.5, return_when=cf.FIRST_COMPLETED)
            drain()
            for fut in done:
                task, rec_path, fp = futures[fut]
                finished(task, rec_path, fp, _guarded(task, fut.result))
                bar.task_done()
            bar.tick()
        drain()
    except BaseException as e:
        for f in pending:
            f.cancel()
        broken = isinstance(e, cf.process.BrokenProcessPool) or isinstance(e.__cause__, cf.process.BrokenProcessPool)
        if broken or not isinstance(e, Exception):      # a dead worker, or Ctrl-C: start afresh next time
            ctx.drop_pool()
        else:       # the others finish: their outputs are complete, so a rerun skips them
            for f in pending:
                with contextlib.suppress(BaseException):
                    f.result()
        raise


def _run_on_ray(ctx: Context, phase: str, key: str, todo: list[tuple[Task, Path, str]], finished,
                bar: "_Progress") -> None:
    """Every task of ``todo`` as a Ray task; results are recorded on the driver as they come.
    Ray keeps its worker processes and reuses them across tasks, phases and stages, so
    imports are paid once per worker; the remote function and the progress actor are made
    once per context."""
    ray = ctx.ray()
    run = ctx.cfg.run
    if ctx._ray_remote is None:
        ctx._ray_remote = ray.remote(_execute)
        ctx._ray_progress = ray.remote(progress.ProgressActor).options(num_cpus=0).remote()
    sink = progress.ActorSink(ctx._ray_progress)
    opts = {"num_cpus": run.ray_fetch_cpus if phase == "fetch" else 1, "max_retries": run.ray_max_retries,
            "retry_exceptions": False}
    refs = {ctx._ray_remote.options(name=f"{phase}:{t.name}", **opts).remote(
        Task(**{**t.__dict__, "options": {**t.options, "_progress_sink": sink}})): (t, r, f) for t, r, f in todo}
    pending = list(refs)

    def drain() -> None:
        bar.add(ray.get(ctx._ray_progress.take.remote()).get(key, 0))

    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            drain()
            for ref in done:
                task, rec_path, fp = refs[ref]
                finished(task, rec_path, fp, _guarded(task, lambda: ray.get(ref)))
                bar.task_done()
            bar.tick()
        drain()
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
    except cf.process.BrokenProcessPool as e:
        raise WebtextError(
            f"{task.phase} failed: a worker process died while shard {task.name} or another one ran (killed, "
            "out of memory, or started from a script without an `if __name__ == \"__main__\":` guard)",
            "Finished shards are kept; fix the cause and rerun to resume",
        ) from e
    except Exception as e:
        raise WebtextError(
            f"{task.phase} failed on shard {task.name}: {type(e).__name__}: {e}",
            "Finished shards are kept; fix the cause and rerun to resume",
        ) from e


def _human(n: float) -> str:
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= div:
            return f"{n / div:.1f}{suffix}"
    return f"{n:.0f}" if n == int(n) else f"{n:.1f}"


def _duration(s: float) -> str:
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class _Counts(ProgressColumn):
    """``done/total units`` (or ``done units`` when the total is not known), and the rate."""

    def __init__(self, units: str):
        super().__init__()
        self.units = units

    def render(self, task) -> Text:
        done = f"{_human(task.completed)}" + (f"/{_human(task.total)}" if task.total else "")
        rate = f"  {_human(task.speed)} {self.units}/s" if task.speed else ""
        return Text(f"{done} {self.units}{rate}")


class _Progress:
    """A phase's progress in records (``units``: what its tasks count with
    ``pipeline.progress.advance``), or in shards when its tasks do not count. On a
    terminal a rich progress bar with the rate and the ETA; otherwise (cron, CI, logs,
    ``--log-json``) one plain line every ``run.progress_interval_s`` seconds."""

    def __init__(self, ctx: Context, label: str, tasks: int, units: str, total: int | None):
        self.ctx, self.label, self.tasks, self.units = ctx, label, tasks, units
        self.total = total if units else tasks
        self.done = self.tasks_done = 0
        self.bar = None
        self.interval = ctx.cfg.run.progress_interval_s
        self.last = self.started = time.monotonic()

    def __enter__(self):
        if self.ctx.console.is_terminal and not self.ctx.json_logs:
            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), _Counts(self.units or "shards"),
                                TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                                console=self.ctx.console, transient=True)
            self.bar.start()
            self.bar_task = self.bar.add_task(self._description(), total=self.total)
        return self

    def _description(self) -> str:
        return f"{self.label} [{self.tasks_done}/{self.tasks} shards]" if self.units else self.label

    def add(self, n: int) -> None:
        """``n`` more records done (from any worker)."""
        if not n or not self.units:
            return
        self.done += n
        if self.bar is not None:
            self.bar.advance(self.bar_task, n)
        self.tick()

    def task_done(self) -> None:
        self.tasks_done += 1
        if not self.units:
            self.done += 1
            if self.bar is not None:
                self.bar.advance(self.bar_task)
        elif self.bar is not None:
            self.bar.update(self.bar_task, description=self._description())
        self.tick()

    def tick(self) -> None:
        """Print the plain line when it is due (no terminal)."""
        if self.bar is not None or time.monotonic() - self.last < self.interval or self.tasks_done >= self.tasks:
            return
        self.last = time.monotonic()
        self.ctx.log(self.line())

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = self.done / elapsed
        units = self.units or "shards"
        parts = [f"{self.label.strip()}: {self.done:,}" + (f"/{self.total:,}" if self.total else "") + f" {units}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.1f}%)"
        parts.append(f"{_human(rate)} {units}/s")
        if self.units:
            parts.append(f"{self.tasks_done}/{self.tasks} shards")
        if self.total and rate > 0:
            parts.append(f"ETA {_duration((self.total - self.done) / rate)}")
        elif self.units and self.tasks_done:        # no record total: estimate from the shards
            parts.append(f"ETA ~{_duration((self.tasks - self.tasks_done) * elapsed / self.tasks_done)}")
        return ", ".join(parts)

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.stop()
        if exc[0] is None:
            counted = f", {self.done:,} {self.units}" if self.units else ""
            self.ctx.log(f"{self.label}: {self.tasks_done} shard(s) done{counted}")
        return False


def finish_stage(ctx: Context, stage: str, folder: Path, stats: Stats, config: dict,
                 ran: int, skipped: int, started: float) -> dict:
    """Write ``_meta/stats.json`` and ``_meta/config.json`` in a stage's folder and log it in state."""
    out = {"stage": stage, **stats.to_dict(), "tasks_run": ran, "tasks_skipped": skipped}
    write_json(layout.stats_path(folder), out)
    write_json(layout.config_path(folder), {stage: config, "run": {"executor": ctx.cfg.run.executor}})
    layout.write_card(folder)       # names the data files for datasets.load_dataset(folder)
    if ctx.run_id is not None:
        ctx.state.record_stage(ctx.run_id, stage, started, ran, skipped, out)
    return out

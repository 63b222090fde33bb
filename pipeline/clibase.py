"""The ``webtext`` command line's shared pieces: the Typer app, the global options, the
option types several commands share, and the helpers every command module uses
(``pipeline.cli``: the stages and pipeline runs; ``pipeline.climodel``: training and
evaluation; ``pipeline.clirelease``: releases, takedowns and reading the work directory).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .cliapp import WebtextTyper
from .config import load_config
from .remote import is_url
from .summary import emit

app = WebtextTyper(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                   help="Build a WebText-style corpus from Reddit links and train GPT-2 on it. Every command "
                        "prints a short summary; with --json (webtext --json COMMAND, or COMMAND --json) it "
                        "prints its result as one JSON document on stdout instead.")
console = Console(stderr=True)


class _Global:
    spec: str = "work"             # --workdir as given: a path, or s3:// / gs:// URL
    workdir: Path = Path("work")   # where its files are here: the path, or the bucket's scratch mirror
    config: Optional[Path] = None
    workers: Optional[int] = None
    executor: Optional[str] = None
    ray_address: Optional[str] = None
    json: bool = False             # --json: results as JSON on stdout, not a human summary


G = _Global()
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout instead of "
                                                     "a summary (the same as webtext --json COMMAND).")]


def _json(as_json: bool) -> bool:
    """--json given after the command or before it."""
    return as_json or G.json


@app.callback()
def main_options(
    workdir: Annotated[str, typer.Option(
        metavar="PATH|URL", help="Work directory holding every stage's folder and state.sqlite: a path, or s3://bucket/prefix or "
             "gs://bucket/prefix (worked on through a local scratch: the run.scratch setting).",
        envvar="WEBTEXT_WORKDIR")] = "work",
    config: Annotated[Optional[Path], typer.Option(metavar="PATH", help="TOML config file (one table per stage, e.g. fetch).",
                                                   envvar="WEBTEXT_CONFIG")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes; 0 = one per core.")] = None,
    executor: Annotated[Optional[str], typer.Option(
        metavar="local|ray", help="local (a process pool) or ray (every shard task on a Ray cluster).", envvar="WEBTEXT_EXECUTOR")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        metavar="HOST:PORT", help="Ray cluster to join (host:port or auto); default: start a local one.", envvar="RAY_ADDRESS")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=(
        "Every command prints its result as one JSON document on stdout instead of a short summary "
        "(progress and logs stay on stderr). Also accepted after the command: webtext fetch --json."))] = False,
):
    G.spec, G.config, G.workers, G.json = workdir, config, workers, as_json
    if is_url(workdir):
        from .remote import scratch_path

        G.workdir = scratch_path(workdir, load_config(config, {}).run.scratch)
    else:
        G.workdir = Path(workdir)
    G.executor, G.ray_address = executor, ray_address


def _context(**sections):
    from .executor import Context

    cfg = load_config(G.config, {"run": {"workers": G.workers, "executor": G.executor,
                                         "ray_address": G.ray_address}, **sections})
    return Context(G.spec, cfg, console)


@contextlib.contextmanager
def _mirrored(bulk: bool = True, keep: bool = False):
    """For a command that works on files without running a stage (status, report, eval, ...):
    with a bucket work directory, bring it into the scratch first (with ``bulk``, the data
    behind every placeholder too) and upload what the command wrote afterwards (``keep``:
    leave the data there, not placeholders). Nothing to do for a local work directory."""
    if not is_url(G.spec):
        yield
        return
    ctx = _context()
    ctx.keep_data = keep
    try:
        if bulk:
            n = ctx.store.materialize_all()
            if n:
                ctx.log(f"{n} data file(s) downloaded into {ctx.workdir}")
        yield
    finally:
        ctx.close()


def _lock(command: str, ctx=None):
    """The work directory's lock (see pipeline.lock): a second run exits with code 75."""
    from .lock import WorkdirLock

    return WorkdirLock(ctx.workdir if ctx else G.workdir, command, log=ctx.log if ctx else (lambda m: console.print(m, highlight=False)))


def _one(stage: str, options: dict | None = None, *, as_json: bool = False, **sections) -> None:
    """Run one stage, then print its summary (or with --json its result)."""
    from .run import run_stage
    from .summary import shown, stage_lines, train_lines

    ctx = _context(**sections)
    started = time.monotonic()
    try:
        with _lock(stage, ctx), ctx.tracked_run(stage):
            result = run_stage(ctx, stage, **(options or {}))
    finally:
        ctx.close()
    elapsed = time.monotonic() - started
    spec = G.spec.rstrip("/")
    lines = (train_lines(result, f"{spec}/runs/{ctx.cfg.train.run_name}", elapsed) if stage == "train"
             else stage_lines(result, spec, elapsed))
    emit(shown(result), lines, _json(as_json))


Dumps = Annotated[Optional[list[Path]], typer.Option("--dumps", metavar="PATH", help="Pushshift RS_* dump file or folder (repeatable).")]
Proxy = Annotated[Optional[str], typer.Option(metavar="URL", help="Forward proxy URL for fetching (default: HTTP_PROXY).")]
Bench = Annotated[Optional[list[str]], typer.Option("--benchmark", metavar="NAME|FILE", help="Benchmark: a name from data/benchmarks.toml (lambada, wikitext2, ptb, wsc273, ...), or a file: .jsonl (PATH.jsonl:FIELD), WSC .xml, WikiText .tokens, or plain text (repeatable).")]

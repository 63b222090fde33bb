"""Run stages in order (``webtext run``) and the train stage's adapter.

``run_all`` runs harvest -> fetch -> extract -> dedup -> decontaminate -> shard -> train,
each skipping its finished shards, and says so when nothing needed doing.
"""

from __future__ import annotations

import time

from .errors import ConfigError
from .executor import Context

ORDER = ["harvest", "fetch", "extract", "dedup", "decontaminate", "shard", "train"]


def parse_stages(spec: str) -> list[str]:
    """'harvest,fetch' -> ['harvest', 'fetch'] in pipeline order; unknown names are an error."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    unknown = [n for n in names if n not in ORDER]
    if unknown or not names:
        raise ConfigError(f"unknown stage(s) {', '.join(unknown) or spec!r}", f"Choose from {', '.join(ORDER)}")
    return [s for s in ORDER if s in names]


def run_stage(ctx: Context, name: str, **options) -> dict:
    """Run one stage by name; returns its stats (for train: the run summary)."""
    if name == "train":
        from webtext.model.train import train

        started = time.time()
        ctx.log("[bold]train[/bold]")
        ctx.drop_pool()         # the trainer needs the memory the idle data workers hold
        if ctx.store is not None:       # the trainer memory-maps the token shards: their bytes, here
            ctx.store.materialize_all(ctx.dir("tokens"))
        from webtext.stages.tokenlayout import migrate_flat

        migrate_flat(ctx.dir("tokens"), copy=ctx.store is not None, log=ctx.log)     # the old flat layout, once
        summary = train(ctx.dir("tokens"), ctx.dir("runs"), ctx.cfg.train, log=ctx.log)
        ran = summary["_trained"]
        if ctx.run_id is not None:
            ctx.state.record_stage(ctx.run_id, "train", started, int(ran), int(not ran), summary)
        ctx.publish()
        return summary
    import importlib

    module = importlib.import_module(f"webtext.stages.{name}")
    ctx.log(f"[bold]{name}[/bold]")
    result = module.run(ctx, **options)
    ctx.publish()           # an s3:// or gs:// work directory gets the stage's files now
    return result


def run_all(ctx: Context, stages: list[str] | None = None) -> list[dict]:
    stages = stages or ORDER
    with ctx.tracked_run("run " + " ".join(stages)):
        results = [run_stage(ctx, name) for name in stages]
    work = sum(r.get("tasks_run", 0) for r in results if "tasks_run" in r)
    trained = any(r.get("_trained") for r in results)
    if work == 0 and not trained:
        ctx.log("Nothing to do: every stage is up to date (all shards already done).")
    return results

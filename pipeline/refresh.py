"""``webtext refresh``: one incremental update of the corpus, and its run diff.

A refresh runs harvest -> fetch -> extract -> dedup -> decontaminate -> shard under the
work-directory lock. Every stage skips what is done: harvest maps only new dumps (or API
submissions past the watermark), fetch fetches only URLs never scheduled, extract,
dedup's signatures, decontaminate and tokenize run only on new shards, dedup keeps the
documents already in the corpus, and shard adds a corpus version holding only the new
documents (see each stage's docs).

The run diff (``refresh/diff-NNNNN.json``, and ``refresh/latest.json``) compares every
stage's ``_meta/stats.json`` before and after: records in and out and drops by reason added by
this run, new URLs, documents and tokens, duplicates and contamination found, the
corpus version, and the wall time per stage. A summary is printed.

Exit codes: 0 the corpus was updated, 3 nothing new, 75 another run holds the work
directory, 2 a problem to fix (config, input), 1 an internal error.
"""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import layout
from .executor import Context
from .funnel import STAGE_FOLDERS
from .io import read_json, write_json
from .run import ORDER, run_stage

EXIT_UPDATED, EXIT_NOTHING_NEW = 0, 3
STAGES = ORDER[:-1]                    # no training
FOLDERS = {stage: folder for stage, folder, _ in STAGE_FOLDERS}


def snapshot(workdir: Path) -> dict[str, dict]:
    out = {}
    for stage, folder in FOLDERS.items():
        p = layout.stats_path(Path(workdir) / folder)
        out[stage] = read_json(p) if p.exists() else {}
    return out


def _delta(after: dict, before: dict) -> dict:
    dropped = {k: v - before.get("dropped", {}).get(k, 0) for k, v in after.get("dropped", {}).items()}
    info = {k: v - before.get("info", {}).get(k, 0) for k, v in after.get("info", {}).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {"in": after.get("in", 0) - before.get("in", 0), "out": after.get("out", 0) - before.get("out", 0),
            "dropped": {k: v for k, v in dropped.items() if v}, "info": {k: v for k, v in info.items() if v}}


def _new_urls(harvest: dict) -> int:
    """URLs this run added to urls/: the change in kept URLs plus the URLs a takedown took
    out in this run (URLs leave urls/ only by a takedown), so a takedown never makes it
    negative."""
    return max(0, harvest["out"] + harvest["info"].get("taken_down_urls", 0))


def run_diff(before: dict, after: dict, wall: dict[str, float], started: float) -> dict:
    stages = {s: _delta(after.get(s, {}), before.get(s, {})) for s in FOLDERS}
    shard_after, shard_before = after.get("shard", {}).get("info", {}), before.get("shard", {}).get("info", {})
    updated = shard_after.get("version", 0) != shard_before.get("version", 0)
    return {
        "started": started, "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "updated": updated,
        "corpus_version": shard_after.get("version"),
        "new_urls": _new_urls(stages["harvest"]),
        "fetched": stages["fetch"]["in"],
        "new_documents": stages["extract"]["out"],
        "documents_added": shard_after.get("added_docs", 0) if updated else 0,
        "documents_removed": shard_after.get("removed_docs", 0) if updated else 0,
        "documents_revised": shard_after.get("revised_docs", 0) if updated else 0,
        "revisits": stages["fetch"]["info"].get("revisits", 0),
        "not_modified": stages["fetch"]["dropped"].get("not_modified", 0),
        "tokens_added": shard_after.get("added_tokens", 0) if updated else 0,
        "duplicates": stages["dedup"]["dropped"],
        "contamination": {**stages["decontaminate"]["dropped"],
                          **{k: v for k, v in stages["decontaminate"]["info"].items() if "hit" in k or "cut" in k}},
        "drops": {s: d["dropped"] for s, d in stages.items() if d["dropped"]},
        "stages": stages,
        "wall_s": {s: round(t, 3) for s, t in wall.items()},
    }


def refresh(ctx: Context) -> dict:
    started = time.time()
    before = snapshot(ctx.workdir)
    wall = {}
    with ctx.tracked_run("refresh"):
        for stage in STAGES:
            t = time.time()
            run_stage(ctx, stage)
            wall[stage] = time.time() - t
    diff = run_diff(before, snapshot(ctx.workdir), wall, started)
    diff["run_id"] = ctx.run_id
    out = ctx.dir("refresh")
    write_json(out / f"diff-{ctx.run_id:05d}.json", diff)
    write_json(out / "latest.json", diff)
    return diff


def render(diff: dict, console: Console) -> None:
    t = Table(title=f"refresh run {diff.get('run_id', '?')}: "
                    + (f"corpus version {diff['corpus_version']}" if diff["updated"] else "nothing new"))
    for col in ("stage", "new in", "new out", "dropped", "wall s"):
        t.add_column(col, justify="left" if col in ("stage", "dropped") else "right")
    for stage, d in diff["stages"].items():
        t.add_row(stage, f"{d['in']:,}", f"{d['out']:,}",
                  ", ".join(f"{k}: {v:,}" for k, v in sorted(d["dropped"].items(), key=lambda kv: -kv[1])) or "-",
                  f"{diff['wall_s'].get(stage, 0):.1f}")
    console.print(t)
    console.print(f"new URLs {diff['new_urls']:,}; fetched {diff['fetched']:,}; documents added "
                  f"{diff['documents_added']:,}, removed {diff['documents_removed']:,}; tokens added "
                  f"{diff['tokens_added']:,}", highlight=False)
    if diff.get("revisits"):
        console.print(f"revisited {diff['revisits']:,} URL(s): {diff['not_modified']:,} not modified, "
                      f"{diff['documents_revised']:,} document(s) revised", highlight=False)

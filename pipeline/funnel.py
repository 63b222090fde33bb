"""The funnel: records into and out of every stage, with drop reasons.

Reads each stage's ``_meta/stats.json`` and the training runs' ``summary.json`` from a work
directory. ``webtext report`` and ``webtext demo`` print it; ``report --json`` writes it.
"""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import layout

# (stage, folder, unit of its records)
STAGE_FOLDERS = [
    ("harvest", "urls", "submissions -> URLs"),
    ("fetch", "warc", "URLs -> pages"),
    ("extract", "docs", "pages -> documents"),
    ("dedup", "dedup", "documents"),
    ("decontaminate", "clean", "documents"),
    ("shard", "tokens", "documents"),
]


def units(unit: str) -> tuple[str, str]:
    """The units of a stage's records in and out. Its drops count records in: harvest
    drops submissions, fetch URLs, extract pages."""
    unit_in, _, unit_out = unit.partition(" -> ")
    return unit_in, unit_out or unit_in


def collect(workdir: Path) -> dict:
    """Every stage's ``_meta/stats.json`` with the units of its records in and out (``unit_in``,
    ``unit_out``; ``unit`` names both), the token totals and the training summaries."""
    workdir = Path(workdir)
    layout.migrate(workdir)         # a work directory from before version 5: sidecars into _meta/
    stages = []
    for stage, folder, unit in STAGE_FOLDERS:
        p = layout.stats_path(workdir / folder)
        if p.exists():
            unit_in, unit_out = units(unit)
            stages.append({**json.loads(p.read_text()), "unit": unit, "unit_in": unit_in, "unit_out": unit_out})
    runs = {}
    for p in sorted((workdir / "runs").glob("*/summary.json")):
        runs[p.parent.name] = json.loads(p.read_text())
    tokens = {}
    manifest = workdir / "tokens" / "manifest.json"
    if manifest.exists():
        tokens = json.loads(manifest.read_text()).get("totals", {})
    return {"stages": stages, "tokens": tokens, "runs": runs}


def recovery_line(info: dict) -> str | None:
    """fetch's dead-link recovery in one line (None when no dead link was looked up)."""
    got = {k.removeprefix("recovered_"): v for k, v in sorted(info.items()) if k.startswith("recovered_") and v}
    miss, error = info.get("archive_miss", 0), info.get("archive_error", 0)
    if not (got or miss or error):
        return None
    found = ", ".join(f"{k} {v:,}" for k, v in got.items()) or "none"
    return f"dead links recovered from web archives: {found}; in no archive: {miss:,}" + \
        (f"; archive errors: {error:,}" if error else "")


def render(funnel: dict, console: Console) -> None:
    table = Table(title="webtext funnel", show_lines=False)
    for col in ("stage", "unit", "in", "out", "dropped (reason: count)"):
        table.add_column(col, justify="right" if col in ("in", "out") else "left")
    for s in funnel["stages"]:
        drops = ", ".join(f"{k}: {v}" for k, v in sorted(s["dropped"].items(), key=lambda kv: -kv[1]))
        table.add_row(s["stage"], s["unit"], f"{s['in']:,} {s['unit_in']}", f"{s['out']:,} {s['unit_out']}",
                      drops or "-")
    console.print(table)
    fetch = next((s for s in funnel["stages"] if s.get("stage") == "fetch"), None)
    if fetch and (line := recovery_line(fetch.get("info", {}))):
        console.print(line)
    if funnel["tokens"]:
        t = funnel["tokens"]
        console.print(f"tokens written: train {t['train']['tokens']:,} ({t['train']['docs']} docs), "
                      f"val {t['val']['tokens']:,} ({t['val']['docs']} docs)")
    for name, r in funnel["runs"].items():
        val = f"{r['final_val_loss']:.3f}" if r.get("final_val_loss") is not None else "n/a"
        console.print(f"model '{name}' ({r['model']}, {r['steps']} steps on {r['device']}): "
                      f"final train loss {r['final_train_loss']:.3f}, val loss {val}")

"""What a command did, for a person (a few lines) or for a program (one JSON document).

Every command of ``pipeline.cli`` ends in ``emit``: by default it prints the human lines
that the functions here write from the command's result; with ``--json`` it prints the
result itself, unchanged, as one JSON document on stdout. Progress and log lines go to
stderr either way, so ``webtext --json extract | jq .out`` works.

    extract: 247 pages in -> 232 documents out (15 dropped) in 4.2 s
      dropped: too_short 12, wrong_lang 3
      shards: 4 run, 4 already done
      output: work/docs/
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable

from .funnel import STAGE_FOLDERS, recovery_line, units

# stage -> (unit in, unit out, output folder), from the funnel's table
STAGE_UNITS = {stage: (*units(unit), folder) for stage, folder, unit in STAGE_FOLDERS}
TOP_DROPS = 4          # drop reasons named one by one; the rest are summed


def emit(data, lines: Iterable[str], as_json: bool) -> None:
    """Print ``data`` as one JSON document (``as_json``), else the human ``lines``, on stdout."""
    if as_json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        for line in lines:
            sys.stdout.write(line + "\n")
    sys.stdout.flush()


def shown(result: dict) -> dict:
    """A stage's result without its private keys (``_trained``, ...): what --json prints."""
    return {k: v for k, v in result.items() if not k.startswith("_")}


def num(x) -> str:
    """12345 -> '12,345'; 0.5 -> '0.5'."""
    if isinstance(x, float) and not x.is_integer():
        return f"{x:,.3g}" if abs(x) < 1000 else f"{x:,.0f}"
    return f"{int(x):,}"


def size(nbytes: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if nbytes < 1000 or unit == "TB":
            return f"{nbytes:,.0f} {unit}" if unit == "bytes" else f"{nbytes:,.1f} {unit}"
        nbytes /= 1000
    raise AssertionError("unreachable")


def seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, s = divmod(round(s), 60)
    return f"{m} min {s:02d} s" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def drops(dropped: dict) -> str:
    """The main drop reasons with their counts, largest first: 'too_short 12, wrong_lang 3'."""
    ranked = sorted(dropped.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{k} {v:,}" for k, v in ranked[:TOP_DROPS])
    if rest := ranked[TOP_DROPS:]:
        text += f", and {len(rest)} more reason(s) {sum(v for _, v in rest):,}"
    return text


def stage_lines(result: dict, workdir: str, elapsed: float) -> list[str]:
    """A data stage's result (``{"stage", "in", "out", "dropped", "info", "tasks_run", ...}``)
    in a few lines; ``workdir`` as the user named it (a path or a bucket URL)."""
    stage, info = result["stage"], result.get("info", {})
    unit_in, unit_out, folder = STAGE_UNITS.get(stage, ("records", "records", stage))
    if stage == "shard" and info.get("folder"):
        folder = f"{folder}/{info['folder']}"
    dropped = sum(result.get("dropped", {}).values())
    lines = [f"{stage}: {num(result['in'])} {unit_in} in -> {num(result['out'])} {unit_out} out "
             f"({num(dropped)} dropped) in {seconds(elapsed)}"]
    if dropped:
        lines.append(f"  dropped: {drops(result['dropped'])}")
    lines += [f"  {line}" for line in _stage_details(stage, info)]
    if "tasks_run" in result:
        lines.append(f"  shards: {num(result['tasks_run'])} run, {num(result.get('tasks_skipped', 0))} already done")
    lines.append(f"  output: {workdir.rstrip('/')}/{folder}/")
    return lines


def _stage_details(stage: str, info: dict) -> list[str]:
    """The few ``info`` numbers a person wants to see for each stage."""
    out = []
    if stage == "harvest":
        out.append(f"distinct URLs seen: {num(info.get('unique_urls', 0))}, new in this run: "
                   f"{num(info.get('new_urls', 0))}, taken down: {num(info.get('taken_down_urls', 0))}")
    elif stage == "fetch":
        parts = [f"new URLs: {num(info.get('new_urls', 0))}", f"revisits: {num(info.get('revisits_planned', 0))}"]
        if info.get("bytes"):
            parts.append(f"downloaded: {size(info['bytes'])}")
        out.append(", ".join(parts))
        if line := recovery_line(info):
            out.append(line)
    elif stage == "dedup" and "clusters" in info:
        out.append(f"duplicate clusters: {num(info['clusters'])}")
    elif stage == "decontaminate":
        if info.get("report_only"):
            out.append("report only: no document changed")
        if info.get("documents_cut"):
            out.append(f"documents cut around benchmark overlap: {num(info['documents_cut'])} "
                       f"({num(info.get('spans_removed', 0))} spans)")
    elif stage == "shard" and "version" in info:
        out.append(f"corpus version {info['version']}: {num(info.get('docs_train', 0))} train / "
                   f"{num(info.get('docs_val', 0))} val documents, {num(info.get('tokens_train', 0))} train / "
                   f"{num(info.get('tokens_val', 0))} val tokens ({info.get('tokenizer', '?')})")
        out.append(f"changed: {num(info.get('added_docs', 0))} documents added "
                   f"({num(info.get('added_tokens', 0))} tokens), {num(info.get('revised_docs', 0))} revised, "
                   f"{num(info.get('removed_docs', 0))} removed")
    return out


def train_lines(summary: dict, run_dir: str, elapsed: float) -> list[str]:
    """The train stage's run summary (``steps``, ``final_train_loss``, ``params``, ...)."""
    if not summary.get("_trained", True):
        return [f"train: {run_dir} already at step {num(summary.get('steps', 0))}: nothing to do"]
    val = summary.get("final_val_loss")
    params = summary.get("params", 0)
    return [f"train: {summary.get('model', '?')} model ({params / 1e6:,.2f}M parameters) on "
            f"{summary.get('world_size', 1)} x {summary.get('device', '?')}: {num(summary.get('steps', 0))} steps, "
            f"{num(summary.get('tokens_seen', 0))} tokens in {seconds(elapsed)}",
            f"  loss: train {summary.get('final_train_loss', float('nan')):.3f}, "
            f"val {'n/a' if val is None else f'{val:.3f}'}; {num(round(summary.get('tokens_per_s') or 0))} tokens/s",
            f"  output: {run_dir}/ (ckpt.pt, summary.json)"]


def eval_lines(results: list[dict], path: str) -> list[str]:
    """``webtext eval``'s results: one line per benchmark."""
    lines = []
    for r in results:
        if r.get("task") == "last word":
            lines.append(f"{r['benchmark']}: last-word accuracy {r['accuracy']:.1%} over "
                         f"{num(r['examples'])} passages (perplexity {r['ppl']:,.2f})")
        else:
            lines.append(f"{r['benchmark']}: word perplexity {r['word_ppl']:,.2f}, token perplexity "
                         f"{r['token_ppl']:,.2f}, {r['bits_per_byte']:.3f} bits/byte over {num(r['tokens'])} tokens")
    lines.append(f"written: {path}")
    return lines

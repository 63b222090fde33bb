"""``webtext report``: one self-contained HTML file about a work directory.

``reports/report.html`` embeds its plots (matplotlib, PNG, base64) and styles, and
references no external URL. A header gives the generation time (UTC), the work directory
and each stage's ``_meta/config.json``. Every plot is built in ``pipeline.reportplots`` (axes
labelled with units, alt text with its numbers). Sections appear when their data exists:
the funnel (a panel per stage in its own units, and each stage's drops by reason), sources
(domains, subreddits, karma, submissions per month), fetch (status classes, errors,
latency, bytes), documents (length in tokens, language, extractor, and the live and
archive-recovered shares by year of submission), filters and PII (each extract rule's
rejection rate, first-failing and alone, and the PII counts: ``pipeline.reportfilters``), dedup (cluster sizes, removals by
reason, example pairs), decontamination (the GPT-2-style overlap table, Wikipedia
removals), tokens (per version and split, the shard list), training (loss, validation
loss, tokens/s, MFU or why it is absent) and the refresh history. ``collect_report``
returns the same numbers as a dict (``report --json`` writes ``reports/report.json``).

Memory does not grow with the corpus: every number is folded a record batch at a time
over the shards, reading only the columns it needs (``pipeline.reportstats``), and the
only text read is that of the dedup examples, near-duplicates shown beside the document
kept for them with the differing words highlighted (``pipeline.reportdedup``).
"""

from __future__ import annotations

import csv
import html
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from . import layout
from . import reportplots as plots
from .funnel import STAGE_FOLDERS, collect
from .io import atomic_path, sorted_files, write_json
from .reportdedup import STYLE as DEDUP_STYLE
from .reportdedup import dedup_section, render_examples
from . import reportfilters
from .reportstats import IntHistogram, Recovery, batches, count_values, top
from .schemas import upgrade_docs


def _sources(w: Path) -> dict | None:
    domains, subs, months, n = Counter(), Counter(), Counter(), 0
    karma = IntHistogram()
    for t in batches(w / "urls", "urls-*.parquet", ["registered_domain", "subreddits", "score", "first_seen",
                                                    "num_submissions"]):
        n += t.num_rows
        count_values(domains, t["registered_domain"])
        count_values(subs, pc.list_flatten(t["subreddits"]))
        karma.add(t["score"])
        month = t["first_seen"].to_numpy().astype("datetime64[s]").astype("datetime64[M]")
        u, inv = np.unique(month, return_inverse=True)
        per = np.bincount(inv, weights=t["num_submissions"].to_numpy()).astype(np.int64)
        months.update(dict(zip(np.datetime_as_string(u, unit="M").tolist(), per.tolist())))
    if not n:
        return None
    return {"urls": n, "top_domains": top(domains), "top_subreddits": top(subs),
            "karma": karma.summary(log=True), "submissions_per_month": sorted(months.items())}


def _fetch(w: Path) -> dict | None:
    status, errors, latency, n, size = Counter(), Counter(), IntHistogram(), 0, 0
    for t in batches(w / "warc", "fetchlog-*.parquet", ["status", "error", "elapsed_ms", "bytes"]):
        n += t.num_rows
        code = pc.fill_null(t["status"], 0).to_numpy()
        cls = np.where(code != 0, np.char.add((code // 100).astype(str), "xx"), "none")
        status.update(dict(zip(*(x.tolist() for x in np.unique(cls, return_counts=True)))))
        count_values(errors, pc.drop_null(pc.if_else(pc.equal(t["error"], ""), None, t["error"])))
        latency.add(t["elapsed_ms"])
        size += int(pc.sum(t["bytes"]).as_py() or 0)
    if not n:
        return None
    return {"pages": n, "status_classes": sorted(status.items()), "errors": top(errors, 20),
            "latency_ms": latency.summary(log=True), "bytes": size}


def _documents(w: Path) -> dict | None:
    langs, extractors, recovery, n = Counter(), Counter(), Recovery(), 0
    for t in batches(w / "docs", "docs-*.parquet", ["lang", "extractor", "first_seen", "source"], upgrade_docs):
        n += t.num_rows
        count_values(langs, t["lang"])
        count_values(extractors, t["extractor"])
        recovery.add(t["first_seen"].to_numpy(), t["source"])
    if not n:
        return None
    return {"docs": n, "languages": top(langs, 10), "extractors": top(extractors), "recovery": recovery.summary(),
            "ai_optout": _optouts(w)}


def _optouts(w: Path) -> dict | None:
    """Extract's AI opt-out counts (``stages.optout.STATS`` in docs/_meta/stats.json): pages
    with a text checked, opted out, by kind, and kept in docs/; the setting they ran with."""
    from webtext.stages.optout import STATS

    stats_p, config_p = layout.stats_path(w / "docs"), layout.config_path(w / "docs")
    info = json.loads(stats_p.read_text()).get("info", {}) if stats_p.exists() else {}
    if not info.get("ai_optout_checked"):
        return None
    mode = json.loads(config_p.read_text()).get("extract", {}).get("ai_optout") if config_p.exists() else None
    return {"mode": mode or "record", **{k.removeprefix("ai_optout_"): info.get(k, 0) for k in STATS}}


def _tokens(w: Path, m: dict) -> tuple[dict, dict]:
    """Tokens per document (the latest version's shards, memory-mapped: only the list
    offsets are read, a record batch at a time) and the table per version and shard."""
    from webtext.stages.shard import read_tokens

    lengths = IntHistogram()
    for s in m["shards"]:
        for c in read_tokens(w / "tokens" / s["file"])["tokens"].chunks:
            lengths.add(pc.list_value_length(c))
    files = m.get("shard_files") or {s["file"]: s for s in m["shards"]}
    versions = m.get("versions") or [{"version": 1, "shards": [s["file"] for s in m["shards"]]}]
    return lengths.summary(log=True), {
        "versions": [{"version": v["version"], **{f"{sp}_{k}": sum(files[f][k] for f in v["shards"]
                                                                  if files[f]["split"] == sp)
                                                 for sp in ("train", "val") for k in ("docs", "tokens")}}
                     for v in versions],
        "shards": [{"file": f, "split": e["split"], "docs": e["docs"], "tokens": e["tokens"],
                    "bytes": (w / "tokens" / f).stat().st_size if (w / "tokens" / f).exists() else None}
                   for f, e in files.items()]}


def stage_config(w: Path) -> dict:
    """The config each stage ran with (its ``_meta/config.json``), in pipeline order, and the
    run section (executor) of the latest stage that recorded one."""
    cfg: dict = {}
    for stage, folder, _ in STAGE_FOLDERS:
        p = layout.config_path(w / folder)
        if p.exists():
            saved = json.loads(p.read_text())
            cfg[stage] = saved.get(stage, {})
            if "run" in saved:
                cfg["run"] = saved["run"]
    return {"run": cfg.pop("run"), **cfg} if "run" in cfg else cfg


def _metric_rows(p: Path) -> list[dict]:
    """A run's metrics: JSONL, or CSV (``train.metrics_format = "csv"``: an empty cell is None)."""
    if p.suffix != ".csv":
        return [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
    with p.open(newline="") as f:
        return [{k: (int(v) if k == "step" else float(v)) if v else None for k, v in row.items()}
                for row in csv.DictReader(f)]


def mfu_absent(summary: dict) -> str:
    """Why a run's metrics have no MFU: it is measured against a GPU's peak FLOP/s."""
    device = str(summary.get("device") or "")
    if not device:
        return "MFU not recorded: the metrics have none and the run has no summary.json naming its device"
    if not device.startswith("cuda"):
        return (f"MFU not recorded: a {device.split(':')[0].upper()} run (MFU is measured against a GPU's peak "
                "FLOP/s; set train.peak_tflops to measure it against another)")
    return (f"MFU not recorded: the peak FLOP/s of this GPU ({device}) is not known; "
            "set train.peak_tflops to the GPU's bf16 dense peak")


def collect_report(workdir: Path, source: str | None = None) -> dict:
    """Every number of the report, streamed shard by shard and batch by batch (memory: a
    batch of a shard's non-text columns, and the text of the dedup examples only).
    ``source``: the bucket URL that ``workdir`` is the local scratch of, if any."""
    w = Path(workdir)
    layout.migrate(w)               # a work directory from before version 5: sidecars into _meta/
    meta = {"generated_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"), "workdir": str(w.resolve())}
    if source:
        meta |= {"workdir": source, "scratch": str(w.resolve())}
    r: dict = {"meta": {**meta, "config": stage_config(w)}, "funnel": collect(w)}
    for name, section in (("sources", _sources), ("fetch", _fetch), ("documents", _documents),
                          ("filters", reportfilters.collect)):
        if (got := section(w)) is not None:
            r[name] = got
    manifest = w / "tokens" / "manifest.json"
    if manifest.exists():
        r.setdefault("documents", {})["tokens_per_doc"], r["tokens"] = _tokens(w, json.loads(manifest.read_text()))
    if layout.meta(w / "dedup", layout.CLUSTERS).exists():
        r["dedup"] = dedup_section(w)
    overlap = layout.meta(w / "clean", layout.OVERLAP)
    stats = layout.stats_path(w / "clean")
    if overlap.exists() or stats.exists():
        dropped = json.loads(stats.read_text()).get("dropped", {}) if stats.exists() else {}
        r["decontamination"] = {
            "overlap": json.loads(overlap.read_text()).get("benchmarks", []) if overlap.exists() else [],
            "wikipedia": {k: v for k, v in dropped.items() if k.startswith("wikipedia")}}
    curves = {}
    for p in sorted([*(w / "runs").glob("*/metrics.jsonl"), *(w / "runs").glob("*/metrics.csv")]):
        rows = _metric_rows(p)
        c = {k: [[x["step"], x[k]] for x in rows if x.get(k) is not None]
             for k in ("loss", "val_loss", "tokens_per_s", "mfu")}
        if not any(v for _, v in c["mfu"]):
            c["mfu_absent"] = mfu_absent(r["funnel"]["runs"].get(p.parent.name, {}))
        curves[p.parent.name] = c
    if curves:
        r["training"] = curves
    diffs = [json.loads(p.read_text()) for p in sorted_files(w / "refresh", "diff-*.json")]
    if diffs:
        r["refresh"] = [{k: d.get(k) for k in ("run_id", "started_utc", "updated", "corpus_version", "new_urls",
                                              "fetched", "documents_added", "documents_removed", "tokens_added")}
                        | {"wall_s": round(sum(d.get("wall_s", {}).values()), 1)} for d in diffs]
    return r


# --- HTML ------------------------------------------------------------------------------

def _optout_table(o: dict) -> str:
    """The opted-out share of the pages with a text, per signal kind (a page may have several)."""
    n = o["checked"]
    rows = [[kind, o[key], f"{o[key] / n:.1%}"] for kind, key in (
        ("any (ai_optout)", "pages"), ("robots.txt disallows an AI crawler", "robots"),
        ("noai (X-Robots-Tag, robots meta)", "noai"), ("TDMRep tdm-reservation 1", "tdm"))]
    kept = "kept in the corpus" if o["mode"] == "record" else "dropped (reason ai_optout)"
    return (f"<h3>AI opt-outs</h3><p>Of {n:,} pages with a text, {o['pages']:,} ({o['pages'] / n:.1%}) opted out "
            f"of AI use; with <code>extract.ai_optout = \"{html.escape(o['mode'])}\"</code> they are {kept} "
            f"({o['kept']:,} in docs/).</p>" + _table(rows, ["signal", "pages", "of pages with a text"]))


def _table(rows: list, header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.4g}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return "" if v is None else str(v)


def render_html(r: dict) -> str:
    parts, toc = [], []

    def section(sid: str, title: str, body: str) -> None:
        parts.append(f'<section id="{sid}"><h2>{html.escape(title)}</h2>{body}</section>')
        toc.append(f'<a href="#{sid}">{html.escape(title)}</a>')

    f = r["funnel"]
    if f["stages"]:
        rows = [[s["stage"], f"{s['in']:,} {s['unit_in']}", f"{s['out']:,} {s['unit_out']}",
                 f"{sum(s['dropped'].values()):,} {s['unit_in']}" if s["dropped"] else "",
                 ", ".join(f"{k}: {v:,}" for k, v in sorted(s["dropped"].items(), key=lambda kv: -kv[1]))]
                for s in f["stages"]]
        drops = "".join(plots.drops(s) for s in f["stages"])
        section("funnel", "Funnel",
                "<p>Each stage counts its own unit: harvest reads submissions and writes URLs, fetch "
                "turns URLs into pages, extract pages into documents; the later stages count documents. "
                "A stage's drops are counted in the records it takes in.</p>"
                + plots.funnel(f["stages"]) + _table(rows, ["stage", "in", "out", "dropped", "by reason"])
                + ("<h3>Drop reasons per stage</h3>" + drops if drops else ""))
    if "sources" in r:
        s = r["sources"]
        section("sources", "Sources", f"<p>{s['urls']:,} URLs</p>"
                + plots.bars(s["top_domains"], "top registered domains", "URLs", "registered domain")
                + plots.bars(s["top_subreddits"], "top subreddits", "URLs", "subreddit")
                + plots.histogram(s["karma"], "karma per URL", "karma (summed score)", "URLs")
                + plots.bars(s["submissions_per_month"], "submissions per month (by first submission)",
                             "submissions", "month of first submission (UTC)", False))
    if "fetch" in r:
        s = r["fetch"]
        section("fetch", "Fetch", f"<p>{s['pages']:,} URLs tried, {s['bytes'] / 1e6:,.1f} MB archived</p>"
                + plots.bars(s["status_classes"], "HTTP status classes", "URLs", "HTTP status class", False)
                + plots.bars(s["errors"], "fetch errors", "URLs", "error")
                + plots.histogram(s["latency_ms"], "latency", "latency (ms)", "URLs"))
    if "documents" in r:
        s = r["documents"]
        body = f"<p>{s.get('docs', 0):,} documents extracted</p>" \
            + plots.bars(s.get("languages", []), "languages", "documents", "language") \
            + plots.bars(s.get("extractors", []), "extractors", "documents", "extractor")
        if s.get("recovery") and s["recovery"]["by_year"]:
            rec = s["recovery"]
            total = sum(rec["total"].values())
            body += plots.recovery(rec) + _table([[k, n, f"{n / total:.1%}" if total else ""]
                                                  for k, n in rec["total"].items()], ["source", "documents", "share"])
        if s.get("ai_optout"):
            body += _optout_table(s["ai_optout"])
        if "tokens_per_doc" in s:
            body += plots.histogram(s["tokens_per_doc"], "document length (corpus, latest version)",
                                    "document length (GPT-2 tokens)", "documents")
        section("documents", "Documents", body)
    if "filters" in r:
        section("filters", "Filters and PII", reportfilters.render(r["filters"], _table))
    if "dedup" in r:
        s = r["dedup"]
        section("dedup", "Dedup", f"<p>{s['removed']:,} duplicates removed</p>"
                + plots.bars(s["cluster_sizes"], "clusters by size", "clusters", "documents per cluster", False)
                + _table(s["reasons"], ["reason", "documents"]) + render_examples(s, _fmt))
    if "decontamination" in r:
        s = r["decontamination"]
        rows = [[b["benchmark"], b["ngrams"], b["ngrams_in_corpus"], b["percent_in_corpus"], b["documents_hit"],
                 b.get("documents_removed", 0), b.get("chars_removed", 0)] for b in s["overlap"]]
        section("decontamination", "Decontamination",
                _table(rows, ["benchmark", "13-grams", "in corpus", "%", "docs hit", "docs removed", "chars removed"])
                + _table(sorted(s["wikipedia"].items()), ["Wikipedia removal", "documents"]))
    if "tokens" in r:
        s = r["tokens"]
        section("tokens", "Tokens",
                _table([[v["version"], v["train_docs"], v["train_tokens"], v["val_docs"], v["val_tokens"]]
                        for v in s["versions"]], ["version", "train docs", "train tokens", "val docs", "val tokens"])
                + _table([[x["file"], x["split"], x["docs"], x["tokens"], x["bytes"]] for x in s["shards"]],
                         ["shard", "split", "docs", "tokens", "bytes"]))
    if "training" in r:
        section("training", "Training", "".join(plots.training(name, c) for name, c in r["training"].items()))
    if "refresh" in r:
        keys = ["run_id", "started_utc", "updated", "corpus_version", "new_urls", "fetched", "documents_added",
                "documents_removed", "tokens_added", "wall_s"]
        section("refresh", "Refresh history", _table([[d[k] for k in keys] for d in r["refresh"]], keys))
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left}img{display:block;margin:1em 0}header p{margin:.3em 0}"
             "pre{background:#f6f6f6;padding:.6em;overflow-x:auto}.absent{color:#666;font-style:italic}" + DEDUP_STYLE)
    nav = " · ".join(toc)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>webtext report</title>"
            f"<style>{style}</style></head><body>{_header(r.get('meta', {}))}<nav>{nav}</nav>{''.join(parts)}"
            "</body></html>")


def _header(meta: dict) -> str:
    """Generation time, work directory and each stage's config, the last folded away."""
    cfg = meta.get("config") or {}
    lines = []
    for name, values in cfg.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
        lines.append("")
    config = (f"<details><summary>config (from each stage's <code>_meta/config.json</code>: "
              f"{html.escape(', '.join(cfg))})</summary><pre>{html.escape(chr(10).join(lines))}</pre></details>"
              if cfg else "<p>config: no stage has written a <code>_meta/config.json</code></p>")
    return (f"<header><h1>webtext report</h1><p>generated {html.escape(meta.get('generated_utc', ''))}</p>"
            f"<p>work directory <code>{html.escape(meta.get('workdir', ''))}</code>"
            + (f" (local scratch <code>{html.escape(meta['scratch'])}</code>)" if meta.get("scratch") else "")
            + f"</p>{config}</header>")


def write_report(workdir: Path, as_json: bool = False, source: str | None = None) -> Path:
    r = collect_report(workdir, source)
    out = Path(workdir) / "reports"
    if as_json:
        write_json(out / "report.json", r)
        return out / "report.json"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "report.html") as tmp:
        Path(tmp).write_text(render_html(r), encoding="utf-8")
    return out / "report.html"

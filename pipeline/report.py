"""``webtext report``: one self-contained HTML file about a work directory.

``reports/report.html`` embeds its plots (matplotlib, PNG, base64) and styles, and
references no external URL. Sections appear when their data exists: the funnel, sources
(domains, subreddits, karma, submissions per month), fetch (status classes, errors,
latency, bytes), documents (length in tokens, language, extractor, and the live and
archive-recovered shares by year of submission), dedup (cluster sizes, removals by
reason, example pairs), decontamination (the GPT-2-style overlap table, Wikipedia
removals), tokens (per version and split, the shard list), training (loss, validation
loss, tokens/s, MFU) and the refresh history. ``collect_report`` returns the same numbers
as a dict (``report --json`` writes ``reports/report.json``).

Memory does not grow with the corpus: every number is folded a record batch at a time
over the shards, reading only the columns it needs (``pipeline.reportstats``), and the
only text read is that of the dedup examples, near-duplicates shown beside the document
kept for them with the differing words highlighted (``pipeline.reportdedup``).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from .funnel import collect
from .io import atomic_path, sorted_files, write_json
from .reportdedup import STYLE as DEDUP_STYLE
from .reportdedup import dedup_section, render_examples
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
    return {"docs": n, "languages": top(langs, 10), "extractors": top(extractors), "recovery": recovery.summary()}


def _tokens(w: Path, m: dict) -> tuple[dict, dict]:
    """Tokens per document (the latest version's shards, memory-mapped: only the list
    offsets are read, a record batch at a time) and the table per version and shard."""
    from stages.shard import read_tokens

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


def collect_report(workdir: Path) -> dict:
    """Every number of the report, streamed shard by shard and batch by batch (memory: a
    batch of a shard's non-text columns, and the text of the dedup examples only)."""
    w = Path(workdir)
    r: dict = {"funnel": collect(w)}
    for name, section in (("sources", _sources), ("fetch", _fetch), ("documents", _documents)):
        if (got := section(w)) is not None:
            r[name] = got
    manifest = w / "tokens" / "manifest.json"
    if manifest.exists():
        r.setdefault("documents", {})["tokens_per_doc"], r["tokens"] = _tokens(w, json.loads(manifest.read_text()))
    if (w / "dedup" / "_clusters.parquet").exists():
        r["dedup"] = dedup_section(w)
    overlap = w / "clean" / "_overlap.json"
    stats = w / "clean" / "_stats.json"
    if overlap.exists() or stats.exists():
        dropped = json.loads(stats.read_text()).get("dropped", {}) if stats.exists() else {}
        r["decontamination"] = {
            "overlap": json.loads(overlap.read_text()).get("benchmarks", []) if overlap.exists() else [],
            "wikipedia": {k: v for k, v in dropped.items() if k.startswith("wikipedia")}}
    curves = {}
    for p in sorted((w / "runs").glob("*/metrics.jsonl")):
        rows = [json.loads(x) for x in p.read_text().splitlines() if x.strip()]
        curves[p.parent.name] = {k: [[x["step"], x[k]] for x in rows if x.get(k) is not None]
                                 for k in ("loss", "val_loss", "tokens_per_s", "mfu")}
    if curves:
        r["training"] = curves
    diffs = [json.loads(p.read_text()) for p in sorted_files(w / "refresh", "diff-*.json")]
    if diffs:
        r["refresh"] = [{k: d.get(k) for k in ("run_id", "started_utc", "updated", "corpus_version", "new_urls",
                                              "fetched", "documents_added", "documents_removed", "tokens_added")}
                        | {"wall_s": round(sum(d.get("wall_s", {}).values()), 1)} for d in diffs]
    return r


# --- HTML ------------------------------------------------------------------------------

def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return f'<img alt="plot" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def _fig(w: float = 6, h: float = 3):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(w, h))


def _bars(pairs, title: str, horizontal: bool = True) -> str:
    if not pairs:
        return ""
    fig, ax = _fig(6, max(2, 0.28 * len(pairs)) if horizontal else 3)
    labels, values = [str(p[0]) for p in pairs], [p[1] for p in pairs]
    if horizontal:
        ax.barh(labels[::-1], values[::-1], color="#4c72b0")
    else:
        ax.bar(labels, values, color="#4c72b0")
        ax.tick_params(axis="x", rotation=45)
    ax.set_title(title)
    return _png(fig)


def _histogram(h: dict, title: str, xlabel: str, log: bool = True) -> str:
    if not h.get("counts"):
        return ""
    fig, ax = _fig()
    e = h["edges"]
    ax.bar(e[:-1], h["counts"], width=np.diff(e), align="edge", color="#55a868", edgecolor="white")
    if log:
        ax.set_xscale("log")
    ax.set_title(f"{title} (median {h['median']:,.0f}, p90 {h['p90']:,.0f})")
    ax.set_xlabel(xlabel)
    return _png(fig)


SOURCE_COLORS = {"live": "#4c72b0", "commoncrawl": "#dd8452", "wayback": "#55a868"}


def _recovery(rec: dict) -> str:
    """Stacked bars: documents per year of submission, live vs each archive."""
    if not rec or not rec["by_year"]:
        return ""
    fig, ax = _fig(6, 3)
    years = [str(r["year"]) for r in rec["by_year"]]
    bottom = np.zeros(len(years))
    for s in rec["sources"]:
        v = np.array([r[s] for r in rec["by_year"]], dtype=float)
        ax.bar(years, v, bottom=bottom, label=s, color=SOURCE_COLORS.get(s))
        bottom += v
    ax.tick_params(axis="x", rotation=45)
    ax.legend()
    ax.set_title(f"documents by year of submission and source ({rec['recovered_share']:.1%} recovered from archives)")
    total = sum(rec["total"].values())
    rows = [[s, n, f"{n / total:.1%}" if total else ""] for s, n in rec["total"].items()]
    return _png(fig) + _table(rows, ["source", "documents", "share"])


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
        fig, ax = _fig(7, 3)
        names = [s["stage"] for s in f["stages"]]
        x = np.arange(len(names))
        ax.bar(x - 0.2, [s["in"] for s in f["stages"]], 0.4, label="in", color="#8c8c8c")
        ax.bar(x + 0.2, [s["out"] for s in f["stages"]], 0.4, label="out", color="#4c72b0")
        ax.set_xticks(x, names)
        ax.legend()
        ax.set_title("records in and out per stage")
        rows = [[s["stage"], s["unit"], s["in"], s["out"],
                 ", ".join(f"{k}: {v:,}" for k, v in sorted(s["dropped"].items(), key=lambda kv: -kv[1]))]
                for s in f["stages"]]
        section("funnel", "Funnel", _png(fig) + _table(rows, ["stage", "unit", "in", "out", "dropped"]))
    if "sources" in r:
        s = r["sources"]
        section("sources", "Sources", f"<p>{s['urls']:,} URLs</p>"
                + _bars(s["top_domains"], "top registered domains") + _bars(s["top_subreddits"], "top subreddits")
                + _histogram(s["karma"], "karma per URL", "karma")
                + _bars(s["submissions_per_month"], "submissions per month (by first submission)", False))
    if "fetch" in r:
        s = r["fetch"]
        section("fetch", "Fetch", f"<p>{s['pages']:,} URLs tried, {s['bytes'] / 1e6:,.1f} MB archived</p>"
                + _bars(s["status_classes"], "HTTP status classes", False) + _bars(s["errors"], "errors")
                + _histogram(s["latency_ms"], "latency", "ms"))
    if "documents" in r:
        s = r["documents"]
        body = f"<p>{s.get('docs', 0):,} documents extracted</p>" + _bars(s.get("languages", []), "languages") \
            + _bars(s.get("extractors", []), "extractor") + _recovery(s.get("recovery"))
        if "tokens_per_doc" in s:
            body += _histogram(s["tokens_per_doc"], "document length (corpus, latest version)", "GPT-2 tokens")
        section("documents", "Documents", body)
    if "dedup" in r:
        s = r["dedup"]
        section("dedup", "Dedup", f"<p>{s['removed']:,} duplicates removed</p>"
                + _bars(s["cluster_sizes"], "clusters by size (documents per cluster)", False)
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
        body = ""
        for name, c in r["training"].items():
            fig, ax = _fig()
            for k, style in (("loss", "-"), ("val_loss", "o-")):
                if c[k]:
                    ax.plot(*zip(*c[k]), style, label=k)
            ax.set_title(f"run {name}: loss")
            ax.set_xlabel("step")
            ax.legend()
            body += _png(fig)
            if c["tokens_per_s"]:
                fig, ax = _fig(6, 2.5)
                ax.plot(*zip(*c["tokens_per_s"]))
                ax.set_title(f"run {name}: tokens/s" + (f", MFU {c['mfu'][-1][1]:.1%}" if c["mfu"] else ""))
                body += _png(fig)
        section("training", "Training", body)
    if "refresh" in r:
        keys = ["run_id", "started_utc", "updated", "corpus_version", "new_urls", "fetched", "documents_added",
                "documents_removed", "tokens_added", "wall_s"]
        section("refresh", "Refresh history", _table([[d[k] for k in keys] for d in r["refresh"]], keys))
    style = ("body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left}img{display:block;margin:1em 0}" + DEDUP_STYLE)
    nav = " · ".join(toc)
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>webtext report</title>"
            f"<style>{style}</style></head><body><h1>webtext report</h1><nav>{nav}</nav>{''.join(parts)}</body></html>")


def write_report(workdir: Path, as_json: bool = False) -> Path:
    r = collect_report(workdir)
    out = Path(workdir) / "reports"
    if as_json:
        write_json(out / "report.json", r)
        return out / "report.json"
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "report.html") as tmp:
        Path(tmp).write_text(render_html(r), encoding="utf-8")
    return out / "report.html"

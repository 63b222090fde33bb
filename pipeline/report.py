"""``webtext report``: one self-contained HTML file about a work directory.

``reports/report.html`` embeds its plots (matplotlib, PNG, base64) and styles, and
references no external URL. Sections appear when their data exists: the funnel, sources
(domains, subreddits, karma, submissions per month), fetch (status classes, errors,
latency, bytes), documents (length in tokens, language, extractor, and the live and
archive-recovered shares by year of submission), dedup (cluster
sizes, example pairs), decontamination (the GPT-2-style overlap table, Wikipedia
removals), tokens (per version and split, the shard list), training (loss, validation
loss, tokens/s, MFU) and the refresh history. ``collect_report`` returns the same numbers
as a dict (``report --json`` writes ``reports/report.json``).
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
import pyarrow.parquet as pq

from .funnel import collect
from .io import atomic_path, sorted_files, write_json
from .schemas import upgrade_docs

EXAMPLE_CHARS = 400


def _read(folder: Path, pattern: str, columns: list[str], upgrade=None):
    """The named columns of every shard; ``upgrade`` adds those that older shards lack."""
    files = sorted_files(folder, pattern)
    if not files:
        return None
    import pyarrow as pa

    def one(f):
        if upgrade is None:
            return pq.read_table(f, columns=columns)
        have = set(pq.read_schema(f).names)
        return upgrade(pq.read_table(f, columns=[c for c in columns if c in have])).select(columns)

    return pa.concat_tables([one(f) for f in files])


def _top(counter: Counter, n: int = 15) -> list[list]:
    return [[k, v] for k, v in counter.most_common(n)]


def _hist(values, bins: int = 30, log: bool = False) -> dict:
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if log:
        v = v[v > 0]
    if not len(v):
        return {"counts": [], "edges": []}
    edges = np.geomspace(v.min(), v.max() + 1, bins + 1) if log and v.max() > v.min() else bins
    counts, e = np.histogram(v, bins=edges)
    return {"counts": counts.tolist(), "edges": [float(x) for x in e], "n": int(len(v)),
            "median": float(np.median(v)), "p90": float(np.percentile(v, 90))}


RECOVERY_SOURCES = ("live", "commoncrawl", "wayback")   # fetch's page sources, in plot order


def recovery_by_year(first_seen, source) -> dict:
    """Documents per year of submission (UTC year of ``first_seen``) and per ``source``:
    how much of each year's corpus came live and how much fetch recovered from an archive."""
    years = np.asarray(first_seen, dtype="datetime64[s]").astype("datetime64[Y]").astype(int) + 1970
    counts = Counter(zip(years.tolist(), source))
    sources = [*RECOVERY_SOURCES, *sorted({s for _, s in counts} - set(RECOVERY_SOURCES))]
    by_year = [{"year": y, **{s: counts.get((y, s), 0) for s in sources}} for y in sorted({y for y, _ in counts})]
    total = {s: sum(r[s] for r in by_year) for s in sources}
    n = sum(total.values())
    return {"sources": sources, "by_year": by_year, "total": total,
            "recovered_share": round(1 - total["live"] / n, 4) if n else 0.0}


def collect_report(workdir: Path) -> dict:
    w = Path(workdir)
    r: dict = {"funnel": collect(w)}
    urls = _read(w / "urls", "urls-*.parquet", ["registered_domain", "subreddits", "score", "first_seen",
                                                "num_submissions"])
    if urls is not None and urls.num_rows:
        subs = Counter(s for row in urls["subreddits"].to_pylist() for s in row)
        months = Counter()
        for ts, n in zip(urls["first_seen"].to_numpy(), urls["num_submissions"].to_numpy()):
            months[np.datetime_as_string(np.datetime64(int(ts), "s"), unit="M")] += int(n)
        r["sources"] = {"urls": urls.num_rows,
                        "top_domains": _top(Counter(urls["registered_domain"].to_pylist())),
                        "top_subreddits": _top(subs), "karma": _hist(urls["score"].to_numpy(), log=True),
                        "submissions_per_month": sorted(months.items())}
    log = _read(w / "warc", "fetchlog-*.parquet", ["status", "error", "elapsed_ms", "bytes"])
    if log is not None and log.num_rows:
        status = Counter(f"{s // 100}xx" if s else "none" for s in log["status"].to_pylist())
        r["fetch"] = {"pages": log.num_rows, "status_classes": sorted(status.items()),
                      "errors": _top(Counter(e for e in log["error"].to_pylist() if e), 20),
                      "latency_ms": _hist(log["elapsed_ms"].to_numpy(), log=True),
                      "bytes": int(pc.sum(log["bytes"]).as_py() or 0)}
    docs = _read(w / "docs", "docs-*.parquet", ["doc_id", "lang", "extractor", "text", "first_seen", "source"],
                 upgrade_docs)
    if docs is not None and docs.num_rows:
        r["documents"] = {"docs": docs.num_rows, "languages": _top(Counter(docs["lang"].to_pylist()), 10),
                          "extractors": _top(Counter(docs["extractor"].to_pylist())),
                          "recovery": recovery_by_year(docs["first_seen"].to_numpy(), docs["source"].to_pylist())}
    manifest = w / "tokens" / "manifest.json"
    if manifest.exists():
        from stages.shard import read_tokens

        m = json.loads(manifest.read_text())
        lengths = np.concatenate([pc.list_value_length(c).to_numpy()
                                  for s in m["shards"] for c in read_tokens(w / "tokens" / s["file"])["tokens"].chunks]
                                 or [np.empty(0)])
        r.setdefault("documents", {})["tokens_per_doc"] = _hist(lengths, log=True)
        files = m.get("shard_files") or {s["file"]: s for s in m["shards"]}
        versions = m.get("versions") or [{"version": 1, "shards": [s["file"] for s in m["shards"]]}]
        r["tokens"] = {
            "versions": [{"version": v["version"], **{f"{sp}_{k}": sum(files[f][k] for f in v["shards"]
                                                                      if files[f]["split"] == sp)
                                                     for sp in ("train", "val") for k in ("docs", "tokens")}}
                         for v in versions],
            "shards": [{"file": f, "split": e["split"], "docs": e["docs"], "tokens": e["tokens"],
                        "bytes": (w / "tokens" / f).stat().st_size if (w / "tokens" / f).exists() else None}
                       for f, e in files.items()]}
    clusters = w / "dedup" / "_clusters.parquet"
    if clusters.exists():
        c = pq.read_table(clusters)
        sizes = Counter(Counter(c["cluster_id"].to_pylist()).values())
        removed = c.filter(pc.invert(c["kept"]))
        examples = []
        if docs is not None:
            text = dict(zip(docs["doc_id"].to_pylist(), docs["text"].to_pylist()))
            for row in removed.to_pylist():
                if row.get("duplicate_of") in text and row["doc_id"] in text and len(examples) < 3:
                    examples.append({"removed": text[row["doc_id"]][:EXAMPLE_CHARS],
                                     "kept": text[row["duplicate_of"]][:EXAMPLE_CHARS],
                                     "reason": row.get("reason"), "similarity": row.get("similarity")})
        r["dedup"] = {"cluster_sizes": sorted(sizes.items()), "removed": removed.num_rows,
                      "reasons": _top(Counter(removed["reason"].to_pylist())), "examples": examples}
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
        ex = "".join(f"<div class='pair'><div><b>removed</b> ({html.escape(str(e['reason']))}, "
                     f"J={_fmt(e['similarity'])})<p>{html.escape(e['removed'])}</p></div>"
                     f"<div><b>kept</b><p>{html.escape(e['kept'])}</p></div></div>" for e in s["examples"])
        section("dedup", "Dedup", f"<p>{s['removed']:,} duplicates removed</p>"
                + _bars(s["cluster_sizes"], "clusters by size (documents per cluster)", False)
                + _table(s["reasons"], ["reason", "documents"]) + ex)
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
             "text-align:left}img{display:block;margin:1em 0}.pair{display:flex;gap:1em}"
             ".pair div{flex:1;font-size:small;background:#f6f6f6;padding:.5em}")
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

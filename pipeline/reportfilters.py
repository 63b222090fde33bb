"""The report's "Filters and PII" section: each extract rule's rejection rate and the PII counts.

In:  ``docs/_meta/stats.json`` and ``config.json`` (extract's, or the last ``webtext filter``'s),
     and the ``signals`` column of ``docs/docs-*.parquet`` and ``docs/rejected/rejected-*.parquet``,
     a record batch at a time (``reportstats.batches``), never the text.
Out: ``collect(workdir)`` -> {"pages", "pages_with_text", "rules": [{rule, enabled, bound,
     first, alone}], "pii": {kind: count}, "pii_mode"}; ``render(section)`` -> HTML.

``first`` is the pages a rule rejected (the first failing rule names the drop, as in the
stats); ``alone`` the pages with a text that the rule would reject by itself, whatever
rule came first: the measure of benchmarks/results/filter_rules.txt, on this corpus.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import layout
from .errors import WebtextError
from .reportstats import batches


def collect(w: Path) -> dict | None:
    from webtext.pipeline.config import ExtractConfig
    from webtext.stages import decide

    docs = Path(w) / "docs"
    stats_p, config_p = layout.stats_path(docs), layout.config_path(docs)
    if not stats_p.exists():
        return None
    stats = json.loads(stats_p.read_text())
    try:
        cfg = ExtractConfig(**json.loads(config_p.read_text()).get("extract", {}))
    except (OSError, ValueError, TypeError, WebtextError):     # missing, or from another version
        cfg = ExtractConfig()
    rules = [r for r in decide.signal_rules(cfg.rules, cfg.gopher) if r.enabled]
    lines = [(n, sig, (cfg.rules.get(n) or {}).get("threshold", getattr(cfg, key)))
             for n, (sig, key) in decide.LINE_RULES.items() if (cfg.rules.get(n) or {}).get("enabled", True)]
    alone = dict.fromkeys([n for n, _, _ in lines] + [r.name for r in rules], 0)
    n_text = 0
    for folder, pattern in ((docs, "docs-*.parquet"), (docs / layout.REJECTED_DIR, "rejected-*.parquet")):
        for t in batches(folder, pattern, ["signals"]) if folder.is_dir() else []:
            col = t.column("signals").combine_chunks()
            col = col.filter(col.is_valid())
            if not len(col):
                continue
            n_text += len(col)
            sig = pa.Table.from_struct_array(col)
            for name, signal, limit in lines:
                alone[name] += int(pc.sum(pc.greater(sig.column(signal), limit)).as_py() or 0)
            for r in rules:
                alone[r.name] += int(r.drops(sig.column(r.signal).to_numpy(zero_copy_only=False).astype(np.float64)).sum())
    dropped = stats.get("dropped", {})
    bound = {n: f"> {limit:g}" for n, _, limit in lines}
    bound |= {r.name: " or ".join(s for s in (f"< {r.min:g}" if r.min is not None else "",
                                              f"> {r.max:g}" if r.max is not None else "") if s) for r in rules}
    rows = [{"rule": n, "bound": bound.get(n, ""), "first": dropped.get(n, 0), "alone": alone.get(n)}
            for n in decide.rule_names() if n in alone or dropped.get(n)]
    info = stats.get("info", {})
    return {"pages": stats.get("in", 0), "pages_with_text": n_text, "rules": rows, "pii_mode": cfg.pii,
            "pii": {k: info[k] for k in ("pii_email", "pii_ip", "pii_phone") if k in info}}


def render(s: dict, table) -> str:
    n = s["pages_with_text"]
    rows = [[r["rule"], r["bound"], r["first"], f"{r['first'] / s['pages']:.2%}" if s["pages"] else "",
             "" if r["alone"] is None else r["alone"], f"{r['alone'] / n:.2%}" if n and r["alone"] is not None else ""]
            for r in s["rules"]]
    pii = ", ".join(f"{k.removeprefix('pii_')}: {v:,}" for k, v in s["pii"].items()) or "not looked for"
    return (f"<p>{s['pages']:,} pages reached extract, {n:,} with a text. A rule's <i>rejected</i> count is "
            "the pages it named as the drop reason (the first failing check); <i>alone</i> counts the pages "
            "with a text it would reject by itself. <code>webtext filter</code> re-decides from the recorded "
            "signals.</p>"
            + table(rows, ["rule", "drop when", "rejected", "of pages", "alone", "of pages with text"])
            + f"<p>PII ({html.escape(s['pii_mode'])}) in the kept documents: {html.escape(pii)}</p>")

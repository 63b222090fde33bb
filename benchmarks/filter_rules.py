"""Each filter rule's rejection rate on real English articles and on the demo corpus.

    python benchmarks/filter_rules.py [--data ../shared/data/extraction/trafilatura-eval/tests]
                                      [--docs /tmp/h5demo/docs] [--peer]

Real pages: every gzipped HTML page of trafilatura's evaluation set (eval/ and cache/), text
from ``trafilatura.extract(html, fast=True)`` (the pipeline's extractor), kept when the
project's language ID says English; duplicates (a page in both folders) count once.
Demo: the ``text`` column of every Parquet file under --docs (build them with
``webtext --workdir /tmp/h5demo demo --until extract``). Prints per rule its rejection rate
alone at its default threshold (and at the peers' threshold where that differs), then the
keep rate of the enabled default set, the first-failing-rule breakdown, and the per-document
cost of ``signals.compute``. ``real-100w`` is the English pages with at least 100 words,
extract's own ``min_words``: what reaches these rules in the pipeline. ``--peer`` also prints quantiles of each rule's signal.
"""

from __future__ import annotations

import argparse
import datetime
import gzip
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from webtext.stages import signals as S

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "extraction" / "trafilatura-eval" / "tests"

# every rule on, at the peers' threshold (our defaults loosen these four)
PEER = {name: {"enabled": True} for name in S.RULES} | {
    "gopher_ellipsis_lines": {"enabled": True, "threshold": 0.3},
    "gopher_alpha_words": {"enabled": True, "threshold": 0.8},
    "gopher_dup_line_char_frac": {"enabled": True, "threshold": 0.2},
    "gopher_top_4gram": {"enabled": True, "threshold": 0.16}}
MIN_WORDS = 100     # extract's own min_words: pages below it never reach these rules


def english_real_texts(data: Path = DATA) -> list[str]:
    """The extracted texts of the evaluation pages that the language ID calls English."""
    import trafilatura

    from webtext.stages.extract import detect_language

    seen, out = set(), []
    for path in sorted(data.glob("eval/*.html.gz")) + sorted(data.glob("cache/*.html.gz")):
        html = gzip.decompress(path.read_bytes()).decode("utf-8", "replace")
        text = trafilatura.extract(html, fast=True)
        if text and text not in seen and detect_language(text)[0] == "en":
            seen.add(text)
            out.append(text)
    return out


def demo_texts(docs: Path) -> list[str]:
    out = []
    for path in sorted(docs.rglob("*.parquet")):
        if "text" in pq.read_schema(path).names:
            out.extend(t for t in pq.read_table(path, columns=["text"]).column("text").to_pylist() if t)
    return out


def rate(table, rule: S.Rule) -> float:
    values = table.column(rule.signal).to_numpy(zero_copy_only=False).astype(float)
    return float(rule.drops(values).mean()) if len(values) else float("nan")


def report(sets: dict[str, list[str]], quantiles: bool) -> list[str]:
    tables, lines = {}, []
    for name, texts in sets.items():
        t0 = time.perf_counter()
        tables[name] = S.compute(texts)
        ms = (time.perf_counter() - t0) * 1000 / max(1, len(texts))
        chars = sum(map(len, texts)) / max(1, len(texts))
        lines.append(f"{name}: {len(texts)} documents, mean {chars:,.0f} characters, signals.compute {ms:.2f} ms/doc")
    peer_rules = {r.name: r for r in S.rules(PEER)}
    head = f"{'rule':27s} {'signal':20s} {'drop when':18s} {'on':3s}" + "".join(f" {n:>9s}" for n in sets)
    lines += ["", "rejection rate of each rule alone (default threshold; [peer threshold] where it differs)", head]
    for rule in S.rules():
        when = " or ".join(x for x in ((f"< {rule.min:g}" if rule.min is not None else ""),
                                       (f"> {rule.max:g}" if rule.max is not None else "")) if x)
        row = f"{rule.name:27s} {rule.signal:20s} {when:18s} {'yes' if rule.enabled else 'no':3s}"
        row += "".join(f" {rate(tables[n], rule):9.2%}" for n in sets)
        peer = peer_rules[rule.name]
        if (peer.min, peer.max) != (rule.min, rule.max):
            pw = peer.min if peer.min is not None and peer.min != rule.min else peer.max
            row += f"   [peer {pw:g}:" + "".join(f" {rate(tables[n], peer):.2%}" for n in sets) + "]"
        lines.append(row)
        if quantiles:
            for n in sets:
                v = tables[n].column(rule.signal).to_numpy(zero_copy_only=False).astype(float)
                q = np.quantile(v, [0.01, 0.02, 0.05, 0.5, 0.95, 0.98, 0.99]) if len(v) else []
                lines.append(f"    {n} q01,02,05,50,95,98,99: " + " ".join(f"{x:.3g}" for x in q))
    lines += ["", "enabled default set: keep rate, and documents by first failing rule"]
    for label, settings in (("defaults", None), ("all rules at the peers' thresholds", PEER)):
        for n in sets:
            counts = S.reasons_count(S.apply(tables[n], settings))
            total = sum(counts.values())
            kept = counts.pop("kept")
            detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
            lines.append(f"{label} / {n}: keeps {kept}/{total} = {kept / max(1, total):.2%}  ({detail or 'none dropped'})")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--docs", type=Path, default=Path("/tmp/h5demo/docs"))
    ap.add_argument("--peer", action="store_true", help="print quantiles of each rule's signal")
    args = ap.parse_args()
    real = english_real_texts(args.data)
    sets = {"real-en": real, "real-100w": [t for t in real if len(t.split()) >= MIN_WORDS],
            "demo": demo_texts(args.docs)}
    print(f"# benchmarks/filter_rules.py, {datetime.date.today().isoformat()}")
    print("\n".join(report(sets, args.peer)))


if __name__ == "__main__":
    main()

"""Extraction quality and speed on trafilatura's evaluation set (990 real pages).

    python benchmarks/extract_quality.py [--data ../shared/data/extraction/trafilatura-eval/tests]

Each page lists snippets that must appear in the main text ("with") and snippets that
must not ("without"). Scoring follows trafilatura's own evaluation: a found "with"
snippet is a true positive, a missing one a false negative; a found "without" snippet
is a false positive, a missing one a true negative. Reports precision, recall, F1 and
docs/s on one core for bare trafilatura (default and fast=True, include_comments=False),
bare newspaper3k, and webtext's extractor (``auto``: trafilatura fast, newspaper3k
fallback), all measured in this run, page by page in turn.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load(data: Path) -> list[tuple[str, bytes, dict]]:
    meta = json.loads((data / "evaldata.json").read_text())
    pages = []
    for url, entry in meta.items():
        for folder in ("eval", "cache"):
            p = data / folder / (entry["file"] + ".gz")
            if p.exists():
                pages.append((url, gzip.decompress(p.read_bytes()), entry))
                break
    return pages


def score(results: list[str | None], pages) -> dict:
    tp = fn = fp = tn = 0
    for text, (_, _, entry) in zip(results, pages):
        text = text or ""
        for s in entry.get("with", []):
            tp, fn = (tp + 1, fn) if s in text else (tp, fn + 1)
        for s in entry.get("without", []):
            fp, tn = (fp + 1, tn) if s in text else (fp, tn + 1)
    p, r = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    return {"precision": p, "recall": r, "f1": 2 * p * r / max(p + r, 1e-9)}


def run(configs, pages) -> list[dict]:
    """Every configuration on every page, interleaved page by page, so that a change in
    the machine's speed during the run (shared hosts drift by 30% here) weighs on every
    configuration alike; CPU time per configuration."""
    secs = [0.0] * len(configs)
    out: list[list] = [[] for _ in configs]
    for url, html, _ in pages:
        for i, (_, fn) in enumerate(configs):
            t = time.process_time()
            try:
                text = fn(html, url)
            except Exception:  # noqa: BLE001 -- an extractor crash scores as empty
                text = None
            secs[i] += time.process_time() - t
            out[i].append(text)
    mb = sum(len(h) for _, h, _ in pages) / 1e6
    return [{"name": name, **score(texts, pages), "docs_s": len(pages) / t, "mb_s": mb / t}
            for (name, _), texts, t in zip(configs, out, secs)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "extraction" / "trafilatura-eval" / "tests")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found; pass --data")
    import trafilatura

    from webtext.stages.extract import extract_page, normalize_text

    def newspaper(html, url):      # as a user runs it: the full Article.parse
        from newspaper import Article

        a = Article(url, language="en", fetch_images=False)
        a.download(input_html=html if isinstance(html, str) else html.decode("utf-8", errors="replace"))
        a.parse()
        return a.text

    pages = load(args.data)
    configs = [
        ("trafilatura (default)", lambda h, u: trafilatura.extract(h, url=u)),
        ("trafilatura (fast, no comments)", lambda h, u: trafilatura.extract(h, url=u, fast=True, include_comments=False)),
        ("newspaper3k", newspaper),
        ("webtext auto (shipped default)", lambda h, u: normalize_text(extract_page(h, u, "auto", True).text or "")),
    ]
    rows = run(configs, pages)
    print(f"extraction on {len(pages)} pages of trafilatura's evaluation set, one core (CPU time)")
    print(f"{'extractor':34} {'precision':>9} {'recall':>7} {'F1':>6} {'docs/s':>7} {'MB/s':>6}")
    for r in rows:
        print(f"{r['name']:34} {r['precision']:9.3f} {r['recall']:7.3f} {r['f1']:6.3f} {r['docs_s']:7.1f} {r['mb_s']:6.2f}")
    ours = rows[-1]
    for r in rows[:2]:
        print(f"webtext vs {r['name']}: F1 {ours['f1'] - r['f1']:+.4f} ({ours['f1']:.4f} vs {r['f1']:.4f}), "
              f"speed {ours['docs_s'] / r['docs_s']:.2f}x (target: higher F1 at >= 0.9x)")


if __name__ == "__main__":
    main()

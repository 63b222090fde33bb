"""What extract's language prefilter skips, what it loses, and what it costs.

    python benchmarks/extract_prefilter.py [--data ../shared/data/extraction/trafilatura-eval/tests]

On every page of trafilatura's evaluation set, in one process:
  1. runs the full pipeline for one page with the prefilter off (extraction, normalization,
     filters, language ID), as ``extract_shard`` does, and notes whether the page is kept;
  2. runs ``paragraph_language`` alone, timed, and applies the default decision (another
     language than ``en`` with a score of at least ``lang_prefilter_score``).
Prints how many pages the prefilter skips, which of the full pipeline's documents it
would lose (with their language and first words), and its cost per page.
"""

from __future__ import annotations

import argparse
import gzip
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path,
                    default=ROOT.parent / "shared" / "data" / "extraction" / "trafilatura-eval" / "tests")
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared's evaluation pages")
    from webtext.pipeline.config import ExtractConfig
    from webtext.pipeline.stats import Stats
    from webtext.stages import extract
    from webtext.stages.http import detect_charset

    files = sorted(args.data.glob("*/*.html.gz"))
    default = ExtractConfig()
    full = ExtractConfig(lang_prefilter_score=2.0)      # the prefilter off
    settings = (full.extractor, full.dates, full.fallback_share, full.fallback_gain)

    def extract_here(html, url):
        return "ok", extract.extract_page(html, url, *settings)

    extract.detect_language("warm up")
    kept = skipped = 0
    cost = 0.0
    lost = []
    for i, path in enumerate(files):
        body = gzip.decompress(path.read_bytes())
        charset = detect_charset(body, "text/html")
        meta = {"url_id": str(i), "url": f"http://page{i}.example/", "score": 5, "num_submissions": 1,
                "first_seen": 0, "subreddits": [], "charset": charset}
        html = extract.decode_html(body, "text/html", charset)
        t = time.process_time()
        lang, score = extract.paragraph_language(html)
        cost += time.process_time() - t
        skip = lang is not None and lang not in default.langs and score >= default.lang_prefilter_score
        skipped += skip
        row = extract._extract_one("text/html", body, meta["url"], meta, full, Stats(), extract_here)
        if row:
            kept += 1
            if skip:
                lost.append((path.name, lang, row["lang"], round(row["lang_score"], 3), row["text"][:80]))
    print(f"language prefilter on {len(files):,} evaluation pages (langs={default.langs}, "
          f"score >= {default.lang_prefilter_score}):")
    print(f"  skips {skipped:,} pages; {cost / len(files) * 1e3:.2f} ms per page (CPU)")
    print(f"  the full pipeline keeps {kept:,} documents; the prefilter would lose {len(lost)}:")
    for name, plang, dlang, dscore, head in lost:
        print(f"    {name}: paragraphs {plang}, document {dlang} {dscore}: {head!r}")


if __name__ == "__main__":
    main()

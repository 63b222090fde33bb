"""False positives and cost of ``stages.deadpages.parking_signal`` on real pages.

    python benchmarks/deadpages_eval.py [--data ../shared/data/extraction/trafilatura-eval/tests] [--repeats 5]

Runs the parking detector over every page of trafilatura's evaluation set (real news and
blog pages, gzipped HTML, decompressed before timing) with the page's own URL from
``evaldata.json`` as the final URL, and prints how many pages it flags (each with its
signal: every one is a false positive unless it really is a parking page), the cost per
page (median of ``--repeats`` passes over all pages, microseconds of process CPU time),
the slowest page, and the time on two hostile bodies (10 MB of "<", 10 MB of nested
frames).
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def load_pages(data: Path) -> list[tuple[str, bytes, str]]:
    """(file name, body, final URL) for every page; the URL from evaldata.json when known."""
    urls = {}
    meta = data / "evaldata.json"
    if meta.exists():
        urls = {entry["file"]: url for url, entry in json.loads(meta.read_text()).items()}
    pages = []
    for f in sorted(data.glob("*/*.html.gz")):
        name = f.name.removesuffix(".gz")
        pages.append((f.name, gzip.decompress(f.read_bytes()), urls.get(name, f"https://{name}/")))
    return pages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path,
                    default=ROOT.parent / "shared" / "data" / "extraction" / "trafilatura-eval" / "tests")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: this benchmark needs ../shared's evaluation pages")
    from webtext.stages.deadpages import SCAN_BYTES, parking_signal

    pages = load_pages(args.data)
    flagged = [(name, url, sig) for name, body, url in pages if (sig := parking_signal(body, url))]
    passes, slowest = [], (0.0, "")
    for _ in range(args.repeats):
        t0 = time.process_time()
        for name, body, url in pages:
            t = time.perf_counter()
            parking_signal(body, url)
            slowest = max(slowest, (time.perf_counter() - t, name))
        passes.append(time.process_time() - t0)
    mean_kib = sum(min(len(b), SCAN_BYTES) for _, b, _ in pages) / len(pages) / 1024
    print(f"pages scanned: {len(pages)} (mean {mean_kib:.1f} KiB scanned of each)")
    print(f"flagged: {len(flagged)}")
    for name, url, sig in flagged:
        print(f"  {sig:20s} {name} {url}")
    per_page = statistics.median(passes) / len(pages) * 1e6
    print(f"cost: {per_page:.1f} us CPU per page (median of {args.repeats} passes; "
          f"range {min(passes) / len(pages) * 1e6:.1f}-{max(passes) / len(pages) * 1e6:.1f})")
    print(f"slowest page: {slowest[0] * 1e3:.2f} ms ({slowest[1]})")
    for label, body in (("10 MB of '<'", b"<" * 10_000_000),
                        ("10 MB of nested <frameset><frame src=", b"<frameset><frame src=" * 476_191)):
        t = time.perf_counter()
        sig = parking_signal(body, "http://example.com/")
        print(f"hostile {label}: {(time.perf_counter() - t) * 1e3:.2f} ms -> {sig}")


if __name__ == "__main__":
    main()

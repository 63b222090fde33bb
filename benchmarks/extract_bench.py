"""Extract throughput end to end (WARC in, Parquet out), and WARC reader speed.

    python benchmarks/extract_bench.py [--pages N] [--passed-prefilter] [--data ../shared/data/extraction/trafilatura-eval/tests]

Archives real pages from trafilatura's evaluation set (or generated articles without
../shared) into WARC segments the way fetch writes them, then measures, each in a fresh
process:
  1. reading the response and metadata records: warcio's ArchiveIterator (what extract
     uses) against fastwarc's, records/s and MB/s;
  2. ``extract_shard`` on one shard (one worker): docs/s and MB/s per core, counting the
     CPU of the extraction child too, and the peak RSS of the worker and of its child;
  3. ``webtext extract`` over two shards with every core (``workers = 0``): docs/s wall;
  4. ``extract_shard`` again on a shard of the same pages three times over: the extra
     pages over the extra CPU is the rate once the worker's fixed start-up costs (the
     forkserver's imports, the language model, pyarrow's pandas import) are paid, as on a
     production shard of thousands of pages;
  5. for scale, in the same run: bare trafilatura (``fast=True``, the setting extract
     uses) on the same pages in one process, docs per CPU-second, HTML already decoded.

``--passed-prefilter`` keeps only the pages that the language prefilter lets through to
extraction (about a fifth of the evaluation set, which is mostly German): the rates of a
crawl in the wanted language, where every page is extracted.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def archive(folder: Path, pages: list[tuple[str, bytes]], shards: int) -> int:
    """Write ``pages`` into ``shards`` WARC shards under folder/warc; the HTML bytes written."""
    import pyarrow.parquet as pq

    from pipeline.schemas import FETCHLOG
    from stages import urls as U
    from stages.http import Outcome, detect_charset
    from stages.warcstore import WarcSegments

    warc = folder / "warc"
    warc.mkdir(parents=True)
    total = 0
    for s in range(shards):
        shard = f"{s:05d}"
        segs = WarcSegments(warc, shard, "bench", 1 << 30, {})
        for i, (url, body) in enumerate(pages[s::shards]):
            ctype = "text/html"
            o = Outcome(final_url=url, status=200, body=body, headers=[("Content-Type", ctype)], reason="OK",
                        charset=detect_charset(body, ctype))
            segs.write({"url_id": U.url_id(url), "url": url, "score": 5, "num_submissions": 1,
                        "first_seen": 1_700_000_000 + i, "subreddits": ["bench"], "title": None}, o)
            total += len(body)
        segs.close()
        pq.write_table(FETCHLOG.empty_table(), warc / f"fetchlog-{shard}.parquet")
    return total


def load_pages(data: Path | None, n: int, passed_prefilter: bool = False) -> list[tuple[str, bytes]]:
    if data and data.exists():
        files = sorted(data.glob("*/*.html.gz"))
        bodies = [gzip.decompress(p.read_bytes()) for p in files]
        if passed_prefilter:
            from pipeline.config import ExtractConfig
            from stages.extract import decode_html, paragraph_language
            from stages.http import detect_charset

            cfg = ExtractConfig()

            def passes(body: bytes) -> bool:
                lang, score = paragraph_language(decode_html(body, "text/html", detect_charset(body, "text/html")))
                return lang is None or lang in cfg.langs or score < cfg.lang_prefilter_score

            bodies = [b for b in bodies if passes(b)]
    else:
        from pipeline.demoweb import _html, docstring_paragraphs

        paras = docstring_paragraphs()
        bodies = [_html("bench.example", f"Story {i}", paras[i % 20:i % 20 + 8]) for i in range(200)]
    return [(f"http://h{i % 500}.bench.example/a/{i}", bodies[i % len(bodies)]) for i in range(n)]


READERS = r"""
import json, sys, time
from pathlib import Path
segs = sorted(Path(sys.argv[1]).glob("warc-*.warc.gz"))
def warcio_read():
    from warcio.archiveiterator import ArchiveIterator
    n = b = 0
    for p in segs:
        with open(p, "rb") as f:
            for rec in ArchiveIterator(f):
                if rec.rec_type in ("response", "metadata"):
                    data = rec.content_stream().read(); n += 1; b += len(data)
    return n, b
def fastwarc_read():
    from fastwarc.warc import ArchiveIterator, WarcRecordType
    n = b = 0
    for p in segs:
        with open(p, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.metadata,
                                       parse_http=True):
                data = rec.reader.read(); n += 1; b += len(data)
    return n, b
out = {}
for name, fn in (("warcio", warcio_read), ("fastwarc", fastwarc_read)):
    try:
        t = time.process_time(); n, b = fn(); out[name] = (n, b, time.process_time() - t)
    except ImportError:
        out[name] = None
print(json.dumps(out))
"""

SHARD = r"""
import json, os, resource, sys, threading, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
from pipeline.config import ExtractConfig, to_dict
from pipeline.executor import Task
from stages import extract

# The extraction child is a grandchild (forked by the forkserver), so rusage misses it:
# sample the process tree from /proc instead (CPU ticks and peak RSS of each descendant).
TICK, seen, done = os.sysconf("SC_CLK_TCK"), {}, threading.Event()
def sample():
    while not done.is_set():
        parents = {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    fields = open(f"/proc/{d}/stat").read().rsplit(")", 1)[1].split()
                    parents[int(d)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK)
                except (OSError, IndexError):
                    pass
        tree, grew = {os.getpid()}, True
        while grew:
            new = {p for p, (pp, _) in parents.items() if pp in tree} - tree
            tree |= new
            grew = bool(new)
        for pid in tree - {os.getpid()}:
            try:
                hwm = int(next(ln for ln in open(f"/proc/{pid}/status") if ln.startswith("VmHWM")).split()[1]) / 1024
            except (OSError, StopIteration):
                continue
            cpu, old = parents[pid][1], seen.get(pid, (0, 0))
            seen[pid] = (max(cpu, old[0]), max(hwm, old[1]))
        time.sleep(0.2)
threading.Thread(target=sample, daemon=True).start()
warc = Path(sys.argv[1])
segs = sorted(warc.glob("warc-00000-*.warc.gz"))
t, c = time.perf_counter(), time.process_time()
s = extract.extract_shard(Task("extract", "00000", extract.extract_shard, segs, [warc.parent / "docs-00000.parquet"],
                               {"extract": to_dict(ExtractConfig())}))
wall, cpu = time.perf_counter() - t, time.process_time() - c
done.set()
kids = sum(c for c, _ in seen.values())
print(json.dumps({"wall": wall, "cpu": cpu + kids, "in": s.records_in, "out": s.records_out,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "child_rss": max((r for _, r in seen.values()), default=0), "dropped": dict(s.dropped)}))
"""

BARE = r"""
import gzip, json, sys, time
from pathlib import Path
import trafilatura
pages = [gzip.decompress(p.read_bytes()) for p in sorted(Path(sys.argv[1]).glob("*/*.html.gz"))]
pages = [pages[i % len(pages)] for i in range(int(sys.argv[2]))]
sys.path.insert(0, sys.argv[3])
from stages.http import detect_charset       # as fetch records it
html = [b.decode(detect_charset(b, "text/html"), errors="replace") for b in pages]
trafilatura.extract(html[0], fast=True, include_comments=False)
c = time.process_time()
for i, h in enumerate(html):
    trafilatura.extract(h, url=f"http://h{i}.bench.example/a/{i}", fast=True, include_comments=False)
print(json.dumps({"n": len(html), "cpu": time.process_time() - c}))
"""


def _child(code: str, *args) -> dict:
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    if r.returncode:
        raise SystemExit(r.stderr[-3000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=1000)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "extraction" / "trafilatura-eval" / "tests")
    ap.add_argument("--passed-prefilter", action="store_true",
                    help="only the pages the language prefilter lets through to extraction")
    args = ap.parse_args()
    pages = load_pages(args.data, args.pages, args.passed_prefilter)
    kind = "real pages (trafilatura eval set)" if args.data.exists() else "generated articles"
    if args.passed_prefilter:
        kind += ", only those the language prefilter passes (repeated)"
    with tempfile.TemporaryDirectory() as tmp:
        one, two, three = Path(tmp) / "one", Path(tmp) / "two", Path(tmp) / "three"
        html_bytes = archive(one, pages, 1)
        archive(two, pages, 2)
        archive(three, pages * 3, 1)
        readers = _child(READERS, one / "warc")
        shard = _child(SHARD, one / "warc", ROOT)
        triple = _child(SHARD, three / "warc", ROOT)
        bare = None
        if args.data.exists():
            same = Path(tmp) / "bare" / "pages"
            same.mkdir(parents=True)
            distinct = list(dict.fromkeys(body for _, body in pages))
            for i, body in enumerate(distinct):
                (same / f"{i:05d}.html.gz").write_bytes(gzip.compress(body, 1))
            bare = _child(BARE, same.parent, len(pages), ROOT)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        import time

        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "pipeline.cli", "--workdir", str(two), "--workers", "0", "extract"], check=True,
                       cwd=ROOT, env=env, capture_output=True)
        all_wall = time.perf_counter() - t
        stats = json.loads((two / "docs" / "_stats.json").read_text())
    mb = html_bytes / 1e6
    print(f"extract benchmark: {len(pages):,} {kind}, {mb / len(pages) * 1e3:,.0f} KB/page, {mb:,.0f} MB of HTML; "
          f"{os.cpu_count()} cores")
    print(f"{'WARC reader (response + metadata records)':44} {'records/s':>10} {'MB/s':>8}")
    for name, r in readers.items():
        if r:
            n, b, secs = r
            print(f"{name:44} {n / secs:10,.0f} {b / 1e6 / secs:8,.0f}")
    print(f"{'end to end (WARC in, Parquet out)':44} {'docs/s':>10} {'MB/s':>8}")
    n = shard["in"]
    print(f"{'one worker, per CPU-second (incl. children)':44} {n / shard['cpu']:10,.1f} {mb / shard['cpu']:8,.2f}")
    print(f"{'one worker, wall':44} {n / shard['wall']:10,.1f} {mb / shard['wall']:8,.2f}")
    extra_cpu = triple["cpu"] - shard["cpu"]
    print(f"{'one worker, per CPU-second after start-up':44} {(triple['in'] - n) / extra_cpu:10,.1f} "
          f"{2 * mb / extra_cpu:8,.2f}")
    print(f"{f'all cores ({os.cpu_count()} workers, 2 shards), wall':44} {stats['in'] / all_wall:10,.1f} "
          f"{mb / all_wall:8,.2f}")
    if bare:
        print(f"{'bare trafilatura (fast), same pages, per CPU-s':44} {bare['n'] / bare['cpu']:10,.1f} "
              f"{mb * bare['n'] / n / bare['cpu']:8,.2f}")
    print(f"kept {shard['out']:,} of {n:,} pages; dropped {shard['dropped']}")
    print(f"peak RSS: worker {shard['rss']:,.0f} MiB; largest child (forkserver or extraction process) "
          f"{shard['child_rss']:,.0f} MiB")


if __name__ == "__main__":
    main()

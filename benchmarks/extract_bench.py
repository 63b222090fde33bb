"""extract end to end (WARC in, Parquet out) against its floor, in CPU-seconds of the whole process tree.

    python benchmarks/extract_bench.py [--pages N] [--repeats R] [--mode english|passed|mixed]
                                       [--data ../shared/data/extraction/trafilatura-eval/tests]

Archives real pages from trafilatura's evaluation set into one WARC shard the way fetch
writes it (with its fetch log), then, R times, interleaved:

  1. the stage: ``python -m webtext.pipeline.cli --workers 1 extract`` in a fresh process (its
     start-up, the pool worker, the forkserver and the extraction process included);
  2. the floor: bare ``trafilatura.extract(html, fast=True, include_comments=False)``
     (the stage's own settings) in a fresh process, over the same pages decoded as the
     stage decodes them; only its extraction loop is counted (not its start-up, not the
     decoding), which makes it the strictest floor.

The stage's CPU is read from ``resource.getrusage(RUSAGE_CHILDREN)`` after every process
of its tree has exited and been reaped: this process makes itself a child subreaper
(``prctl(PR_SET_CHILD_SUBREAPER)``), so the forkserver, orphaned when its parent exits,
is reparented here and reaped too, and the extraction processes it forked are already
counted in its own children's time. Nothing is sampled from /proc.

Modes (which pages):
  english  (default, the headline) the pages whose long paragraphs the language prefilter
           reads as English (174 of the 1,032), repeated to N: every page is extracted;
  passed   every page the prefilter lets through (also those with too little paragraph
           text to decide), repeated;
  mixed    the evaluation set as it is, mostly German: most pages are skipped by the
           prefilter without extraction. Not a measure of extraction speed.

Also printed: the stage's fixed cost (the same command on a one-page shard), to show that
start-up is a small share of the total, and the peak RSS of the largest process of the
stage's tree (its first run, which goes before any floor run).
"""

from __future__ import annotations

import argparse
import ctypes
import gzip
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data" / "extraction" / "trafilatura-eval" / "tests"
PR_SET_CHILD_SUBREAPER = 36


def archive(work: Path, pages: list[tuple[str, bytes]]) -> None:
    """Write ``pages`` into one WARC shard under work/warc, with its fetch log."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from webtext.pipeline.schemas import FETCHLOG
    from webtext.stages import urls as U
    from webtext.stages.http import Outcome, detect_charset
    from webtext.stages.warcstore import WarcSegments

    warc = work / "warc"
    warc.mkdir(parents=True)
    segs = WarcSegments(warc, "00000", "bench", 1 << 30, {})
    log = []
    for i, (url, body) in enumerate(pages):
        ctype = "text/html"
        o = Outcome(final_url=url, status=200, body=body, headers=[("Content-Type", ctype)], reason="OK",
                    charset=detect_charset(body, ctype))
        name, offset, _ = segs.write({"url_id": U.url_id(url), "url": url, "score": 5, "num_submissions": 1,
                                      "first_seen": 1_700_000_000 + i, "subreddits": ["bench"], "title": None}, o)
        log.append({"url_id": U.url_id(url), "url": url, "final_url": url, "status": 200, "bytes": len(body),
                    "content_type": ctype, "charset": o.charset, "elapsed_ms": 0, "tries": 1, "warc_file": name,
                    "warc_offset": offset})
    segs.close()
    pq.write_table(pa.Table.from_pylist(log, schema=FETCHLOG), warc / "fetchlog-00000.parquet")


def load_pages(data: Path, n: int, mode: str) -> list[tuple[str, bytes]]:
    from webtext.pipeline.config import ExtractConfig
    from webtext.stages.extract import decode_html, paragraph_language
    from webtext.stages.http import detect_charset

    bodies = [gzip.decompress(p.read_bytes()) for p in sorted(data.glob("*/*.html.gz"))]
    if mode != "mixed":
        cfg = ExtractConfig()

        def keep(body: bytes) -> bool:
            lang, score = paragraph_language(decode_html(body, "text/html", detect_charset(body, "text/html")))
            if mode == "english":
                return lang == "en"
            return lang is None or lang in cfg.langs or score < cfg.lang_prefilter_score

        bodies = [b for b in bodies if keep(b)]
    return [(f"http://h{i % 500}.bench.example/a/{i}", bodies[i % len(bodies)]) for i in range(n)]


FLOOR = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import trafilatura
from fastwarc.warc import ArchiveIterator, WarcRecordType
from webtext.stages.extract import decode_html
pages, pending = [], {}
for p in sorted(Path(sys.argv[1]).glob("warc-*.warc.gz")):   # the same pages, decoded as the stage does
    with open(p, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response | WarcRecordType.metadata, parse_http=True):
            if rec.record_type == WarcRecordType.response:
                pending[rec.headers.get("WARC-Record-ID")] = (rec.http_headers.get("Content-Type"), rec.reader.read(),
                                                               rec.headers.get("WARC-Target-URI"))
            else:
                ctype, body, url = pending.pop(rec.headers.get("WARC-Concurrent-To"))
                pages.append((decode_html(body, ctype, json.loads(rec.reader.read()).get("charset")), url))
c = time.process_time()
got = sum(1 for html, url in pages if trafilatura.extract(html, url=url, fast=True, include_comments=False))
print(json.dumps({"n": len(pages), "texts": got, "cpu": time.process_time() - c}))
"""


def _reap_all() -> None:
    """Wait for every process left in this tree (orphans are reparented to us, a subreaper)."""
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def tree_cpu(cmd: list[str], env: dict | None = None) -> tuple[float, str]:
    """CPU-seconds (user + system) of ``cmd`` and every process it started, and its stdout."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    _reap_all()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), r.stdout


def stage(work: Path) -> tuple[float, dict]:
    """One run of ``webtext extract`` with one worker over work/warc, from scratch."""
    shutil.rmtree(work / "docs", ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cpu, _ = tree_cpu([sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(work), "--workers", "1", "extract"], env)
    return cpu, json.loads((work / "docs" / "_stats.json").read_text())


def floor(work: Path) -> dict:
    _, out = tree_cpu([sys.executable, "-c", FLOOR, str(work / "warc"), str(ROOT)])
    return json.loads(out.strip().splitlines()[-1])


def spread(xs: list[float], fmt: str = "{:,.1f}") -> str:
    return f"{fmt.format(statistics.median(xs))} ({fmt.format(min(xs))}-{fmt.format(max(xs))})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pages", type=int, default=870)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--mode", choices=("english", "passed", "mixed"), default="english")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found; pass --data")
    if ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise SystemExit("prctl(PR_SET_CHILD_SUBREAPER) failed: the CPU of orphaned processes would be missed")
    pages = load_pages(args.data, args.pages, args.mode)
    distinct = len({b for _, b in pages})
    mb = sum(len(b) for _, b in pages) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        work, tiny = Path(tmp) / "work", Path(tmp) / "tiny"
        archive(work, pages)
        archive(tiny, pages[:1])
        runs = []
        for r in range(args.repeats):      # interleaved, alternating which goes first
            pair = {}
            for which in (("stage", "floor") if r % 2 == 0 else ("floor", "stage")):
                if which == "stage":
                    pair["cpu"], pair["stats"] = stage(work)
                    if r == 0:   # the first process trees reaped are the stage's: their largest process
                        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                else:
                    pair["floor"] = floor(work)
            pair["fixed"], _ = stage(tiny)
            runs.append(pair)
            f = pair["floor"]
            print(f"  repeat {r + 1}: stage {pair['cpu']:.2f} CPU-s, floor {f['cpu']:.2f} CPU-s "
                  f"({f['cpu'] / pair['cpu']:.3f}x); one-page run {pair['fixed']:.2f} CPU-s", flush=True)
    label = {"english": "English pages only (the prefilter reads their paragraphs as English)",
             "passed": "every page the language prefilter passes",
             "mixed": "MIXED mode: the evaluation set as it is, mostly non-English pages the prefilter skips "
                      "without extracting; not a measure of extraction speed"}[args.mode]
    n = runs[0]["stats"]["in"]
    cpu = [r["cpu"] for r in runs]
    fcpu = [r["floor"]["cpu"] for r in runs]
    ratio = [r["floor"]["cpu"] / r["cpu"] for r in runs]
    fixed = [r["fixed"] for r in runs]
    print(f"extract benchmark, {label}: {n:,} pages ({distinct} distinct), {mb / n * 1e3:,.0f} KB/page, "
          f"{mb:,.0f} MB of HTML; {os.cpu_count()} cores; {args.repeats} interleaved repeats, median (range)")
    print(f"stage, webtext extract --workers 1 (whole process tree)  {spread(cpu, '{:.2f}')} CPU-s  "
          f"= {spread([n / c for c in cpu])} pages per CPU-s")
    print(f"floor, bare trafilatura.extract(fast=True), loop only    {spread(fcpu, '{:.2f}')} CPU-s  "
          f"= {spread([n / c for c in fcpu])} pages per CPU-s")
    print(f"stage speed / floor speed                                {spread(ratio, '{:.3f}')}x   (target >= 0.9x)")
    print(f"fixed cost (the same command on a one-page shard)        {spread(fixed, '{:.2f}')} CPU-s "
          f"= {statistics.median(fixed) / statistics.median(cpu):.1%} of the stage's total")
    s = runs[0]["stats"]
    print(f"kept {s['out']:,} of {n:,} pages; dropped {s.get('dropped', {})}; floor found text on "
          f"{runs[0]['floor']['texts']:,}")
    print(f"peak RSS of the stage's largest process (first run): {peak:,.0f} MiB")


if __name__ == "__main__":
    main()

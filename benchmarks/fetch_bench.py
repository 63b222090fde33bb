"""Fetch throughput: webtext's crawler against a bare aiohttp loop, through one proxy.

    python benchmarks/fetch_bench.py [--urls 20000] [--hosts 1000] [--concurrency 256] [--repeats 3]

A loopback server process (aiohttp) acts as a forward proxy for ``--hosts`` host names.
It answers every page after 20-100 ms with real web pages from ../shared/data (the
trafilatura evaluation set) when present, else synthetic HTML of realistic size, and
answers robots.txt with 404. Each measurement runs in its own process:
  1. bare: an aiohttp loop at the same concurrency that GETs every URL and discards the
     body (no politeness, no robots.txt, no WARC);
  2. webtext: one fetch task (``stages.fetch.fetch_shard``) with robots.txt, redirect
     and safety handling, and WARC + journal + fetch log output; ``host_delay_s`` = 0,
     so that politeness does not cap the rate (with the default 1 s, 1,000 hosts allow at
     most 1,000 pages/s);
The two alternate, ``--repeats`` times on the same URLs, and the figures are the median
and the range. CPU is the child process's whole tree, start-up included
(RUSAGE_CHILDREN after it is reaped).
It reports pages/s, pages per CPU-second (a per-core rate) and peak RSS, the latter also
at a tenth of the URLs (webtext reads the shard 2,000 URLs at a time, so memory should
not grow with the shard).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SERVER = r"""
import asyncio, gzip, random, sys
from pathlib import Path
from aiohttp import web
rng = random.Random(0)
real = sorted(Path(sys.argv[2]).glob("*/*.html.gz")) if len(sys.argv) > 2 else []
# Real HTML compresses about 4-6x; text drawn from a 20,000-word vocabulary with Zipf-like
# frequencies and varied markup behaves alike (a tiny vocabulary would be pathological).
vocab = ["".join(rng.choice("etaoinshrdlucmfwypvbgkjqxz") for _ in range(rng.randint(2, 10))) for _ in range(20000)]
import itertools
cum = list(itertools.accumulate(1 / (k + 1) for k in range(len(vocab))))
bodies = []
for i in range(64):
    size = int(min(max(rng.lognormvariate(10.3, 0.6), 4000), 400000))
    parts, n = [], 0
    while n < size:
        para = " ".join(rng.choices(vocab, cum_weights=cum, k=rng.randint(20, 120)))
        tag = rng.choice(["p", "li", "td", "span", "div"])
        piece = f'<{tag} class="c{rng.randint(0, 99)}">{para}</{tag}>\n'
        parts.append(piece)
        n += len(piece)
    bodies.append(("<html><head><title>p%d</title></head><body><nav>menu</nav><article>%s</article></body></html>"
                   % (i, "".join(parts))).encode())
if real:   # real pages from ../shared/data (trafilatura's evaluation set) when present
    bodies = [gzip.decompress(p.read_bytes()) for p in real[:256]]
async def handle(request):
    if request.path == "/robots.txt":
        return web.Response(status=404, text="none")
    await asyncio.sleep(rng.uniform(0.02, 0.1))
    return web.Response(body=bodies[hash(request.path) % len(bodies)], content_type="text/html")
app = web.Application()
app.router.add_get("/{tail:.*}", handle)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""

BARE = r"""
import asyncio, json, resource, sys, time, aiohttp
urls, proxy, conc = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
async def main():
    sem = asyncio.Semaphore(conc)
    conn = aiohttp.TCPConnector(limit=conc, limit_per_host=0)
    async with aiohttp.ClientSession(connector=conn) as s:
        async def one(u):
            async with sem:
                async with s.get(u, proxy=proxy) as r:
                    return len(await r.read())
        return sum(await asyncio.gather(*(one(u) for u in urls)))
t, c = time.perf_counter(), time.process_time()
n = asyncio.run(main())
print(json.dumps({"secs": time.perf_counter() - t, "cpu": time.process_time() - c, "bytes": n,
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

WEBTEXT = r"""
import json, resource, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[4])
import pyarrow.parquet as pq
from webtext.pipeline.config import FetchConfig, to_dict
from webtext.pipeline.executor import Task
from webtext.stages import fetch
proxy, conc, _, out = sys.argv[2], int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
level, engine = int(sys.argv[6]), sys.argv[7]
src = out / "urls-00000.parquet"        # written by the parent, so it is not in this process's RSS
cfg = FetchConfig(proxy=proxy, concurrency=conc, per_host=2, host_delay_s=0.0, retries=0, warc_gzip_level=level,
                  warc_gzip=engine, batch_urls=2000)
t, c = time.perf_counter(), time.process_time()
s = fetch.fetch_shard(Task("fetch", "00000", fetch.fetch_shard, [src], [out / "fetchlog-00000.parquet"],
                           options={"fetch": to_dict(cfg)}))
print(json.dumps({"secs": time.perf_counter() - t, "cpu": time.process_time() - c, "pages": s.records_out,
                  "dropped": dict(s.dropped), "bytes": s.info.get("bytes", 0),
                  "rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def _run(code: str, *args) -> dict:
    """Run one measurement in a child; its CPU is the child's whole tree (user + system,
    start-up included), read with RUSAGE_CHILDREN after it is reaped."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True, text=True, cwd=ROOT)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(r.stderr)
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["tree_cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def _spread(values: list[float]) -> str:
    """Median and range, e.g. ``693 (559-701)``."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--urls", type=int, default=20000)
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved bare/webtext pairs at --urls")
    ap.add_argument("--port", type=int, default=18731)
    ap.add_argument("--gzip-level", type=int, default=1, help="WARC record gzip level (fetch.warc_gzip_level)")
    ap.add_argument("--gzip-engine", default="isal", choices=["isal", "zlib"], help="fetch.warc_gzip")
    args = ap.parse_args()
    pages = ROOT.parent / "shared" / "data" / "extraction" / "trafilatura-eval" / "tests"
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.port), *([str(pages)] if pages.exists() else [])])
    page_kind = "real pages from ../shared (trafilatura eval set)" if pages.exists() else "synthetic pages"
    proxy = f"http://127.0.0.1:{args.port}"
    sys.path.insert(0, str(ROOT))
    import pyarrow.parquet as pq

    from tests.conftest import url_table

    try:
        import socket

        for _ in range(300):            # wait until the server listens
            try:
                socket.create_connection(("127.0.0.1", args.port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.1)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            runs: dict[int, list] = {}
            plan = [args.urls // 10] + [args.urls] * args.repeats     # the small run: peak RSS only
            for k, n in enumerate(plan):
                urls = [f"http://h{i % args.hosts}.bench.example/article/{i}" for i in range(n)]
                (tmp / "urls.json").write_text(json.dumps(urls))
                out = tmp / f"w{k}"
                out.mkdir()
                pq.write_table(url_table(urls), out / "urls-00000.parquet")
                pair = (_run(BARE, tmp / "urls.json", proxy, args.concurrency),
                        _run(WEBTEXT, tmp / "urls.json", proxy, args.concurrency, ROOT, out, args.gzip_level,
                             args.gzip_engine))
                runs.setdefault(n, []).append(pair)
                sizes = sum(p.stat().st_size for p in out.glob("warc-*.warc.gz"))
                for p in out.glob("warc-*.warc.gz"):
                    p.unlink()
    finally:
        server.terminate()
    n = args.urls
    pairs = runs[n]
    ours = pairs[-1][1]
    print(f"fetch benchmark: {n:,} URLs on {args.hosts:,} hosts via one loopback proxy, 20-100 ms latency, "
          f"concurrency {args.concurrency}; {page_kind}, {ours['bytes'] / max(ours['pages'], 1) / 1e3:,.0f} KB/page; "
          f"WARC gzip {args.gzip_engine} level {args.gzip_level}: {sizes / 1e6:,.1f} MB for {ours['bytes'] / 1e6:,.1f} MB of pages")
    print(f"{len(pairs)} interleaved repeats, median (range); CPU = the child process tree, start-up included")
    print(f"{'what':40} {'pages/s':>22} {'pages/CPU-s':>22} {'peak RSS MiB':>13}")
    for name, i, count in (("bare aiohttp loop (no politeness/WARC)", 0, lambda r: n),
                           ("webtext fetch (robots, WARC, journal)", 1, lambda r: r["pages"])):
        rates = [count(p[i]) / p[i]["secs"] for p in pairs]
        per_cpu = [count(p[i]) / p[i]["tree_cpu"] for p in pairs]
        print(f"{name:40} {_spread(rates):>22} {_spread(per_cpu):>22} {max(p[i]['rss'] for p in pairs):13,.0f}")
    ratios = [(p[1]["pages"] / p[1]["tree_cpu"]) / (n / p[0]["tree_cpu"]) for p in pairs]
    print(f"ratio webtext / bare (pages per CPU-second): {statistics.median(ratios):.2f}x "
          f"({min(ratios):.2f}-{max(ratios):.2f})  (target >= 0.7x; >= 1,000 pages/s per core)")
    small = runs[args.urls // 10][0][1]
    print(f"webtext peak RSS: {small['rss']:,.0f} MiB at {args.urls // 10:,} URLs, "
          f"{max(p[1]['rss'] for p in pairs):,.0f} MiB at {n:,} URLs; dropped: {ours['dropped'] or 'none'}")


if __name__ == "__main__":
    main()

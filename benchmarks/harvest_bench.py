"""Harvest throughput: decompressed MB per CPU-second against `zstd -d` on the same dump.

    python benchmarks/harvest_bench.py [--lines 2000000] [--repeats 3] [--dir /tmp/webtext-bench] [--workers 1]

Generates a realistic Pushshift-style .zst dump (2 GiB window, ~2.7 KB records with the
usual modern fields; a mix of self posts, image/video links, NSFW, Reddit links and
article links with a heavy-tailed score; ~5.3 GB decompressed at the default 2M lines),
then measures, each in its own process:
  1. `zstd -d --long=31 -c dump > /dev/null` (the raw decompression ceiling);
  2. webtext's reader alone (decompression + line batching, no parsing);
  3. the reader plus msgspec decoding, with no filtering (the floor for this design);
  4. the harvest map task alone (decompress, decode, filter, normalize, write Parquet);
  5. `webtext --workers W harvest --dumps dump` in a fresh work directory: the CLI end
     to end, start-up, map, reduce and state database included (the headline figure).
These five alternate, in this order, ``--repeats`` times on the same dump. Each rate is
decompressed MB per CPU-second of the child's whole process tree (user + system,
start-up included: RUSAGE_CHILDREN deltas after it is reaped, pool workers included),
reported as the median and range over the repeats, and so is the ratio to `zstd -d` of
each repeat. Then:
  6. the CLI's fixed cost: the CLI on a 1,000-line dump, with ``--workers 1`` and with
     the default worker count, ``--repeats`` times each;
  7. peak RSS of the CLI process (VmHWM of /proc/self/status at exit, so no parent's
     pages count; with pool workers, also their largest ru_maxrss) on a dump of
     --lines/10 and of --lines lines: a .zst dump's 2 GiB window fills as the dump
     is decompressed, so RSS grows with the dump up to about 2.3 GiB;
  8. once, timed in the child after its imports (wall clock), on the first 200k lines:
     json.loads per line, and Arrow's C++ NDJSON reader (pyarrow.json, one thread, an
     explicit schema of the fields harvest reads) in place of msgspec.

    python benchmarks/harvest_bench.py --reduce [--lines 1000000] [--bucket-rows N]

measures instead the peak RSS of one reduce task (one output shard, so it reads every
submission) over generated map parts (``make_parts``: 4 parts, repeated submissions and
several raw forms per URL) at --lines/10 and --lines submissions: it must stay flat.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import zstandard

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WORDS = ("the of and to in is for that on with as it by this be are from at or an was have not but "
         "what all were when we there can your which their said if will each about how up out them then "
         "she many some so these would other into has more her two like him see time could no make than "
         "first been its who now people my made over did down only way find use may water long little very "
         "after words called just where most know get through back much before go good new write our used me "
         "man too any day same right look think also around another came come work three word must because "
         "does part even place well such here take why things help put years different away again off went "
         "old number great tell men say small every found still between name should home big give air line "
         "set own under read last never us left end along while might next sound below saw something thought "
         "both few those always looked show large often together asked house world going want school important "
         "until form food keep children feet land side without boy once animals life enough took sometimes").split()


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def make_record(i: int, rng: random.Random, domains: list[str]) -> dict:
    kind = rng.random()
    created = 1_546_300_800 + i * 2
    sub = f"sub{int(rng.paretovariate(1.2)) % 20000}"
    score = int(rng.paretovariate(0.9)) - 1
    rid = f"{i:07x}"
    is_self, over_18, url, domain, selftext = False, rng.random() < 0.08, "", "", ""
    if kind < 0.45:
        is_self, domain = True, f"self.{sub}"
        url = f"https://www.reddit.com/r/{sub}/comments/{rid}/{_text(rng, 4).replace(' ', '_')}/"
        selftext = _text(rng, rng.randint(40, 220))
    elif kind < 0.70:
        host = rng.choice(["i.redd.it", "i.imgur.com", "v.redd.it", "gfycat.com", "youtube.com"])
        url, domain = f"https://{host}/{rid}{rng.choice(['.jpg', '.png', '', '.gifv'])}", host
    elif kind < 0.75:
        url, domain = f"https://www.reddit.com/r/{sub}/comments/{rid}/x/", "reddit.com"
    else:
        domain = rng.choice(domains)
        path = "/".join(rng.choice(WORDS) for _ in range(rng.randint(1, 4)))
        url = f"https://{domain}/{path}/{rid}" + (f"?id={i}&utm_source=reddit" if rng.random() < 0.3 else "")
    return {
        "all_awardings": [], "allow_live_comments": False, "archived": False, "author": f"user{rng.randint(0, 10**6)}",
        "author_flair_background_color": None, "author_flair_css_class": None, "author_flair_richtext": [],
        "author_flair_text": None, "author_flair_type": "text", "author_fullname": f"t2_{rng.randint(0, 10**8):x}",
        "author_patreon_flair": False, "can_gild": True, "can_mod_post": False, "contest_mode": False,
        "created_utc": created, "domain": domain, "edited": False, "full_link": f"https://www.reddit.com/r/{sub}/comments/{rid}/",
        "gildings": {}, "id": rid, "is_crosspostable": True, "is_meta": False, "is_original_content": False,
        "is_reddit_media_domain": domain in ("i.redd.it", "v.redd.it"), "is_robot_indexable": True,
        "is_self": is_self, "is_video": domain == "v.redd.it", "link_flair_background_color": "",
        "link_flair_css_class": None, "link_flair_richtext": [], "link_flair_text": None, "link_flair_text_color": "dark",
        "link_flair_type": "text", "locked": False, "media": None, "media_embed": {}, "media_only": False,
        "no_follow": score < 2, "num_comments": int(rng.paretovariate(1.0)) - 1, "num_crossposts": 0,
        "over_18": over_18, "parent_whitelist_status": "all_ads", "permalink": f"/r/{sub}/comments/{rid}/",
        "pinned": False, "pwls": 6, "retrieved_on": created + 86400 * 30, "score": score, "secure_media": None,
        "secure_media_embed": {}, "selftext": selftext, "send_replies": True, "spoiler": False, "stickied": False,
        "subreddit": sub, "subreddit_id": f"t5_{rng.randint(0, 10**7):x}", "subreddit_subscribers": rng.randint(0, 10**7),
        "subreddit_type": "public", "thumbnail": "default", "thumbnail_height": 140, "thumbnail_width": 140,
        "title": _text(rng, rng.randint(5, 20)), "total_awards_received": 0, "treatment_tags": [], "url": url,
        "whitelist_status": "all_ads", "wls": 6,
        "preview": {"enabled": False, "images": [{"id": f"{rng.getrandbits(64):x}", "resolutions": [
            {"height": 108 * k, "url": f"https://preview.redd.it/{rid}{k}.jpg?width={108 * k}&amp;s={rng.getrandbits(64):x}",
             "width": 108 * k} for k in range(1, 5)], "source": {"height": 1080, "url": f"https://preview.redd.it/{rid}.jpg", "width": 1920},
            "variants": {}}]},
    }


def generate(path: Path, lines: int, seed: int = 0) -> int:
    rng = random.Random(seed)
    domains = [f"{rng.choice(WORDS)}{rng.choice(WORDS)}{k}.{rng.choice(['com', 'org', 'net', 'co.uk', 'de'])}"
               for k in range(5000)]
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31)
    raw = 0
    with open(path, "wb") as f, zstandard.ZstdCompressor(compression_params=params).stream_writer(f) as w:
        batch = []
        for i in range(lines):
            batch.append(json.dumps(make_record(i, rng, domains)))
            if len(batch) == 10000:
                data = ("\n".join(batch) + "\n").encode()
                raw += len(data)
                w.write(data)
                batch = []
        if batch:
            data = ("\n".join(batch) + "\n").encode()
            raw += len(data)
            w.write(data)
    return raw


def _run(argv: list[str], stdout=subprocess.PIPE, errors: list | None = None) -> tuple[str, float, float]:
    """Run ``argv`` in a child; (its stdout, CPU-seconds of its whole process tree, wall
    seconds). The CPU is user + system of everything reaped meanwhile (RUSAGE_CHILDREN).
    ``errors``, when given, receives the child's stderr."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    r = subprocess.run(argv, stdout=stdout, stderr=subprocess.PIPE, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"{argv[:3]} failed:\n{r.stderr}")
    if errors is not None:
        errors.append(r.stderr)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return (r.stdout or "").strip(), cpu, wall


def _cli(dump: Path, workdir: Path, workers: int | None) -> tuple[float, float, float, float]:
    """``webtext harvest`` on ``dump`` in a fresh ``workdir``: (CPU-seconds of its process
    tree, wall seconds, its peak RSS in MiB, its largest pool worker's in MiB)."""
    shutil.rmtree(workdir, ignore_errors=True)
    argv = ["--workdir", str(workdir)] + (["--workers", str(workers)] if workers else []) + \
        ["harvest", "--dumps", str(dump)]
    errors: list[str] = []
    _, cpu, wall = _run([sys.executable, "-c", CLI.format(argv=argv)], errors=errors)
    peak = [ln.split() for ln in errors[0].splitlines() if ln.startswith("PEAK ")][-1]
    shutil.rmtree(workdir, ignore_errors=True)
    return cpu, wall, float(peak[1]), float(peak[2])


def _child(code: str) -> str:
    """Run ``code`` in a fresh interpreter; its stdout."""
    return _run([sys.executable, "-c", code])[0]


def _spread(values: list[float]) -> str:
    """Median and range, e.g. ``215 (209-221)``."""
    return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"


def _spread1(values: list[float]) -> str:
    """Median and range with one decimal, e.g. ``2.1 (2.0-2.3)``."""
    return f"{statistics.median(values):,.1f} ({min(values):,.1f}-{max(values):,.1f})"


def _ratio(values: list[float]) -> str:
    """Median and range of ratios, e.g. ``0.21x (0.20-0.22)``."""
    return f"{statistics.median(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


READER = """
import sys, time; from pathlib import Path; from webtext.stages.reddit import iter_batches
t = time.perf_counter(); n = sum(len(b) for b in iter_batches(Path(sys.argv[1] if len(sys.argv) > 1 else {p!r})))
print(n, time.perf_counter() - t)
"""
FLOOR = """
import time; from pathlib import Path; from webtext.stages.reddit import iter_batches, decode_batch
t = time.perf_counter(); n = 0
for buf in iter_batches(Path({p!r})):
    decode_batch(buf); n += len(buf)
print(n, time.perf_counter() - t)
"""
HARVEST = """
import time, resource; from pathlib import Path
from webtext.pipeline.executor import Task; from pipeline.config import HarvestConfig
from webtext.stages.harvest import harvest_dump, filter_params
p = filter_params(HarvestConfig())
t = time.perf_counter()
s = harvest_dump(Task("map", "x", harvest_dump, [Path({p!r})], [Path({o!r})], p))
print(s.records_in, s.records_out, s.info.get("decompressed_bytes"), time.perf_counter() - t,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
JSONLOADS = """
import json, time, itertools; from pathlib import Path; from webtext.stages.reddit import iter_batches
t = time.perf_counter(); n = b = 0
for buf in iter_batches(Path({p!r})):
    for line in buf.splitlines():
        d = json.loads(line); n += 1; b += len(line) + 1
    if n >= 200000: break
print(b, time.perf_counter() - t)
"""

ARROWJSON = """
import time; from pathlib import Path; from webtext.stages.reddit import iter_batches
import pyarrow as pa, pyarrow.json as pj
schema = pa.schema([("url", pa.string()), ("score", pa.int64()), ("is_self", pa.bool_()), ("over_18", pa.bool_()),
                    ("created_utc", pa.int64()), ("subreddit", pa.string()), ("id", pa.string()), ("title", pa.string()),
                    ("domain", pa.string()), ("removed_by_category", pa.string()), ("banned_by", pa.string())])
po = pj.ParseOptions(explicit_schema=schema, unexpected_field_behavior="ignore")
ro = pj.ReadOptions(use_threads=False, block_size=1 << 22)
t = time.perf_counter(); n = lines = 0
for buf in iter_batches(Path({p!r})):
    pj.read_json(pa.BufferReader(buf), read_options=ro, parse_options=po); n += len(buf); lines += buf.count(b"\\n")
    if lines >= 200000: break
print(n, time.perf_counter() - t)
"""

# The CLI as .venv/bin/webtext runs it, reporting its peak RSS at exit: VmHWM is this
# process's own high-water mark (reset by exec, so the parent's pages never count);
# RUSAGE_CHILDREN's ru_maxrss is the largest pool worker's (0 with --workers 1).
CLI = """
import atexit, resource, sys
def _peak():
    hwm = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
    sys.stderr.write(f"PEAK {{int(hwm.split()[1]) / 1024:.0f}} "
                     f"{{resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.0f}}\\n")
atexit.register(_peak)
sys.argv = ["webtext"] + {argv!r}
from webtext.pipeline.cli import main
sys.exit(main())
"""


REDUCE = """
import resource, sys, time; from pathlib import Path
from webtext.pipeline.executor import Task; from stages.harvest_reduce import aggregate_urls
parts = sorted(Path({d!r}).glob("RS_*.parquet"))
params = {{"min_score": 3, "score_agg": "sum", "num_shards": 1, "shard": 0, "latest": 2,
          "versions": {{p.name: 1 + i % 2 for i, p in enumerate(parts)}}}}
t = time.perf_counter()
options = {{"bucket_rows": {b}}} if {b} else {{}}
s = aggregate_urls(Task("reduce", "00000", aggregate_urls, parts, [Path({o!r})], params, options))
print(s.records_in, s.records_out, time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def make_parts(folder: Path, n: int, parts: int = 4, seed: int = 0) -> None:
    """``parts`` SUBMISSIONS files holding ``n`` submission rows together: ~0.6 n distinct
    URLs (heavy-tailed reposts), each submission in one part and ~10% again in a later one
    (another score), and a URL's submissions in one to three raw forms."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from webtext.pipeline.schemas import SUBMISSIONS
    from webtext.stages import urls as U

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    nurls = max(1, int(n * 0.6))
    rows: list[list[dict]] = [[] for _ in range(parts)]
    i = 0
    while i < n:
        k = min(int(rng.paretovariate(1.5)), 50) if rng.random() < 0.3 else 1
        u = rng.randrange(nurls)
        url = f"https://site{u % 5000}.example.com/{_text(rng, 3).replace(' ', '/')}/{u}?a={u % 7}&b="
        for _ in range(k):
            raw = url if rng.random() < 0.7 else url.replace("?a=", "?b=&a=")   # another parameter order
            r = {"url": U.normalize(url) or url, "score": int(rng.paretovariate(0.9)) - 1,
                 "created_utc": 1_546_300_800 + i, "subreddit": f"sub{rng.randrange(20000)}", "id": f"{i:07x}",
                 "title": _text(rng, rng.randint(5, 20)), "raw_url": raw}
            r["domain"], r["url_hash"] = U.raw_host(r["url"]), U.url_hash(r["url"])
            p = rng.randrange(parts)
            rows[p].append(r)
            if rng.random() < 0.1 and p + 1 < parts:
                rows[rng.randrange(p + 1, parts)].append(dict(r, score=r["score"] + rng.randrange(1, 20)))
            i += 1
    for p, rs in enumerate(rows):
        schema = pa.schema([f for f in SUBMISSIONS if f.name in rs[0]], metadata=SUBMISSIONS.metadata)
        pq.write_table(pa.Table.from_pylist(rs, schema=schema), folder / f"RS_part{p}.parquet", compression="zstd",
                       row_group_size=65536)        # as the map writes them (SubmissionWriter.ROW_GROUP)


def reduce_main(args) -> None:
    sizes = (args.lines // 10, args.lines)
    for n in sizes:
        d = args.dir / f"reduce-{n}"
        if not d.exists():     # in a child: a big parent would count in the next child's ru_maxrss (fork)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); "
                            f"from harvest_bench import make_parts; from pathlib import Path; "
                            f"make_parts(Path({str(d)!r}), {n})"], cwd=ROOT, check=True)
            print(f"generated {n:,} submissions in {time.perf_counter() - t:.0f}s", flush=True)
        res = _child(REDUCE.format(d=str(d), o=str(args.dir / f"urls-{n}.parquet"), b=args.bucket_rows))
        n_in, n_out, secs, rss = res.split()
        print(f"reduce of {int(n_in):,} submission rows -> {int(n_out):,} URLs: {float(secs):.1f}s, "
              f"peak RSS {float(rss):,.0f} MiB", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=2_000_000)
    ap.add_argument("--repeats", type=int, default=3, help="interleaved zstd/reader/floor/harvest rounds")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/webtext-bench"))
    ap.add_argument("--workers", type=int, default=1, help="the CLI's --workers (0: its default, one per core)")
    ap.add_argument("--reduce", action="store_true", help="peak RSS of a reduce task instead (see above)")
    ap.add_argument("--bucket-rows", type=int, default=0, help="with --reduce: the reduce's bucket_rows (0: default)")
    args = ap.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    if args.reduce:
        return reduce_main(args)
    zstd = shutil.which("zstd")
    if not zstd:
        raise SystemExit("zstd (the CLI) is needed: it is the baseline")
    dumps = {}
    for lines in (args.lines // 10, args.lines):
        dumps[lines] = dump = args.dir / f"RS_bench-{lines}.zst"
        if not dump.exists():
            t = time.perf_counter()
            raw = generate(dump, lines)
            print(f"generated {lines:,} lines, {raw / 1e6:,.0f} MB raw, {dump.stat().st_size / 1e6:,.0f} MB .zst "
                  f"in {time.perf_counter() - t:.0f}s", flush=True)

    def harvest(lines: int) -> tuple[list[float], float, float]:
        out, c, w = _run([sys.executable, "-c", HARVEST.format(p=str(dumps[lines]),
                                                             o=str(args.dir / f"part-{lines}.parquet"))])
        n_in, n_out, nbytes, _, peak = out.split()
        return [int(n_in), int(n_out), int(nbytes), float(peak)], c, w

    lines, dump = args.lines, dumps[args.lines]
    workdir = args.dir / "cli-work"
    names = ("zstd", "reader", "floor", "harvest", "cli")
    cpu: dict[str, list[float]] = {k: [] for k in names}
    wall: dict[str, list[float]] = {k: [] for k in names}
    rss: list[float] = []
    for r in range(args.repeats):
        runs = {"zstd": _run([zstd, "-q", "-d", "-c", "--long=31", str(dump)], stdout=subprocess.DEVNULL),
                "reader": _run([sys.executable, "-c", READER.format(p=str(dump))]),
                "floor": _run([sys.executable, "-c", FLOOR.format(p=str(dump))])}
        (n_in, n_out, nbytes, _), c, w = harvest(lines)
        runs["harvest"] = ("", c, w)
        c, w, peak, _ = _cli(dump, workdir, args.workers)
        runs["cli"] = ("", c, w)
        rss.append(peak)
        for name in names:
            cpu[name].append(runs[name][1])
            wall[name].append(runs[name][2])
        print(f"repeat {r + 1}: CPU-s " + ", ".join(f"{k} {cpu[k][-1]:.1f}" for k in names), flush=True)

    # Fixed cost: the CLI on a 1,000-line dump (start-up, imports, state database, reduce).
    tiny = args.dir / "RS_bench-1000.zst"
    if not tiny.exists():
        generate(tiny, 1000)
    fixed: dict[str, list[float]] = {"1": [], "default": []}
    tiny_rss: list[float] = []
    for _ in range(args.repeats):
        for key, workers in (("1", 1), ("default", None)):
            c, _, peak, kid = _cli(tiny, workdir, workers)
            fixed[key].append(c)
            if key == "1":
                tiny_rss.append(peak)
    small = args.lines // 10
    small_rss = _cli(dumps[small], workdir, args.workers)[2]                    # once: peak RSS only
    j_bytes, j_secs = (float(x) for x in _child(JSONLOADS.format(p=str(dump))).split())
    a_bytes, a_secs = (float(x) for x in _child(ARROWJSON.format(p=str(dump))).split())

    mb = nbytes / 1e6
    cli = f"webtext --workers {args.workers or os.cpu_count()} harvest (CLI)"
    print(f"\nharvest benchmark: {lines:,} lines, {mb:,.0f} MB decompressed ({nbytes / n_in:,.0f} B/line), "
          f"{dump.stat().st_size / 1e6:,.0f} MB .zst; `nproc`={os.cpu_count()}")
    print(f"{args.repeats} interleaved repeats on the same dump, median (range); MB/CPU-s = decompressed MB per "
          f"CPU-second of the child's process tree, start-up included (RUSAGE_CHILDREN after it is reaped)")
    print(f"{'what':46} {'MB/CPU-s':>20} {'CPU-s':>16} {'wall MB/s':>10}")
    for name, label in (("zstd", "zstd -d --long=31 (CLI, decompression only)"),
                        ("reader", "webtext reader (decompress + line batches)"),
                        ("floor", "+ msgspec decode, no filtering (the floor)"),
                        ("harvest", "harvest map task (Parquet part out)"),
                        ("cli", f"{cli}: map + reduce")):
        print(f"{label:46} {_spread([mb / c for c in cpu[name]]):>20} {_spread1(cpu[name]):>16} "
              f"{statistics.median(mb / w for w in wall[name]):10,.0f}")
    ratio = {k: [z / c for z, c in zip(cpu["zstd"], cpu[k])] for k in names}   # per repeat, same dump
    print(f"ratio to zstd -d in CPU-seconds, per repeat: CLI {_ratio(ratio['cli'])}  (target >= 0.3x); "
          f"map task {_ratio(ratio['harvest'])}; reader {_ratio(ratio['reader'])}; "
          f"decompress + decode alone {_ratio(ratio['floor'])}")
    print(f"CLI fixed cost (1,000-line dump), CPU-s: --workers 1 {_spread1(fixed['1'])}, "
          f"default workers ({os.cpu_count()}) {_spread1(fixed['default'])}; "
          f"{statistics.median(fixed['1']) / statistics.median(cpu['cli']):.0%} of the CLI run above "
          f"with --workers 1")
    print("single runs on the first 200k lines, timed in the child after its imports (wall clock):")
    print(f"{'  json.loads per line':46} {j_bytes / 1e6 / j_secs:8,.0f} MB/s")
    print(f"{'  reader + pyarrow.json instead of msgspec':46} {a_bytes / 1e6 / a_secs:8,.0f} MB/s")
    print(f"kept {n_out:,} of {n_in:,} submissions in the map")
    print(f"peak RSS of the CLI process (VmHWM): {statistics.median(tiny_rss):,.0f} MiB at 1,000 lines, "
          f"{small_rss:,.0f} MiB at {small:,} lines ({dumps[small].stat().st_size / 1e6:,.0f} MB .zst, one run), "
          f"{_spread(rss)} MiB at {lines:,} lines: the .zst window (up to 2 GiB) fills with the "
          f"decompressed dump, so RSS grows with it to about 2.3 GiB")


if __name__ == "__main__":
    main()

"""Decontaminate speed against its floor: n-grams per CPU-second of the whole process
tree, end to end (``decontaminate.run``: dedup shards in; filters, scan, check, clean
shards, removals and the report out; process start-up included), against rbloom's own
lookup loop over the same n-gram hashes, interleaved.

    python benchmarks/decontaminate_bench.py [--copies 120] [--repeats 3] [--items 0] [--fp 1e-8]

Text: trafilatura (fast) on the 990 real evaluation pages in ../shared, ``--copies`` times
over, with a LAMBADA passage planted in one document in 50 (so the hit, cut and drop paths
run), in dedup shards of 1,000 documents written as dedup writes them (zstd). Benchmarks:
the real LAMBADA, WikiText-2, PTB and WSC273 test sets.

Each round runs, each in its own fresh process, on identical input:
- the floor: the same 13-gram hashes (computed first, not timed), then rbloom's own
  lookups, ``sum(map(bloom.__contains__, hashes))`` (rbloom has no bulk lookup; this is
  its fastest documented loop), against one filter of every benchmark n-gram at ``--fp``;
  the rate is the lookups' own CPU time;
- ``webtext decontaminate`` with ``--workers 1`` and with every core, each on a fresh work
  directory (filters built, probed and used: the stage as a first run makes it).
CPU is ``getrusage(RUSAGE_CHILDREN)`` after each process exits (pool workers included).
The fixed cost (the same stage on one 20-document shard) is printed as a share of the run.

With ``--items N``: an rbloom filter of N random hashes at ``--fp`` (the size of a
Wikipedia filter): its build time, size, peak RSS and lookups per second.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from benchcpu import child, fmt  # noqa: E402  (benchmarks/ is on the path)
NAMES = ["lambada", "wikitext2", "ptb", "wsc273"]

STAGE = r"""
import json, sys
sys.path.insert(0, sys.argv[3])
from pathlib import Path
from webtext.pipeline.config import load_config
from webtext.pipeline.executor import Context
from webtext.stages import decontaminate as D
work, workers = Path(sys.argv[1]), int(sys.argv[2])
ctx = Context(work, load_config(None, {"run": {"workers": workers}, "decontaminate": {
    "benchmarks": json.loads(sys.argv[4]), "benchmark_dir": sys.argv[5], "fp_rate": float(sys.argv[6])}}))
st = D.run(ctx)
ctx.close()
print(json.dumps({"lookups": st["info"]["ngram_lookups"], "in": st["in"], "out": st["out"]}))
"""

FLOOR = r"""
import glob, json, sys, time
sys.path.insert(0, sys.argv[2])
import numpy as np
import pyarrow.parquet as pq
from rbloom import Bloom
from webtext.stages.benchmarks import load_registry, resolve
from webtext.stages.decontaminate import benchmark_ngrams
from webtext.stages.ngrams import word_ngrams
reg = load_registry()
grams = np.unique(np.concatenate([benchmark_ngrams(resolve(n, sys.argv[4], reg), 13) for n in json.loads(sys.argv[3])]))
bloom = Bloom(len(grams), float(sys.argv[5]), hash_func=int)
bloom.update(grams.tolist())
n = found = 0
cpu = 0.0
for f in sorted(glob.glob(sys.argv[1] + "/*.parquet")):
    texts = pq.read_table(f, columns=["text"])["text"]
    for lo in range(0, len(texts), 1000):          # the stage's batches: the same n-grams
        hashes = word_ngrams(texts[lo:lo + 1000], 13).hashes.tolist()
        t = time.process_time()
        found += sum(map(bloom.__contains__, hashes))
        cpu += time.process_time() - t
        n += len(hashes)
print(json.dumps({"lookups": n, "found": found, "loop_cpu": cpu}))
"""


def corpus(data: Path) -> list[str]:
    import trafilatura

    from extract_quality import load

    return [t for _, html, _ in load(data / "extraction" / "trafilatura-eval" / "tests")
            for t in [trafilatura.extract(html, fast=True, include_comments=False)] if t]


def write(dedup: Path, texts: list[str], copies: int, data: Path) -> int:
    """Dedup shards of 1,000 documents (zstd, as dedup writes them); one document in 50 has
    a LAMBADA passage planted in its middle. Returns the documents written."""
    from webtext.pipeline.io import write_parquet
    from webtext.pipeline.schemas import DEDUP

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import doc_row, doc_table

    lambada = [json.loads(x)["text"] for x in
               (data / "benchmarks" / "lambada" / "lambada_test.jsonl").read_text().splitlines()]
    dedup.mkdir(parents=True, exist_ok=False)
    rows = []
    for i in range(copies * len(texts)):
        t = texts[i % len(texts)]
        if i % 50 == 1:
            t = t[:len(t) // 2] + " " + lambada[i % len(lambada)] + " " + t[len(t) // 2:]
        rows.append(doc_row(f"c{i:07d}", t, url=f"http://s{i % len(texts)}.example/{i // len(texts)}"))
        if len(rows) == 1000:
            write_parquet(doc_table(rows), dedup / f"dedup-{i // 1000:05d}.parquet", DEDUP)
            rows = []
    if rows:
        write_parquet(doc_table(rows), dedup / f"dedup-{(copies * len(texts)) // 1000:05d}.parquet", DEDUP)
    return copies * len(texts)


def stage(src: Path, work: Path, workers: int, bench_dir: Path, fp: float) -> tuple[dict, float]:
    """The stage on a fresh work directory holding a copy of ``src`` (copied before the clock)."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work / "dedup")
    return child([STAGE, str(work), str(workers), str(ROOT), json.dumps(NAMES), str(bench_dir), str(fp)])


def big_filter(items: int, fp: float, tmp: Path) -> None:
    import numpy as np
    from rbloom import Bloom

    t = time.process_time()
    big = Bloom(items, fp, hash_func=int)
    rng = np.random.default_rng(0)
    for lo in range(0, items, 1 << 22):
        big.update(rng.integers(0, 2**63, size=min(1 << 22, items - lo), dtype=np.int64).tolist())
    build = time.process_time() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    big.save(str(tmp / "big.bloom"))
    probe = rng.integers(0, 2**63, size=2_000_000, dtype=np.int64).tolist()
    t = time.process_time()
    sum(map(big.__contains__, probe))
    rate = len(probe) / (time.process_time() - t)
    print(f"filter of {items:,} random hashes at fp {fp:g} (a Wikipedia filter's size): built in {build:.1f} CPU-s "
          f"({items / build / 1e6:.2f} M inserts/s); {big.size_in_bits / 8 / 2**20:,.0f} MiB of bits; process peak RSS "
          f"{peak:,.0f} MiB; rbloom lookups {rate / 1e6:.2f} M/s (cache misses)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--copies", type=int, default=120, help="copies of the 990 pages' text in the timed corpus")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    ap.add_argument("--items", type=int, default=0, help="also build an rbloom filter of this many items")
    ap.add_argument("--fp", type=float, default=1e-8)
    args = ap.parse_args()
    bench_dir = args.data / "benchmarks"
    texts = corpus(args.data)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        docs = write(tmp / "src" / "main", texts, args.copies, args.data)
        write(tmp / "src" / "tiny", texts[:20], 1, args.data)
        src = tmp / "src" / "main"
        print(f"decontaminate benchmark: {len(texts):,} real pages' text ({mb:.1f} MB) x {args.copies} = {docs:,} "
              f"documents in {len(list(src.glob('*.parquet')))} dedup shards, 1 in 50 with a LAMBADA passage; "
              f"benchmarks {', '.join(NAMES)}")
        floor, rates = [], {1: [], cores: []}
        for rnd in range(args.repeats):
            out, _ = child([FLOOR, str(src), str(ROOT), json.dumps(NAMES), str(bench_dir), str(args.fp)])
            lookups = out["lookups"]
            floor.append(lookups / out["loop_cpu"])
            for w in rates:
                res, cpu = stage(src, tmp / "work", w, bench_dir, args.fp)
                assert res["lookups"] == lookups, (res, out)         # the same n-grams
                rates[w].append(lookups / cpu)
            print(f"  round {rnd + 1}: floor {floor[-1] / 1e6:.2f}M/s, "
                  + ", ".join(f"{w} worker(s) {rates[w][-1] / 1e6:.2f}M/s" for w in rates), flush=True)
        _, fixed = stage(tmp / "src" / "tiny", tmp / "work", 1, bench_dir, args.fp)
        print(f"  {lookups:,} 13-grams ({out['found']:,} in the floor's filter); {res['in']:,} documents in, "
              f"{res['out']:,} out")
        print(f"  median (range) of {args.repeats} interleaved rounds, M n-grams per CPU-second of the process tree:")
        print(f"  floor: rbloom lookups alone (hashes given)        {fmt(floor)}")
        for w in rates:
            ratio = [s / f for s, f in zip(rates[w], floor)]
            print(f"  webtext decontaminate, {w} worker(s), end to end {fmt(rates[w])} = "
                  f"{statistics.median(ratio):.2f}x the floor ({min(ratio):.2f}-{max(ratio):.2f}x)"
                  + ("   target >= 0.7x" if w == 1 else ""))
        one = statistics.median(rates[1])
        print(f"  fixed cost (same stage, one 20-document shard: filters built and probed, start-up): {fixed:.2f} "
              f"CPU-s = {100 * fixed / (lookups / one):.0f}% of the 1-worker run")
        if args.items:
            big_filter(args.items, args.fp, tmp)


if __name__ == "__main__":
    main()

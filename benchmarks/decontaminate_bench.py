"""Decontamination speed: n-gram lookups per second per core, text in to verdict out, and
the Bloom filter's build time and memory at 100M n-grams.

    python benchmarks/decontaminate_bench.py [--items 100000000] [--fp 1e-8]

1. **Scan**: webtext's scan task (``decontaminate.scan_shard``: numpy n-gram hashing,
   one Bloom lookup per n-gram, hits confirmed against the exact hash sets) over real
   text (trafilatura on the 990 evaluation pages, repeated to 2 docs shards' worth),
   against the real benchmark filters (LAMBADA, WikiText-2, PTB, WSC273). Baselines in
   the same process: the bare rbloom lookup loop over precomputed hashes (the floor), and
   the per-n-gram Python path (join words, xxh3, lookup).
2. **Filter at scale**: build an rbloom filter of ``--items`` random n-gram hashes at
   ``--fp``; build time, its size, peak RSS; then lookups per second against it, and the
   same scan against it (a filter this big misses the CPU caches on every lookup).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main() -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import trafilatura
    import xxhash
    from rbloom import Bloom

    from extract_quality import load
    from pipeline.executor import Task
    from stages import decontaminate as D
    from stages.benchmarks import load_registry, resolve
    from stages.ngrams import word_ngrams, words

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--items", type=int, default=100_000_000)
    ap.add_argument("--fp", type=float, default=1e-8)
    args = ap.parse_args()
    bench_dir = args.data / "benchmarks"
    texts = [t for _, html, _ in [(u, h, x) for u, h, x in load(args.data / "extraction" / "trafilatura-eval" / "tests")]
             for t in [trafilatura.extract(html, fast=True, include_comments=False)] if t]
    texts = (texts * 4)[:3000]
    mb = sum(len(t.encode()) for t in texts) / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        reg = load_registry()
        names = ["lambada", "wikitext2", "ptb", "wsc273"]
        npys = []
        t0 = time.process_time()
        for name in names:
            b = resolve(name, str(bench_dir), reg)
            out = [tmp / f"{name}.ngrams.npy", tmp / f"{name}.bloom"]
            D.build_filter(Task("filters", name, None, [b.path], out,
                                {"ngram": 13, "fp_rate": args.fp, "name": name, "format": b.format, "field": b.field}))
            npys.append(out[0])
        D.build_union(Task("union", "all", None, npys, [tmp / "any.bloom"], {"fp_rate": args.fp}))
        build_s = time.process_time() - t0
        shard = tmp / "dedup-00000.parquet"
        pq.write_table(pa.table({"text": texts}), shard)

        def scan(any_bloom: Path) -> tuple[float, int]:
            task = Task("scan", "00000", None, [shard, any_bloom, *npys],
                        [tmp / "hits.parquet", tmp / "wiki.parquet"],
                        {"ngram": 13, "names": names, "wikipedia": False, "sample": 1})
            t = time.process_time()
            st = D.scan_shard(task)
            return time.process_time() - t, st.info["ngram_lookups"]

        secs, lookups = scan(tmp / "any.bloom")
        hashes = word_ngrams(texts, 13).hashes.tolist()
        bloom = Bloom.load(str(tmp / "any.bloom"), int)
        t = time.process_time()
        sum(map(bloom.__contains__, hashes))
        floor = len(hashes) / (time.process_time() - t)
        few = texts[:300]
        t = time.process_time()
        n_py = 0
        for x in few:
            ws = words(x)
            for i in range(len(ws) - 12):
                n_py += 1
                _ = xxhash.xxh3_64_intdigest(" ".join(ws[i:i + 13]).encode()) in bloom
        python = n_py / (time.process_time() - t)
        print(f"decontaminate scan: {len(texts):,} real documents, {mb:.1f} MB, {lookups:,} 13-grams; "
              f"4 real benchmarks ({sum(len(np.load(f)) for f in npys):,} n-grams, filters built in {build_s:.1f} s)")
        print(f"  webtext scan (text in, verdict out)    {lookups / secs / 1e6:6.2f} M n-grams/s per core   "
              f"{mb / secs:6.1f} MB/s   target >= 2M/s")
        print(f"  rbloom lookups alone (hashes given)    {floor / 1e6:6.2f} M/s   webtext = {lookups / secs / floor:.2f}x")
        print(f"  per-n-gram Python (join, xxh3, look)   {python / 1e6:6.2f} M/s   webtext = {lookups / secs / python:.1f}x")

        if args.items:
            t = time.perf_counter()
            big = Bloom(args.items, args.fp, hash_func=int)
            rng = np.random.default_rng(0)
            for lo in range(0, args.items, 1 << 22):
                big.update(rng.integers(0, 2**63, size=min(1 << 22, args.items - lo), dtype=np.int64).tolist())
            build = time.perf_counter() - t
            filter_mib = big.size_in_bits / 8 / 2**20
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            big.save(str(tmp / "big.bloom"))
            del big
            t = time.process_time()
            big = Bloom.load(str(tmp / "big.bloom"), int)
            load = time.process_time() - t
            probe = hashes[:2_000_000]
            t = time.process_time()
            sum(map(big.__contains__, probe))
            big_rate = len(probe) / (time.process_time() - t)
            del big
            secs_big, lookups_big = scan(tmp / "big.bloom")
            print(f"filter of {args.items:,} n-grams at fp {args.fp:g}: built in {build:.1f} s "
                  f"({args.items / build / 1e6:.2f} M inserts/s, random hashes generated in the loop); "
                  f"{filter_mib:,.0f} MiB of bits; process peak RSS {peak:,.0f} MiB; loads in {load:.2f} s")
            print(f"  rbloom lookups alone                    {big_rate / 1e6:6.2f} M/s")
            print(f"  webtext scan against it                 {lookups_big / secs_big / 1e6:6.2f} M n-grams/s per core "
                  f"({lookups_big / max(secs_big - load, 1e-9) / 1e6:.2f} M/s without the {load:.2f} s load, "
                  f"which a scan task pays once per shard)")


if __name__ == "__main__":
    main()

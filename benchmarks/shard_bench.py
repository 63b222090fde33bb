"""Shard speed against its floor: tokens per CPU-second of the whole process tree, end to
end (``shard.run``: Parquet in, Arrow shards and manifest out, process start-up included),
against tiktoken's per-text ``encode_ordinary`` loop over the same texts, interleaved.

    python benchmarks/shard_bench.py [--repeat 10] [--repeats 3]

Text: real articles (the Wikipedia excerpt in ../shared, markup stripped), LAMBADA passages
and WikiText-2, written as clean shards of 500 documents, ``--repeat`` times over (doc ids
differ, so each copy is shuffled on its own).

Each round runs, each in its own fresh process, on identical input:
- the floor: read the texts, load the encoding, then ``for t in texts: encode_ordinary(t)``;
  the floor's rate is the loop's own CPU time (process_time around the loop only), and
  the whole process's CPU is printed beside it;
- ``webtext shard`` with ``--workers 1`` and with ``--workers N`` (every core), each on a
  fresh copy of the clean shards.
CPU is ``getrusage(RUSAGE_CHILDREN)`` after each process exits (pool workers included).
The fixed cost (the same stage run on one 20-document shard) is printed as a share of the
run. Then the driver's peak anonymous RSS at two corpus sizes, in runs of their own (the
sampler would add CPU to the timed runs).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchcpu import child, fmt  # noqa: E402  (benchmarks/ is on the path)

STAGE = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[3])
peak = [0]
if sys.argv[4] == "rss":
    def sample():      # peak anonymous RSS: VmHWM would count the memory-mapped token parts too
        while True:
            kb = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("RssAnon:"))
            peak[0] = max(peak[0], kb)
            time.sleep(0.005)
    threading.Thread(target=sample, daemon=True).start()
from pathlib import Path
from webtext.pipeline.config import load_config
from webtext.pipeline.executor import Context
from webtext.stages import shard
work, workers = Path(sys.argv[1]), int(sys.argv[2])
ctx = Context(work, load_config(None, {"run": {"workers": workers}, "shard": {"shard_tokens": 2_000_000}}))
st = shard.run(ctx)
ctx.close()
print(json.dumps({"tokens": st["info"]["tokens_train"] + st["info"].get("tokens_val", 0), "rss": peak[0] / 1024}))
"""

FLOOR = r"""
import glob, json, sys, time
sys.path.insert(0, sys.argv[2])
import pyarrow.parquet as pq
from webtext.stages.tokenizer import gpt2_encoding
texts = [t for f in sorted(glob.glob(sys.argv[1] + "/*.parquet"))
         for t in pq.read_table(f, columns=["text"])["text"].to_pylist()]
encode = gpt2_encoding().encode_ordinary
t = time.process_time()
n = 0
for x in texts:
    n += len(encode(x))
print(json.dumps({"tokens": n, "loop_cpu": time.process_time() - t}))
"""


def corpus(data: Path) -> list[str]:
    from webtext.stages import decontaminate as D
    from webtext.stages.benchmarks import load_registry, resolve, segments

    texts = [D.strip_wikitext(m) for _, m in D.wiki_articles(
        data / "wikipedia" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")]
    reg = load_registry()
    texts += list(segments(resolve("lambada", str(data / "benchmarks"), reg)))
    texts += [t for t in segments(resolve("wikitext2-raw", str(data / "benchmarks"), reg)) if t.strip()]
    return [t for t in texts if t.strip()]


def write(clean: Path, texts: list[str], repeat: int) -> None:
    """Clean shards of 500 documents, written as decontaminate writes them (zstd)."""
    from webtext.pipeline.io import write_parquet
    from webtext.pipeline.schemas import CLEAN

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import doc_row, doc_table

    clean.mkdir(parents=True, exist_ok=False)     # a fresh folder per corpus size (--repeat 1 wrote one twice)
    rows = [doc_row(f"r{r}-{i:06d}", t, url=f"http://s{i}.example/{r}") for r in range(repeat) for i, t in enumerate(texts)]
    for k in range(0, len(rows), 500):
        write_parquet(doc_table(rows[k:k + 500]), clean / f"clean-{k // 500:05d}.parquet", CLEAN)


def stage(src: Path, work: Path, workers: int, rss: bool = False) -> tuple[dict, float]:
    """The shard stage on a fresh work directory holding a copy of ``src`` (copied before the clock)."""
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(src, work / "clean")
    return child([STAGE, str(work), str(workers), str(ROOT), "rss" if rss else "-"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=30, help="copies of the text in the timed corpus")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    args = ap.parse_args()
    texts = corpus(args.data)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sizes = sorted({max(1, args.repeat // 3), args.repeat})
        for r in sizes:
            write(tmp / "src" / f"x{r}", texts, r)
        write(tmp / "src" / "tiny", texts[:20], 1)
        main_src = tmp / "src" / f"x{args.repeat}"
        print(f"shard benchmark: {len(texts):,} real documents, {mb:.1f} MB a copy, {args.repeat} copies "
              f"({args.repeat * len(texts):,} documents in {len(list(main_src.glob('*.parquet')))} clean shards)")
        floor, floor_proc, rates = [], [], {1: [], cores: []}
        for rnd in range(args.repeats):
            out, cpu = child([FLOOR, str(main_src), str(ROOT)])
            tokens = out["tokens"]            # every rate counts the same tokens: the texts', no EOT
            floor.append(tokens / out["loop_cpu"])
            floor_proc.append(tokens / cpu)
            for w in rates:
                res, cpu = stage(main_src, tmp / "work", w)
                assert res["tokens"] == tokens + args.repeat * len(texts), "the stage's tokens are the texts' + one EOT each"
                rates[w].append(tokens / cpu)
            print(f"  round {rnd + 1}: floor {floor[-1] / 1e6:.2f}M/s, "
                  + ", ".join(f"{w} worker(s) {rates[w][-1] / 1e6:.2f}M/s" for w in rates), flush=True)
        _, fixed = stage(tmp / "src" / "tiny", tmp / "work", 1)
        one = statistics.median(rates[1])
        print(f"  {tokens:,} tokens in the texts (rates count these; the shards hold one EOT more a document)")
        print(f"  median (range) of {args.repeats} interleaved rounds, M tokens per CPU-second of the process tree:")
        print(f"  floor: encode_ordinary per text, loop CPU only   {fmt(floor)}")
        print(f"  floor process, start-up and Parquet read incl.   {fmt(floor_proc)}")
        for w in rates:
            ratio = [s / f for s, f in zip(rates[w], floor)]
            print(f"  webtext shard, {w} worker(s), end to end          {fmt(rates[w])} = "
                  f"{statistics.median(ratio):.2f}x the floor ({min(ratio):.2f}-{max(ratio):.2f}x)"
                  + ("   target >= 0.8x" if w == 1 else ""))
        print(f"  fixed cost (same stage, one 20-document shard): {fixed:.2f} CPU-s = "
              f"{100 * fixed / (tokens / one):.0f}% of the 1-worker run")
        for r in sizes:
            res, _ = stage(tmp / "src" / f"x{r}", tmp / "work", 1, rss=True)
            print(f"  {r}x corpus, 1 worker: {res['tokens']:>11,} tokens; peak anonymous RSS of the driver "
                  f"{res['rss']:6,.0f} MiB")


if __name__ == "__main__":
    main()

"""Shard speed: tokens/s per core end to end (Parquet in, Arrow out) against bare tiktoken
``encode_ordinary_batch`` on the same text in the same run; scaling to every core; and
peak memory at three corpus sizes (1x, R x and 3R x the text).

    python benchmarks/shard_bench.py [--repeat 3]

Text: real articles (the Wikipedia excerpt in ../shared, markup stripped), LAMBADA passages
and WikiText-2, written as clean shards of 500 documents, ``--repeat`` times over (doc ids
differ, so each copy is shuffled on its own).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

RUN = r"""
import json, sys, threading, time
sys.path.insert(0, sys.argv[3])
peak = [0]
def sample():      # peak anonymous RSS: VmHWM would count the memory-mapped token parts too
    while True:
        kb = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("RssAnon:"))
        peak[0] = max(peak[0], kb)
        time.sleep(0.005)
threading.Thread(target=sample, daemon=True).start()
from pathlib import Path
from pipeline.config import load_config
from pipeline.executor import Context
from stages import shard
work, workers = Path(sys.argv[1]), int(sys.argv[2])
t, c = time.perf_counter(), time.process_time()
st = shard.run(Context(work, load_config(None, {"run": {"workers": workers}, "shard": {"shard_tokens": 2_000_000}})))
print(json.dumps({"wall": time.perf_counter() - t, "tokens": st["info"]["tokens_train"] + st["info"].get("tokens_val", 0),
                  "rss": peak[0] / 1024}))
"""


def corpus(data: Path) -> list[str]:
    from stages import decontaminate as D
    from stages.benchmarks import load_registry, resolve, segments

    texts = [D.strip_wikitext(m) for _, m in D.wiki_articles(
        data / "wikipedia" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")]
    reg = load_registry()
    texts += list(segments(resolve("lambada", str(data / "benchmarks"), reg)))
    texts += [t for t in segments(resolve("wikitext2-raw", str(data / "benchmarks"), reg)) if t.strip()]
    return [t for t in texts if t.strip()]


def write(work: Path, texts: list[str], repeat: int) -> None:
    import pyarrow.parquet as pq

    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import doc_row, doc_table

    (work / "clean").mkdir(parents=True)
    rows = [doc_row(f"r{r}-{i:06d}", t, url=f"http://s{i}.example/{r}") for r in range(repeat) for i, t in enumerate(texts)]
    for k in range(0, len(rows), 500):
        pq.write_table(doc_table(rows[k:k + 500]), work / "clean" / f"clean-{k // 500:05d}.parquet")


def main() -> None:
    from stages.tokenizer import gpt2_encoding

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    texts = corpus(args.data)
    mb = sum(len(t.encode()) for t in texts) / 1e6
    enc = gpt2_encoding()
    enc.encode_ordinary_batch(texts[:10], num_threads=1)
    t = time.process_time()
    n = sum(map(len, enc.encode_ordinary_batch(texts, num_threads=1)))
    bare = n / (time.process_time() - t)
    t = time.process_time()
    for x in texts:
        enc.encode_ordinary(x)
    loop = n / (time.process_time() - t)
    print(f"shard benchmark: {len(texts):,} real documents, {mb:.1f} MB, {n:,} GPT-2 tokens per copy")
    print(f"  bare tiktoken encode_ordinary_batch, 1 thread   {bare / 1e6:6.2f} M tokens/s per core")
    print(f"  bare tiktoken encode_ordinary, one call a text  {loop / 1e6:6.2f} M tokens/s per core")
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for repeat in (1, args.repeat, 3 * args.repeat):
            for workers in (1, os.cpu_count() or 1) if repeat != 3 * args.repeat else (1,):
                work = Path(tmp) / f"r{repeat}-w{workers}"
                write(work, texts, repeat)
                r = subprocess.run([sys.executable, "-c", RUN, str(work), str(workers), str(ROOT)],
                                   capture_output=True, text=True)
                if r.returncode:
                    raise SystemExit(r.stderr[-3000:])
                results[(repeat, workers)] = json.loads(r.stdout.strip().splitlines()[-1])
        one = results[(args.repeat, 1)]
        rate = one["tokens"] / one["wall"]
        print(f"  webtext shard, 1 worker (Parquet in, Arrow out) {rate / 1e6:6.2f} M tokens/s = "
              f"{rate / bare:.2f}x encode_ordinary_batch (target >= 0.9x), {rate / loop:.2f}x the per-text loop")
        for (repeat, workers), r in sorted(results.items()):
            print(f"  {repeat}x corpus, {workers} worker(s): {r['tokens']:>11,} tokens in {r['wall']:6.1f} s = "
                  f"{r['tokens'] / r['wall'] / 1e6:5.2f} M tokens/s; peak anonymous RSS of the driver {r['rss']:6,.0f} MiB")


if __name__ == "__main__":
    main()

"""Dedup end to end against its signature floor, quality on a labelled near-duplicate
set, signature speed, and clustering memory.

    python benchmarks/dedup_bench.py [--docs 200000] [--repeats 3] [--synthetic 1000000]
                                     [--data ../shared/data/extraction/trafilatura-eval/tests]

1. **End to end**, MB of document text per CPU-second of the whole process tree
   (``RUSAGE_CHILDREN`` of each reaped child: the CLI, its pool workers), start-up
   included: ``webtext dedup`` with the default exact verification, ``--workers 1`` and
   ``--workers 2``, on N documents built from the labelled set's real texts (2-12 of
   their paragraphs each; 10% near copies of an earlier document with 3% of words
   changed, 3% exact copies; 8 docs shards), against the floor on the same shards: a
   process that reads each shard's text and computes the stage's own signatures
   (``dedup_sign.minhashes``) and nothing else. Interleaved, ``--repeats`` times; median
   and range. The stage's fixed cost: the CPU of the whole tree on a 50-document shard.
   The two worker counts must write the same bytes (checked).
2. **Quality.** Real texts (trafilatura on the evaluation pages), each with four edited
   variants: 10% of lines dropped, 3% of words changed, boilerplate lines added, and the
   last 15% truncated. The exact Jaccard of word 5-gram shingles is computed for every
   pair that shares a shingle (an inverted index; other pairs have J = 0). Reports
   recall of pairs with J >= 0.8 and >= 0.9 (caught: at most one of the two survives)
   and precision (each removed document has J >= 0.8 with the one kept for it, its
   ``duplicate_of``). ``--set verify=estimate --set lsh_threshold=0.8`` gives the
   estimate-only setting for comparison.
3. **Signature speed**, MB/s of text per CPU-second: webtext's path (shingles hashed
   with numpy a batch at a time, then datasketch's permutations with numpy) against
   datasketch's bulk path on bytes shingles with xxh32, and its default per-shingle
   ``update()`` with SHA-1, in this process.
4. **Clustering memory** on N synthetic documents (random signatures with planted
   duplicate groups): time and peak RSS of each phase after signatures, each in a fresh
   process. Synthetic documents have no text, so their candidates are verified by
   estimate.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def variants(text: str, rng: random.Random) -> list[str]:
    lines = text.split("\n")
    ws = text.split()
    dropped = "\n".join(ln for i, ln in enumerate(lines) if i % 10 != 3) if len(lines) >= 10 else \
        " ".join(w for i, w in enumerate(ws) if i % 10 != 3)
    changed = list(ws)
    for i in rng.sample(range(len(ws)), max(1, len(ws) * 3 // 100)):
        changed[i] = f"w{rng.randint(0, 10**6)}"
    boiler = text + "\n" + "\n".join(["Subscribe to our newsletter", "Share this article on social media",
                                      "Related stories", "Copyright 2019 All rights reserved",
                                      "Cookie settings and privacy policy"])
    truncated = " ".join(ws[: int(len(ws) * 0.85)])
    return [dropped, " ".join(changed), boiler, truncated]


def labelled_set(data: Path) -> list[str]:
    import trafilatura

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from extract_quality import load

    rng = random.Random(0)
    docs = []
    for url, html, _ in load(data):
        text = trafilatura.extract(html, url=url, fast=True, include_comments=False)
        if text and len(text.split()) >= 150:
            docs.append(text)
            docs += variants(text, rng)
    return docs


def corpus(texts: list[str], n: int, out: Path, shards: int = 8, seed: int = 0) -> float:
    """``n`` documents from the real texts' paragraphs -> ``out/docs-NNNNN.parquet``;
    returns the MB of text. 10% are near copies of an earlier document (3% of words
    changed), 3% exact copies; the rest are 2-12 random paragraphs."""
    import pyarrow.parquet as pq

    from tests.conftest import doc_row, doc_table

    rng = random.Random(seed)
    paras = [ln for t in texts[::5] for ln in t.split("\n") if len(ln.split()) >= 8]   # originals only
    docs: list[str] = []
    for _ in range(n):
        r = rng.random()
        if docs and r < 0.03:
            text = docs[rng.randrange(len(docs))]
        elif docs and r < 0.13:
            ws = docs[rng.randrange(len(docs))].split()
            for k in rng.sample(range(len(ws)), max(1, len(ws) * 3 // 100)):
                ws[k] = f"w{rng.randint(0, 10**6)}"
            text = " ".join(ws)
        else:
            text = "\n".join(rng.choice(paras) for _ in range(rng.randint(2, 12)))
        docs.append(text)
    out.mkdir(parents=True, exist_ok=True)
    for s in range(shards):
        rows = [doc_row(f"d{i:07d}", docs[i], karma=rng.randint(1, 500)) for i in range(s, n, shards)]
        pq.write_table(doc_table(rows), out / f"docs-{s:05d}.parquet")
    return sum(len(d.encode()) for d in docs) / 1e6


FLOOR = r"""
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[2])
import pyarrow.parquet as pq
from webtext.stages.dedup_sign import minhashes
for f in sorted(Path(sys.argv[1]).glob("docs-*.parquet")):
    minhashes(pq.read_table(f, columns=["text"])["text"].combine_chunks(),
              {"num_perm": 128, "seed": 1, "shingle_words": 5})
"""


def tree_cpu(cmd: list[str]) -> float:
    """CPU-seconds (user + system) of ``cmd`` and every descendant it reaped."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    r = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if r.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{r.stderr[-3000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def stage_cpu(docs: Path, work: Path, workers: int) -> float:
    """``webtext dedup`` on a fresh work directory whose docs/ links to ``docs``' shards."""
    shutil.rmtree(work, ignore_errors=True)
    (work / "docs").mkdir(parents=True)
    for f in sorted(docs.glob("docs-*.parquet")):
        (work / "docs" / f.name).symlink_to(f)
    webtext = str(Path(sys.executable).with_name("webtext"))
    return tree_cpu([webtext, "--workdir", str(work), "--workers", str(workers), "dedup"])


def end_to_end(texts: list[str], n: int, repeats: int, tmp: Path) -> None:
    docs, tiny = tmp / "e2e-docs", tmp / "e2e-tiny"
    mb = corpus(texts, n, docs)
    corpus(texts, 50, tiny, shards=1)
    runs: dict[str, list[float]] = {"floor": [], "workers 1": [], "workers 2": [], "fixed 1": [], "fixed 2": []}
    for _ in range(repeats):          # interleaved: a load change on the machine hits every variant alike
        runs["floor"].append(tree_cpu([sys.executable, "-c", FLOOR, str(docs), str(ROOT)]))
        for w in (1, 2):
            runs[f"workers {w}"].append(stage_cpu(docs, tmp / f"e2e-w{w}", w))
            runs[f"fixed {w}"].append(stage_cpu(tiny, tmp / f"e2e-tiny-w{w}", w))
    same = all(filecmp.cmp(a, tmp / "e2e-w2" / "dedup" / a.name, shallow=False)
               for a in sorted((tmp / "e2e-w1" / "dedup").glob("dedup-*.parquet")) + [tmp / "e2e-w1" / "dedup" / "_clusters.parquet"])
    med = lambda xs: statistics.median(xs)                                          # noqa: E731
    rate = lambda xs: (mb / med(xs), mb / max(xs), mb / min(xs))                  # noqa: E731
    print(f"dedup end to end: {n:,} documents, {mb:.1f} MB of text in 8 shards; CPU-s of the whole process tree, "
          f"start-up included; {repeats} interleaved repeats, median (range)")
    f_mid, f_lo, f_hi = rate(runs["floor"])
    print(f"  signature floor (read text, minhashes)  {f_mid:6.2f} MB/CPU-s ({f_lo:.2f}-{f_hi:.2f})   "
          f"{med(runs['floor']):6.1f} CPU-s")
    for w in (1, 2):
        xs, fixed = runs[f"workers {w}"], med(runs[f"fixed {w}"])
        mid, lo, hi = rate(xs)
        ratios = sorted(x / f for x, f in zip(runs["floor"], xs))
        print(f"  webtext dedup --workers {w}              {mid:6.2f} MB/CPU-s ({lo:.2f}-{hi:.2f})   {med(xs):6.1f} CPU-s"
              f" = {statistics.median(ratios):.2f}x the floor ({ratios[0]:.2f}-{ratios[-1]:.2f}x); "
              f"fixed cost (50 documents) {fixed:.1f} CPU-s; at the margin {mb / (med(xs) - fixed):.2f} MB/CPU-s")
    print(f"  --workers 1 and 2 wrote the same bytes: {same}")


def exact_pairs(texts: list[str], max_df: int = 200) -> dict[tuple[int, int], float]:
    """Exact Jaccard of every pair sharing a shingle (shingles in more than ``max_df``
    documents are not used to find pairs; such pairs share little else)."""
    from webtext.stages.ngrams import doc_shingles

    sets = [set(doc_shingles(t, 5)) for t in texts]
    index = defaultdict(list)
    for i, s in enumerate(sets):
        for sh in s:
            index[sh].append(i)
    cand = set()
    for docs in index.values():
        if 1 < len(docs) <= max_df:
            cand.update((a, b) for k, a in enumerate(docs) for b in docs[k + 1:])
    return {(a, b): len(sets[a] & sets[b]) / len(sets[a] | sets[b]) for a, b in cand}


def quality(texts: list[str], tmp: Path, dedup_cfg: dict) -> dict:
    import pyarrow.parquet as pq

    from webtext.pipeline.config import load_config
    from webtext.pipeline.executor import Context
    from webtext.stages import dedup
    from tests.conftest import doc_row, doc_table

    rows = [doc_row(f"d{i:06d}", t) for i, t in enumerate(texts)]
    (tmp / "docs").mkdir(parents=True)
    for s in range(4):
        pq.write_table(doc_table(rows[s::4]), tmp / "docs" / f"docs-{s:05d}.parquet")
    t = time.perf_counter()
    stats = dedup.run(Context(tmp, load_config(None, {"run": {"workers": 1}, "dedup": dedup_cfg})))
    took = time.perf_counter() - t
    clusters = pq.read_table(tmp / "dedup" / "_clusters.parquet").to_pylist()
    removed = {int(r["doc_id"][1:]): int(r["duplicate_of"][1:]) for r in clusters if not r["kept"]}
    truth = exact_pairs(texts)
    out = {}
    for th in (0.8, 0.9):    # a duplicate pair is caught when at most one of the two survives
        pos = [p for p, j in truth.items() if j >= th]
        out[f"recall@{th}"] = (sum(a in removed or b in removed for a, b in pos) / max(len(pos), 1), len(pos))
    jac = lambda a, b: truth.get((min(a, b), max(a, b)), 0.0)                       # noqa: E731
    out["precision"] = (sum(jac(d, k) >= 0.8 for d, k in removed.items()) / max(len(removed), 1), len(removed))
    return out, took, stats["info"]


def signature_speed(texts: list[str]) -> dict:
    """MB/s of text per CPU-second: webtext's signatures, datasketch's bulk fast path on
    bytes shingles with xxh32, and datasketch's default per-shingle update() (SHA-1)."""
    import pyarrow as pa
    import xxhash
    from datasketch import MinHash

    from webtext.stages.dedup import minhashes
    from webtext.stages.ngrams import doc_shingles

    mb = lambda xs: sum(len(x.encode()) for x in xs) / 1e6                         # noqa: E731
    minhashes(pa.array(texts[:50]), {"num_perm": 128, "seed": 1, "shingle_words": 5})   # warm the tables
    out = {}
    t = time.process_time()
    minhashes(pa.array(texts), {"num_perm": 128, "seed": 1, "shingle_words": 5})
    out["webtext"] = mb(texts) / (time.process_time() - t)
    t = time.process_time()
    MinHash.bulk([doc_shingles(x, 5) for x in texts], num_perm=128, seed=1, hashfunc=xxhash.xxh32_intdigest,
                 scheme="affine32")
    out["datasketch bulk + xxh32"] = mb(texts) / (time.process_time() - t)
    few = texts[: max(1, len(texts) // 10)]
    t = time.process_time()
    for x in few:
        m = MinHash(num_perm=128)
        for s in doc_shingles(x, 5):
            m.update(s)
    out["datasketch update()"] = mb(few) / (time.process_time() - t)
    return out


SYNTH = r"""
import sys, numpy as np, pyarrow as pa, pyarrow.parquet as pq
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from webtext.pipeline.schemas import SIGNATURES
n, out = int(sys.argv[1]), Path(sys.argv[2])
rng = np.random.default_rng(0)
per = 100_000
for s in range(0, n, per):
    m = min(per, n - s)
    sig = rng.integers(0, 2**32, size=(m, 128), dtype=np.uint32)
    dup = rng.random(m) < 0.1                      # 10% near copies of the previous document
    src = np.maximum(np.arange(m) - 1, 0)
    keep_cols = rng.random((m, 128)) < 0.9         # ~90% of values shared: estimated J ~0.9
    sig[dup] = np.where(keep_cols[dup], sig[src[dup]], sig[dup])
    ids = [f"{s + i:016x}" for i in range(m)]
    t = pa.table({"doc_id": ids, "karma": np.ones(m, np.int64), "first_seen": np.arange(m, dtype=np.int64),
                  "text_hash": [rng.bytes(16).hex() for _ in range(m)],
                  "minhash": pa.FixedSizeListArray.from_arrays(pa.array(sig.reshape(-1)), 128).cast(pa.list_(pa.uint32()))})
    pq.write_table(t.cast(SIGNATURES), out / f"sig-{s // per:05d}.parquet")
"""

PHASE = r"""
import json, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from webtext.pipeline.executor import Task
from webtext.stages import dedup
from webtext.stages.dedup_sign import lsh_params
from webtext.pipeline.config import DedupConfig
phase, d = sys.argv[1], Path(sys.argv[2])
sigs = sorted((d / "_signatures").glob("sig-*.parquet"))
shards = [int(f.stem.split("-")[1]) for f in sigs]
cfg = DedupConfig()
bands, rows = lsh_params(cfg.lsh_threshold, cfg.num_perm)
P, bp = 16, {"num_perm": 128, "shingle_words": 5, "bands": bands, "rows": rows, "partitions": 16,
             "max_bucket_pairs": 32, "threshold": 0.8, "verify": "estimate"}
cands = [d / "_candidates" / f"cand-{s:05d}.parquet" for s in shards]
t = time.perf_counter()
if phase == "bands":
    for f in sigs:
        s = f.stem.split("-")[1]
        dedup.band_shard(Task("bands", s, None, [f], [d / "_bands" / s / f"part-{i:03d}.parquet" for i in range(P)], bp))
elif phase == "pairs":
    for i in range(P):
        files = sorted((d / "_bands").glob(f"*/part-{i:03d}.parquet"))
        dedup.pairs_partition(Task("pairs", str(i), None, files, [d / "_pairs" / f"pairs-{i:03d}.parquet",
                                                                  d / "_pairs" / f"keys-{i:03d}.parquet"], bp))
elif phase == "candidates":      # synthetic documents have no text: verify = estimate reads none
    keys = sorted((d / "_pairs").glob("keys-*.parquet"))
    for f, c in zip(sigs, cands):
        dedup.candidates_shard(Task("candidates", c.stem, None, keys + [f, f], [c], bp))
elif phase == "verify":
    pairs = sorted((d / "_pairs").glob("pairs-*.parquet"))
    for i in range(P):
        dedup.verify_partition(Task("verify", f"{i:03d}", None, pairs + cands, [d / "_verified" / f"verified-{i:03d}.parquet"],
                                    {**bp, "n_pair_files": len(pairs)}))
elif phase == "components":
    ver = sorted((d / "_verified").glob("verified-*.parquet"))
    st = dedup.components(Task("components", "all", None, ver, [d / "_components" / f"edges-{i:03d}.parquet" for i in range(P)], bp))
    print(json.dumps(st.info), file=sys.stderr)
elif phase == "resolve":
    for i in range(P):
        dedup.resolve(Task("resolve", f"{i:03d}", None, [d / "_components" / f"edges-{i:03d}.parquet"] + cands,
                           [d / "_resolved" / f"resolved-{i:03d}.parquet"],
                           {**bp, "keep": "witness", "replace_existing": False, "drop_shards": shards}))
else:
    res = sorted((d / "_resolved").glob("resolved-*.parquet"))
    outs = [d / "_clusters.parquet"] + [d / "_drops" / f"drops-{s:05d}.parquet" for s in shards]
    st = dedup.merge_clusters(Task("cluster", "all", None, res, outs, {**bp, "drop_shards": shards}))
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork + exec.
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:"))
print(json.dumps({"secs": time.perf_counter() - t, "rss": hwm / 1024}))
"""


PHASES = ("bands", "pairs", "candidates", "verify", "components", "resolve", "cluster")


def clustering_memory(n: int, tmp: Path) -> dict:
    d = tmp / "synthetic"
    (d / "_signatures").mkdir(parents=True)
    subprocess.run([sys.executable, "-c", SYNTH, str(n), str(d / "_signatures"), str(ROOT)], check=True)
    out = {}
    for phase in PHASES:
        r = subprocess.run([sys.executable, "-c", PHASE, phase, str(d), str(ROOT)], capture_output=True, text=True)
        if r.returncode:
            raise SystemExit(r.stderr[-3000:])
        out[phase] = json.loads(r.stdout.strip().splitlines()[-1])
        if phase == "components":
            out["info"] = json.loads(r.stderr.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "extraction" / "trafilatura-eval" / "tests")
    ap.add_argument("--synthetic", type=int, default=1_000_000)
    ap.add_argument("--docs", type=int, default=200_000, help="documents for the end-to-end run (0: skip it)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a [dedup] setting for the quality run, e.g. verify=estimate (repeatable)")
    args = ap.parse_args()
    dedup_cfg = {}
    for kv in args.set:
        k, v = kv.split("=", 1)
        dedup_cfg[k] = json.loads(v) if v[:1].isdigit() or v in ("true", "false") else v
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.data.exists():
            texts = labelled_set(args.data)
            if args.docs:
                end_to_end(texts, args.docs, args.repeats, tmp)
            q, took, info = quality(texts, tmp / "q", dedup_cfg)
            speed = signature_speed(texts)
            print(f"dedup quality: {len(texts):,} documents ({len(texts) // 5:,} real texts x 5: original + 4 edited)")
            print(f"  settings: {dedup_cfg or 'defaults'}; whole dedup run {took:.1f} s, one worker; "
                  f"{info['lsh_bands']} x {info['lsh_rows']} bands, {info['lsh_candidate_pairs']:,} candidate pairs, "
                  f"{info['lsh_verified_pairs']:,} verified")
            for k, (v, n) in q.items():
                print(f"  {k:12} {v:.4f}  (over {n:,} pairs with that exact Jaccard)" if "recall" in k else
                      f"  {k:12} {v:.4f}  (over {n:,} removed documents: exact J >= 0.8 with the one kept for it)")
            print("signatures alone, MB of text per CPU-second, in this process:")
            for k, v in speed.items():
                print(f"  {k:26} {v:6.2f}   webtext = {speed['webtext'] / v:.1f}x")
        if not args.synthetic:
            return
        m = clustering_memory(args.synthetic, tmp)
        print(f"clustering {args.synthetic:,} synthetic documents (10% planted near copies), one process per phase:")
        for phase in PHASES:
            print(f"  {phase:10} {m[phase]['secs']:7.1f} s   peak RSS {m[phase]['rss']:7,.0f} MiB")
        print(f"  cluster stats: {m['info']}")


if __name__ == "__main__":
    main()

"""dedup: ``docs/`` -> ``dedup/`` (exact and MinHash near-duplicates removed).

Phases:
1. *signatures*, one task per docs shard -> ``dedup/_signatures/sig-NNNNN.parquet``:
   xxh128 of the normalized text (lowercase, whitespace collapsed) and a MinHash of word
   5-gram shingles (lowercase, punctuation stripped), 128 permutations, computed with
   datasketch's ``MinHash.bulk`` and an xxh32 hash function. A rerun never re-signs a
   finished shard.
2. *cluster*, one task over all signatures -> ``dedup/_clusters.parquet``: exact-hash
   groups plus datasketch ``MinHashLSH`` candidates (bands and rows from its optimizer
   for the threshold; 0.8 and 128 permutations give 9 bands x 13 rows), verified against
   the estimated Jaccard, joined with union-find. In each cluster the document with the
   highest karma is kept, then the earliest submission, then the smallest doc_id.
3. *filter*, one task per docs shard -> ``dedup/dedup-NNNNN.parquet``.

Drop reasons: exact_duplicate, near_duplicate. Memory: phase 2 holds every signature
(128 x 4 bytes + ids per document) and the LSH index in RAM; the external, partitioned
version is tracked separately.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from datasketch import MinHash, MinHashLSH

from pipeline.config import DedupConfig, to_dict
from pipeline.executor import Context, Task, finish_stage, run_phase
from pipeline.io import require_shards, shard_id, write_parquet
from pipeline.schemas import CLUSTERS, DEDUP, SIGNATURES
from pipeline.stats import Stats

from .ngrams import shingles, words

SCHEME = "affine32"   # datasketch 2's 32-bit scheme: values fit uint32 columns


def text_hash(text: str) -> str:
    return xxhash.xxh128_hexdigest(" ".join(text.lower().split()).encode())


def sign_shard(task: Task) -> Stats:
    (src,) = task.inputs
    (out,) = task.outputs
    p = task.params
    t = pq.read_table(src, columns=["doc_id", "karma", "first_seen", "text"])
    texts = t["text"].to_pylist()
    sets = [shingles(words(x), p["shingle_words"]) or [b""] for x in texts]
    sigs = MinHash.bulk(sets, num_perm=p["num_perm"], seed=p["seed"], hashfunc=xxhash.xxh32_intdigest,
                        scheme=SCHEME)
    flat = np.concatenate([m.hashvalues.astype(np.uint32) for m in sigs]) if sigs else np.empty(0, np.uint32)
    offsets = np.arange(0, len(flat) + 1, p["num_perm"], dtype=np.int32)
    table = pa.table({
        "doc_id": t["doc_id"], "karma": t["karma"], "first_seen": t["first_seen"],
        "text_hash": [text_hash(x) for x in texts],
        "minhash": pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat)),
    })
    write_parquet(table, out, SIGNATURES)
    return Stats(records_in=t.num_rows, records_out=t.num_rows)


class UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        while self.parent[x] != x:
            self.parent[x] = self.parent[self.parent[x]]
            x = self.parent[x]
        return x

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


def cluster(task: Task) -> Stats:
    p = task.params
    t = pa.concat_tables([pq.read_table(f) for f in task.inputs]).sort_by("doc_id") \
        if task.inputs else SIGNATURES.empty_table()
    ids, karma, first = t["doc_id"].to_pylist(), t["karma"].to_pylist(), t["first_seen"].to_pylist()
    hashes = t["text_hash"].to_pylist()
    n = len(ids)
    sig = t["minhash"].combine_chunks().flatten().to_numpy().reshape(n, p["num_perm"]) if n else None
    uf = UnionFind(n)
    first_with_hash: dict[str, int] = {}
    for i, h in enumerate(hashes):
        if h in first_with_hash:
            uf.union(first_with_hash[h], i)
        else:
            first_with_hash[h] = i
    lsh = MinHashLSH(threshold=p["threshold"], num_perm=p["num_perm"])
    candidates = verified = 0
    for i in first_with_hash.values():   # one representative per exact group
        m = MinHash(num_perm=p["num_perm"], seed=p["seed"], hashvalues=sig[i], scheme=SCHEME)
        for j in lsh.query(m):
            candidates += 1
            if not p["verify"] or np.mean(sig[i] == sig[j]) >= p["threshold"]:
                verified += 1
                uf.union(i, j)
        lsh.insert(i, m)
    groups: dict[int, list[int]] = {}
    for i in range(n):
        groups.setdefault(uf.find(i), []).append(i)
    rows = {"doc_id": [], "cluster_id": [], "kept": [], "reason": []}
    stats = Stats(records_in=n)
    for members in groups.values():
        if len(members) == 1:
            continue
        keep = min(members, key=lambda i: (-karma[i], first[i], ids[i]))
        stats.add_info("clusters", 1)
        for i in sorted(members, key=ids.__getitem__):
            reason = None if i == keep else ("exact_duplicate" if hashes[i] == hashes[keep] else "near_duplicate")
            rows["doc_id"].append(ids[i]); rows["cluster_id"].append(ids[keep])
            rows["kept"].append(i == keep); rows["reason"].append(reason)
    stats.records_out = n - sum(1 for k in rows["kept"] if not k)
    stats.add_info("lsh_bands", lsh.b)
    stats.add_info("lsh_rows", lsh.r)
    stats.add_info("lsh_candidate_pairs", candidates)
    stats.add_info("lsh_verified_pairs", verified)
    table = pa.table(rows, schema=CLUSTERS).sort_by([("cluster_id", "ascending"), ("doc_id", "ascending")])
    write_parquet(table, task.outputs[0], CLUSTERS)
    return stats


def filter_shard(task: Task) -> Stats:
    src, clusters = task.inputs
    docs = pq.read_table(src)
    c = pq.read_table(clusters).filter(pc.invert(pc.field("kept")))
    drop = dict(zip(c["doc_id"].to_pylist(), c["reason"].to_pylist()))
    stats = Stats(records_in=docs.num_rows)
    mask = []
    for doc_id in docs["doc_id"].to_pylist():
        reason = drop.get(doc_id)
        if reason:
            stats.drop(reason)
        mask.append(reason is None)
    kept = docs.filter(pa.array(mask, pa.bool_()))
    stats.records_out = kept.num_rows
    write_parquet(kept, task.outputs[0], DEDUP)
    return stats


def run(ctx: Context) -> dict:
    cfg: DedupConfig = ctx.cfg.dedup
    started = time.time()
    inputs = require_shards(ctx.dir("docs"), "docs-*.parquet", "document shards", "extract")
    out = ctx.dir("dedup")
    params = {"num_perm": cfg.num_perm, "shingle_words": cfg.shingle_words, "seed": cfg.seed}
    shard_of = {src: shard_id(src) for src in inputs}
    sig_files = [out / "_signatures" / f"sig-{shard_of[s]}.parquet" for s in inputs]
    signed = run_phase(ctx, out, "signatures", [
        Task("signatures", shard_of[s], sign_shard, [s], [f], params) for s, f in zip(inputs, sig_files)
    ])
    clusters = out / "_clusters.parquet"
    clustered = run_phase(ctx, out, "cluster", [
        Task("cluster", "all", cluster, sig_files, [clusters], {**params, "threshold": cfg.threshold, "verify": True})
    ])
    filtered = run_phase(ctx, out, "filter", [
        Task("filter", shard_of[s], filter_shard, [s, clusters], [out / f"dedup-{shard_of[s]}.parquet"])
        for s in inputs
    ])
    stats = filtered.stats
    stats.info.update(clustered.stats.info)
    ran = signed.ran + clustered.ran + filtered.ran
    skipped = signed.skipped + clustered.skipped + filtered.skipped
    return finish_stage(ctx, "dedup", out, stats, to_dict(cfg), ran, skipped, started)

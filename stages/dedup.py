"""dedup: ``docs/`` -> ``dedup/`` (exact and MinHash near-duplicates removed).

Phases, each resumable per task:
1. *signatures*, one task per docs shard -> ``_signatures/sig-NNNNN.parquet``: xxh128 of
   the normalized text (lowercase, whitespace collapsed) and a MinHash of word 5-gram
   shingles (lowercase, punctuation stripped), 128 permutations, with datasketch's
   ``MinHash.bulk`` and xxh32. A rerun never re-signs a finished shard.
2. *bands*, one task per shard -> ``_bands/NNNNN/part-PPP.parquet``: the persistent LSH
   band index. Bands x rows come from datasketch's optimizer for the threshold (0.8 and
   128 permutations give 9 x 13); each band's values are hashed to 64 bits with numpy.
   One extra band holds the exact-text hash. Rows are split by bucket into
   ``partitions`` files.
3. *pairs*, one task per partition -> ``_pairs/pairs-PPP.parquet``: an external group-by.
   Each task sorts only its partition of every shard's band index and emits the pairs
   of documents sharing a bucket (every pair up to ``max_bucket_pairs`` members, a star
   beyond).
4. *cluster*, one task: candidate pairs verified against the estimated Jaccard
   (``verify``, on by default), reading signatures two shards at a time; union-find
   over the verified and exact pairs. In each cluster the kept document is the one
   already in the corpus (a shard deduplicated by an earlier run, unless
   ``replace_existing``), then the highest karma, the earliest submission, the smallest
   doc_id. Writes ``_clusters.parquet`` (the audit table) and one drop list per shard.
5. *filter*, one task per shard -> ``dedup-NNNNN.parquet``. A shard whose drop list did
   not change is not rewritten.

Incremental: a new docs shard is signed and banded alone; pairs and clusters are
recomputed from the persisted index (a sort, no re-signing).

Memory per task, bounded by configuration (n_shard documents per docs shard, N in
the corpus, P = ``partitions``, B bands): signatures and bands ~ n_shard x (4 x
num_perm + 18 x (B + 1)) bytes; pairs ~ 18 x N x (B + 1) / P bytes; cluster ~ 24 bytes
per candidate pair + two shards' signatures + ~100 bytes per document in a cluster.

Drop reasons: exact_duplicate, near_duplicate.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from datasketch import MinHash

from pipeline.config import DedupConfig, to_dict
from pipeline.executor import Context, Task, finish_stage, run_phase
from pipeline.io import require_shards, shard_id, write_parquet
from pipeline.schemas import BANDS, CLUSTERS, DEDUP, DROPS, PAIRS, SIGNATURES
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


BAND_MIX = np.uint64(0x9E3779B97F4A7C15)


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise over uint64 (wrapping arithmetic)."""
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def band_hashes(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(n, bands) uint64: a 64-bit hash of each band's ``rows`` signature values, vectorized.

    Two documents share a bucket in band b when their values in that band are equal (or,
    with probability 2**-64, when the hashes collide; verification removes those too).
    """
    n = sig.shape[0]
    out = np.empty((n, bands), dtype=np.uint64)
    with np.errstate(over="ignore"):
        for b in range(bands):
            h = np.full(n, np.uint64(b + 1) * BAND_MIX, dtype=np.uint64)
            for v in sig[:, b * rows:(b + 1) * rows].T.astype(np.uint64):
                h = _mix(h ^ v)
            out[:, b] = h
    return out


def doc_keys(shard: str, n: int) -> np.ndarray:
    """Corpus-wide document keys: the shard number in the high 32 bits, the row in the low."""
    if not shard.isdigit():
        raise ValueError(f"dedup needs numbered shards (docs-NNNNN.parquet), not '{shard}'")
    return (np.uint64(int(shard)) << np.uint64(32)) | np.arange(n, dtype=np.uint64)


def band_shard(task: Task) -> Stats:
    """One signature shard -> its rows of the band index, split into ``partitions`` files.

    Rows are (band, bucket hash, document key). Band ``bands`` (one past the last LSH
    band) holds the exact-text hash, so exact duplicates meet in the same index.
    """
    (src,) = task.inputs
    p = task.params
    t = pq.read_table(src, columns=["text_hash", "minhash"])
    n = t.num_rows
    sig = t["minhash"].combine_chunks().flatten().to_numpy().reshape(n, p["num_perm"]) if n else \
        np.empty((0, p["num_perm"]), np.uint32)
    h = band_hashes(sig, p["bands"], p["rows"])
    exact = np.array([int(x[:16], 16) for x in t["text_hash"].to_pylist()], dtype=np.uint64)
    h = np.concatenate([h, exact[:, None]], axis=1)                      # (n, bands + 1)
    keys = np.repeat(doc_keys(shard_id(task.outputs[0].parent), n), p["bands"] + 1)
    band = np.tile(np.arange(p["bands"] + 1, dtype=np.uint16), n)
    flat = h.reshape(-1)
    part = flat % np.uint64(p["partitions"])
    for i, out in enumerate(task.outputs):
        m = part == i
        write_parquet(pa.table({"band": band[m], "bucket": flat[m], "key": keys[m]}, schema=BANDS), out, BANDS)
    return Stats(records_in=n, records_out=n)


def pairs_partition(task: Task) -> Stats:
    """One partition of the band index (every shard's file for it) -> candidate pairs.

    Rows are sorted by (band, bucket); each run of equal keys is a bucket. Buckets of up
    to ``max_bucket_pairs`` members give every pair, larger ones a star around their first
    member (enough for union-find, and it bounds the output). Exact-text buckets are
    marked: they need no verification.
    """
    p = task.params
    t = pa.concat_tables([pq.read_table(f) for f in task.inputs]) if task.inputs else BANDS.empty_table()
    band, bucket, key = (t[c].to_numpy() for c in ("band", "bucket", "key"))
    order = np.lexsort((key, bucket, band))
    band, bucket, key = band[order], bucket[order], key[order]
    new_run = np.ones(len(key), dtype=bool)
    new_run[1:] = (band[1:] != band[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(new_run)
    sizes = np.diff(np.append(starts, len(key)))
    a, b, exact = [], [], []
    small = p["max_bucket_pairs"]
    for s, k in zip(starts[sizes > 1].tolist(), sizes[sizes > 1].tolist()):
        members = key[s:s + k]
        if k <= small:
            i, j = np.triu_indices(k, 1)
            a.append(members[i]), b.append(members[j])
        else:
            a.append(np.full(k - 1, members[0])), b.append(members[1:])
        exact.append(np.full(len(a[-1]), band[s] == p["bands"]))
    cat = (lambda xs, dt: np.concatenate(xs) if xs else np.empty(0, dt))
    table = pa.table({"a": cat(a, np.uint64), "b": cat(b, np.uint64), "exact": cat(exact, bool)}, schema=PAIRS)
    write_parquet(table, task.outputs[0], PAIRS)
    stats = Stats(records_in=t.num_rows, records_out=table.num_rows)
    stats.add_info("buckets_with_duplicates", int((sizes > 1).sum()))
    return stats


class UnionFind:
    """Union-find over arbitrary uint64 keys (only those that appear in some pair)."""

    def __init__(self):
        self.parent: dict[int, int] = {}

    def find(self, x: int) -> int:
        parent = self.parent
        root = x
        while parent.get(root, root) != root:
            root = parent[root]
        while x != root:                        # path compression
            parent[x], x = root, parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


class _SignatureShards:
    """Signature rows by document key, reading at most two shards at a time."""

    def __init__(self, files: dict[int, Path], columns: list[str]):
        self.files, self.columns, self.cache = files, columns, {}

    def table(self, shard: int) -> pa.Table:
        if shard not in self.cache:
            if len(self.cache) >= 2:
                self.cache.pop(next(iter(self.cache)))
            self.cache[shard] = pq.read_table(self.files[shard], columns=self.columns)
        return self.cache[shard]


def _shard_of(keys: np.ndarray) -> np.ndarray:
    return (keys >> np.uint64(32)).astype(np.int64)


def _row_of(keys: np.ndarray) -> np.ndarray:
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


def verify_pairs(a: np.ndarray, b: np.ndarray, files: dict[int, Path], num_perm: int, threshold: float) -> np.ndarray:
    """Which candidate pairs have an estimated Jaccard >= threshold; shard pair by shard pair,
    so at most two shards' signatures are in memory."""
    ok = np.zeros(len(a), dtype=bool)
    sigs = _SignatureShards(files, ["minhash"])
    sa, sb = _shard_of(a), _shard_of(b)
    order = np.lexsort((sb, sa))
    blocks = np.flatnonzero(np.r_[True, (sa[order][1:] != sa[order][:-1]) | (sb[order][1:] != sb[order][:-1])])
    for lo, hi in zip(blocks, np.append(blocks[1:], len(order))):
        idx = order[lo:hi]
        ma = sigs.table(int(sa[idx[0]]))["minhash"]
        rows_a = pc.take(ma, pa.array(_row_of(a[idx]))).combine_chunks().flatten().to_numpy().reshape(-1, num_perm)
        mb = sigs.table(int(sb[idx[0]]))["minhash"]
        rows_b = pc.take(mb, pa.array(_row_of(b[idx]))).combine_chunks().flatten().to_numpy().reshape(-1, num_perm)
        ok[idx] = (rows_a == rows_b).mean(axis=1) >= threshold
    return ok


def cluster(task: Task) -> Stats:
    """Candidate pairs -> verified pairs -> clusters (union-find) -> the cluster table and
    one drop list per shard. Memory: the candidate pairs, two shards' signatures, and the
    union-find over documents that have a duplicate."""
    p = task.params
    n_pairs = len(p["pair_files"])
    pairs = pa.concat_tables([pq.read_table(f) for f in task.inputs[:n_pairs]]) if n_pairs else PAIRS.empty_table()
    files = {int(shard_id(f)): f for f in task.inputs[n_pairs:]}
    a, b, exact = pairs["a"].to_numpy(), pairs["b"].to_numpy(), pairs["exact"].to_numpy(zero_copy_only=False)
    if len(a):   # one row per pair; a pair found in several bands counts once (exact wins)
        u, inverse = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True)
        any_exact = np.zeros(len(u), dtype=bool)
        np.logical_or.at(any_exact, inverse.reshape(-1), exact)
        a, b, exact = u[:, 0], u[:, 1], any_exact
    near = ~exact
    ok = exact.copy()
    if p["verify"] and near.any():
        ok[near] = verify_pairs(a[near], b[near], files, p["num_perm"], p["threshold"])
    elif near.any():
        ok[near] = True
    stats = Stats()
    stats.add_info("lsh_bands", p["bands"])
    stats.add_info("lsh_rows", p["rows"])
    stats.add_info("lsh_candidate_pairs", int(near.sum()))
    stats.add_info("lsh_verified_pairs", int((ok & near).sum()))
    stats.add_info("exact_pairs", int(exact.sum()))
    uf = UnionFind()
    for x, y in zip(a[ok].tolist(), b[ok].tolist()):
        uf.union(x, y)
    members = np.array(sorted(uf.parent.keys() | {uf.find(k) for k in uf.parent}), dtype=np.uint64)
    # What the keep rule needs, for documents in clusters only, shard by shard.
    meta = {c: [] for c in ("doc_id", "karma", "first_seen", "text_hash")}
    shards, rows = _shard_of(members), _row_of(members)
    for s in np.unique(shards).tolist():
        t = pq.read_table(files[s], columns=list(meta))
        t = t.take(pa.array(rows[shards == s]))
        for c in meta:
            meta[c] += t[c].to_pylist()
    info = {int(k): i for i, k in enumerate(members.tolist())}
    groups: dict[int, list[int]] = {}
    for k in members.tolist():
        groups.setdefault(uf.find(k), []).append(k)
    out = {"doc_id": [], "cluster_id": [], "kept": [], "reason": []}
    drops: dict[int, list] = {s: [] for s in files}
    existing = set(task.options.get("existing_shards", ())) if not p["replace_existing"] else set()

    def rank(k: int) -> tuple:
        """Documents already in the corpus first (unless replace_existing), then karma, age, id."""
        i = info[k]
        return (k >> 32) not in existing, -meta["karma"][i], meta["first_seen"][i], meta["doc_id"][i]

    for ks in groups.values():
        keep = min(ks, key=rank)
        stats.add_info("clusters", 1)
        for k in ks:
            i = info[k]
            reason = None if k == keep else \
                ("exact_duplicate" if meta["text_hash"][i] == meta["text_hash"][info[keep]] else "near_duplicate")
            out["doc_id"].append(meta["doc_id"][i]); out["cluster_id"].append(meta["doc_id"][info[keep]])
            out["kept"].append(k == keep); out["reason"].append(reason)
            if reason:
                drops[k >> 32].append((k & 0xFFFFFFFF, reason))
    table = pa.table(out, schema=CLUSTERS).sort_by([("cluster_id", "ascending"), ("doc_id", "ascending")])
    write_parquet(table, task.outputs[0], CLUSTERS)
    for s, path in zip(p["drop_shards"], task.outputs[1:]):
        rows_, reasons = zip(*sorted(drops.get(s, []))) if drops.get(s) else ((), ())
        write_parquet(pa.table({"row": pa.array(rows_, pa.int64()), "reason": pa.array(reasons, pa.string())},
                               schema=DROPS), path, DROPS)
    stats.records_in = stats.records_out = len(members)
    return stats


def filter_shard(task: Task) -> Stats:
    src, drop_file = task.inputs
    docs = pq.read_table(src)
    d = pq.read_table(drop_file)
    mask = np.ones(docs.num_rows, dtype=bool)
    mask[d["row"].to_numpy()] = False
    stats = Stats(records_in=docs.num_rows)
    for reason, count in zip(*np.unique(np.array(d["reason"].to_pylist(), dtype=object), return_counts=True)):
        stats.drop(reason, int(count))
    kept = docs.filter(pa.array(mask))
    stats.records_out = kept.num_rows
    write_parquet(kept, task.outputs[0], DEDUP)
    return stats


def run(ctx: Context) -> dict:
    from datasketch.lsh import _optimal_param

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
    # datasketch's optimizer: bands x rows minimizing false positives + negatives at the threshold.
    bands, rows = _optimal_param(cfg.threshold, cfg.num_perm, 0.5, 0.5)
    bparams = {**params, "bands": bands, "rows": rows, "partitions": cfg.partitions}
    band_dir = out / "_bands"
    band_files = {s: [band_dir / shard_of[s] / f"part-{i:03d}.parquet" for i in range(cfg.partitions)]
                  for s in inputs}
    banded = run_phase(ctx, out, "bands", [
        Task("bands", shard_of[s], band_shard, [f], band_files[s], bparams) for s, f in zip(inputs, sig_files)
    ])
    pair_files = [out / "_pairs" / f"pairs-{i:03d}.parquet" for i in range(cfg.partitions)]
    paired = run_phase(ctx, out, "pairs", [
        Task("pairs", f"{i:03d}", pairs_partition, [band_files[s][i] for s in inputs], [pair_files[i]],
             {**bparams, "max_bucket_pairs": cfg.max_bucket_pairs}) for i in range(cfg.partitions)
    ])
    clusters = out / "_clusters.parquet"
    drop_files = [out / "_drops" / f"drops-{shard_of[s]}.parquet" for s in inputs]
    # Shards deduplicated by an earlier run are "in the corpus": by default their documents
    # win against new ones (replace_existing = false), so earlier output is not rewritten.
    existing = [int(shard_of[s]) for s in inputs if (out / "_done" / f"filter-{shard_of[s]}.json").exists()]
    clustered = run_phase(ctx, out, "cluster", [
        Task("cluster", "all", cluster, pair_files + sig_files, [clusters] + drop_files,
             {**bparams, "threshold": cfg.threshold, "verify": cfg.verify, "pair_files": [f.name for f in pair_files],
              "drop_shards": [int(shard_of[s]) for s in inputs], "replace_existing": cfg.replace_existing},
             options={"existing_shards": existing})
    ])
    filtered = run_phase(ctx, out, "filter", [
        Task("filter", shard_of[s], filter_shard, [s, d], [out / f"dedup-{shard_of[s]}.parquet"])
        for s, d in zip(inputs, drop_files)
    ])
    stats = filtered.stats
    stats.info.update(clustered.stats.info)
    stats.add_info("candidate_pair_rows", paired.stats.records_out)
    stats.add_info("docs_signed", signed.fresh.records_in)      # this run: new shards only
    ran = signed.ran + banded.ran + paired.ran + clustered.ran + filtered.ran
    skipped = signed.skipped + banded.skipped + paired.skipped + clustered.skipped + filtered.skipped
    return finish_stage(ctx, "dedup", out, stats, to_dict(cfg), ran, skipped, started)

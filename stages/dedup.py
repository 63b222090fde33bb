"""dedup: ``docs/`` -> ``dedup/`` (exact and MinHash near-duplicates removed).

Phases, each resumable per task:
1. *signatures*, one task per docs shard -> ``_signatures/sig-NNNNN.parquet``: xxh128 of
   the normalized text (lowercase, whitespace collapsed) and a MinHash of word 5-gram
   shingles (``ngrams.words``: lowercase Unicode letters, digits and marks), 128
   permutations. Shingles are hashed to 64 bits with numpy a batch of texts at a time
   (``ngrams.shingle_hashes``, no Python object per shingle), and datasketch's affine32
   permutations are applied to their high 32 bits with numpy, a document at a time (the
   same values as ``MinHash.bulk``, without its per-shingle Python call). A rerun never
   re-signs a finished shard.
2. *bands*, one task per shard -> ``_bands/NNNNN/part-PPP.parquet``: the persistent LSH
   band index. Bands x rows come from datasketch's optimizer at ``lsh_threshold`` (0.6
   and 128 permutations give 18 x 7: a pair at J = 0.8 is a candidate with probability
   0.986); each band's values are hashed to 64 bits with numpy. One extra band holds the
   exact-text hash. Rows are split by bucket into ``partitions`` files.
3. *pairs*, one task per partition -> ``_pairs/pairs-PPP.parquet``: an external group-by.
   Each task sorts only its partition of every shard's band index and emits the pairs
   of documents sharing a bucket (every pair up to ``max_bucket_pairs`` members, a star
   beyond), once each, with a second partition number (a hash of the pair's two docs
   shards) and one Parquet row group per such number.
4. *verify*, one task per partition -> ``_verified/verified-PPP.parquet``: the row groups
   of its number from every pairs file (a pair found in several bands of several band
   partitions meets in one task, and a task reads only the shards of its shard pairs), verified against ``threshold`` (``verify``: ``exact``
   Jaccard from the texts by default, or the MinHash ``estimate``, or ``off``), two shards
   at a time. Only the duplicate pairs are written.
5. *components*, one task: connected components of the verified pairs (keys only), and
   each component's pairs routed whole to one of ``partitions`` files by a hash of its
   smallest key (``_components/edges-PPP.parquet``).
6. *resolve*, one task per partition -> ``_resolved/resolved-PPP.parquet``: documents
   with a verified pair are taken in keep-rule order: already in the
   corpus (a shard deduplicated by an earlier run, unless ``replace_existing``), then the
   highest karma, the earliest submission, the smallest doc_id. A document is removed
   only if it has a verified pair with a document already kept (its ``duplicate_of``),
   so removals never chain; a document kept only because its neighbour m was dropped
   (for k) gets the pair (k, it) verified, and the pass reruns (star buckets collapse).
   That pair lies inside the component, so components resolve independently and the
   result does not depend on ``partitions`` (tested).
7. *cluster*, one task: the resolved partitions streamed into ``_clusters.parquet`` (the
   audit table; the best-ranked member names each cluster) and one drop list per shard.
8. *filter*, one task per shard -> ``dedup-NNNNN.parquet``. A shard whose drop list did
   not change is not rewritten.

Incremental: a new docs shard is signed and banded alone; pairs and clusters are
recomputed from the persisted index (a sort, no re-signing).

Memory per task, bounded by configuration (n_shard documents per docs shard, N in
the corpus, P = ``partitions``, B bands, C candidate pairs, V verified pairs, D documents
with a duplicate): signatures and bands ~ n_shard x (4 x num_perm + 18 x (B + 1)) bytes;
pairs ~ 18 x N x (B + 1) / P bytes; verify ~ 40 x C / P bytes + two shards' signatures and
texts; components ~ 40 x (V + D) bytes; resolve ~ (20 x V + 150 x D) / P bytes + two
shards' signatures and texts; cluster ~ one partition's rows + 16 bytes per removal.

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
from datasketch.minhash import _fmix     # the affine32 scheme's pre-mix; tests pin equality

from pipeline.config import DedupConfig, to_dict
from pipeline.executor import Context, Task, finish_stage, run_phase
from pipeline.io import atomic_path, require_shards, shard_id, write_parquet
from pipeline.schemas import BANDS, CLUSTERS, DEDUP, DROPS, PAIRS, RESOLVED, SIGNATURES, VERIFIED, upgrade_docs
from pipeline.stats import Stats

from .ngrams import WORDS_VERSION, shingle_hashes

SCHEME = "affine32"   # datasketch 2's 32-bit scheme: values fit uint32 columns


def text_hash(text: str) -> str:
    return xxhash.xxh128_hexdigest(" ".join(text.lower().split()).encode())


SIGN_BATCH = 1000   # documents per vectorized shingle-hashing batch (bounds its memory)


def minhashes(texts: pa.Array, p: dict) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures, identical to datasketch's
    ``MinHash.bulk(..., hashfunc=int, scheme="affine32")`` over the high 32 bits of each
    shingle hash (a test asserts it). Shingles are hashed in batches with numpy
    (``ngrams.shingle_hashes``); the permutations are datasketch's own, applied per
    document with numpy, which skips datasketch's per-shingle Python call."""
    out = np.empty((len(texts), p["num_perm"]), dtype=np.uint32)
    a, b = MinHash(num_perm=p["num_perm"], seed=p["seed"], scheme=SCHEME).permutations
    for lo in range(0, len(texts), SIGN_BATCH):
        batch = texts[lo:lo + SIGN_BATCH]
        h, doc = shingle_hashes(batch, p["shingle_words"])
        hv = _fmix((h >> np.uint64(32)).astype(np.uint32), 32)[:, None]     # datasketch's pre-mix
        at = np.searchsorted(doc, np.arange(len(batch) + 1)).tolist()
        for i in range(len(batch)):
            out[lo + i] = (hv[at[i]:at[i + 1]] * a + b).min(axis=0)        # every text has a shingle
    return out


def signature_params(cfg: DedupConfig) -> dict:
    """The signature phase's task parameters. "shingle_hash" names the shingle hashing,
    so signatures made another way are redone."""
    return {"num_perm": cfg.num_perm, "shingle_words": cfg.shingle_words, "seed": cfg.seed,
            "shingle_hash": "poly64-v1", "words": WORDS_VERSION}


def sign_shard(task: Task) -> Stats:
    (src,) = task.inputs
    (out,) = task.outputs
    p = task.params
    t = pq.read_table(src, columns=["doc_id", "karma", "first_seen", "text"])
    text = t["text"].combine_chunks()
    flat = minhashes(text, p).reshape(-1)
    offsets = np.arange(0, len(flat) + 1, p["num_perm"], dtype=np.int32)
    table = pa.table({
        "doc_id": t["doc_id"], "karma": t["karma"], "first_seen": t["first_seen"],
        "text_hash": [text_hash(x) for x in text.to_pylist()],
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
    a, b, exact = _unique_pairs(cat(a, np.uint64), cat(b, np.uint64), cat(exact, bool))
    part = pair_partition(a, b, p["partitions"])
    order = np.lexsort((b, a, part))
    table = pa.table({"a": a[order], "b": b[order], "exact": exact[order], "part": part[order]}, schema=PAIRS)
    # one row group per verify partition, so that verify task j reads only its own rows
    with atomic_path(task.outputs[0]) as tmp, pq.ParquetWriter(tmp, PAIRS, compression="zstd") as w:
        bounds = np.searchsorted(part[order], np.arange(p["partitions"] + 1))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if hi > lo:
                w.write_table(table.slice(lo, hi - lo))
        if not len(table):
            w.write_table(table)
    stats = Stats(records_in=t.num_rows, records_out=table.num_rows)
    stats.add_info("buckets_with_duplicates", int((sizes > 1).sum()))
    return stats


def _unique_pairs(a: np.ndarray, b: np.ndarray, exact: np.ndarray):
    """One row per pair; a pair found in several bands counts once (exact wins)."""
    if not len(a):
        return a, b, exact
    u, inverse = np.unique(np.stack([a, b], axis=1), axis=0, return_inverse=True)
    any_exact = np.zeros(len(u), dtype=bool)
    np.logical_or.at(any_exact, inverse.reshape(-1), exact)
    return u[:, 0], u[:, 1], any_exact


def pair_partition(a: np.ndarray, b: np.ndarray, partitions: int) -> np.ndarray:
    """The verify partition of each pair: a hash of the pair's two docs shards. The same
    pair found in several band partitions meets in one verify task, and a task reads only
    the shards of its shard pairs (each shard pair once, as one task over everything would)."""
    with np.errstate(over="ignore"):
        sp = ((a >> np.uint64(32)) << np.uint64(32)) | (b >> np.uint64(32))
        return (_mix(sp * BAND_MIX) % np.uint64(partitions)).astype(np.uint16)


def _by_shard(paths: list[Path]) -> dict[int, Path]:
    """Signature or docs files by their shard number."""
    return {int(shard_id(f)): f for f in paths}


def _read_part(path: Path, part: int) -> pa.Table:
    """The rows of one pairs file that belong to verify partition ``part`` (its row groups)."""
    f = pq.ParquetFile(path)
    col = f.schema_arrow.get_field_index("part")
    groups = []
    for g in range(f.metadata.num_row_groups):
        st = f.metadata.row_group(g).column(col).statistics
        if f.metadata.row_group(g).num_rows and (st is None or not st.has_min_max or st.min <= part <= st.max):
            groups.append(g)
    t = f.read_row_groups(groups) if groups else PAIRS.empty_table()
    return t.filter(pc.equal(t["part"], part)) if len(t) else t


def verify_partition(task: Task) -> Stats:
    """Verify partition j: its candidate pairs from every pairs file, deduplicated, checked
    against ``threshold`` as ``verify`` says -> the duplicate pairs. Memory: 1/partitions
    of the candidate pairs plus two shards' signatures and texts."""
    p = task.params
    n_pairs, n_sigs = p["n_pair_files"], len(p["shards"])
    part = int(task.name)
    pairs = pa.concat_tables([_read_part(f, part) for f in task.inputs[:n_pairs]])
    files = _by_shard(task.inputs[n_pairs:n_pairs + n_sigs])
    doc_files = _by_shard(task.inputs[n_pairs + n_sigs:])
    a, b, exact = _unique_pairs(pairs["a"].to_numpy(), pairs["b"].to_numpy(),
                                pairs["exact"].to_numpy(zero_copy_only=False))
    near = ~exact
    jac = exact.astype(np.float32)
    if p["verify"] != "off" and near.any():
        jac[near] = pair_jaccard(a[near], b[near], files, doc_files, p)
    elif near.any():
        jac[near] = np.nan                      # not verified: LSH candidates are taken as they are
    ok = exact | (near & ~(jac < p["threshold"]))
    write_parquet(pa.table({"a": a[ok], "b": b[ok], "exact": exact[ok], "similarity": jac[ok]}, schema=VERIFIED),
                  task.outputs[0], VERIFIED)
    stats = Stats(records_in=len(a), records_out=int(ok.sum()))
    stats.add_info("lsh_candidate_pairs", int(near.sum()))
    stats.add_info("lsh_verified_pairs", int((ok & near).sum()))
    stats.add_info("exact_pairs", int(exact.sum()))
    return stats


class _TwoShards:
    """What ``load(path)`` makes of a shard's file, for at most two shards at a time: pair
    blocks are sorted by shard, so the older of the two is the one to let go."""

    def __init__(self, files: dict[int, Path], load):
        self.files, self.load, self.cache = files, load, {}

    def get(self, shard: int):
        if shard not in self.cache:
            if len(self.cache) >= 2:
                self.cache.pop(next(iter(self.cache)))
            self.cache[shard] = self.load(self.files[shard])
        return self.cache[shard]


def _shard_of(keys: np.ndarray) -> np.ndarray:
    return (keys >> np.uint64(32)).astype(np.int64)


def _row_of(keys: np.ndarray) -> np.ndarray:
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


ESTIMATE_MARGIN = 0.15   # exact mode: pairs estimated this far below the threshold are not re-read


class _ShingleSets:
    """Exact shingle sets (64-bit hashes of each word n-gram) of documents by key, computed from
    the docs shards' text on demand; at most two shards' texts and sets are held."""

    def __init__(self, files: dict[int, Path], n: int):
        self.n = n
        self.shards = _TwoShards(files, lambda f: (pq.read_table(f, columns=["text"])["text"].combine_chunks(), {}))

    def get(self, shard: int, rows: list[int]) -> list[set]:
        texts, sets = self.shards.get(shard)
        todo = sorted({r for r in rows if r not in sets})
        for lo in range(0, len(todo), SIGN_BATCH):
            batch = todo[lo:lo + SIGN_BATCH]
            h, doc = shingle_hashes(texts.take(pa.array(batch, pa.int64())), self.n)
            at = np.searchsorted(doc, np.arange(len(batch) + 1))
            for i, r in enumerate(batch):
                sets[r] = set(h[at[i]:at[i + 1]].tolist())
        return [sets[r] for r in rows]


def _exact_jaccard(x: set, y: set) -> float:
    inter = len(x & y)                          # set & iterates the smaller set itself
    return inter / (len(x) + len(y) - inter)


def pair_jaccard(a: np.ndarray, b: np.ndarray, sig_files: dict[int, Path], doc_files: dict[int, Path],
                 p: dict) -> np.ndarray:
    """Jaccard similarity of each candidate pair, as ``p["verify"]`` says: ``estimate`` from
    the MinHash signatures; ``exact`` from the documents' shingle sets, recomputed from the
    text for pairs whose estimate is within ``ESTIMATE_MARGIN`` of the threshold (the
    estimate's standard deviation at J = 0.8 is 0.035 with 128 permutations, so a margin of
    0.15 loses a true pair with probability ~1e-5). Shard pair by shard pair, so at most two
    shards' signatures and texts are in memory."""
    j = np.zeros(len(a), dtype=np.float32)
    sigs = _TwoShards(sig_files, lambda f: pq.read_table(f, columns=["minhash"])["minhash"])
    sets = _ShingleSets(doc_files, p["shingle_words"]) if p["verify"] == "exact" else None
    num_perm = p["num_perm"]
    sa, sb = _shard_of(a), _shard_of(b)
    order = np.lexsort((sb, sa))
    blocks = np.flatnonzero(np.r_[True, (sa[order][1:] != sa[order][:-1]) | (sb[order][1:] != sb[order][:-1])])
    for lo, hi in zip(blocks, np.append(blocks[1:], len(order))):
        idx = order[lo:hi]
        ra, rb = _row_of(a[idx]), _row_of(b[idx])
        ma = sigs.get(int(sa[idx[0]]))
        rows_a = pc.take(ma, pa.array(ra)).combine_chunks().flatten().to_numpy().reshape(-1, num_perm)
        mb = sigs.get(int(sb[idx[0]]))
        rows_b = pc.take(mb, pa.array(rb)).combine_chunks().flatten().to_numpy().reshape(-1, num_perm)
        est = (rows_a == rows_b).mean(axis=1)
        j[idx] = est
        if p["verify"] == "exact":
            near = np.flatnonzero(est >= p["threshold"] - ESTIMATE_MARGIN)
            if len(near):
                xs = sets.get(int(sa[idx[0]]), ra[near].tolist())
                ys = sets.get(int(sb[idx[0]]), rb[near].tolist())
                j[idx[near]] = [_exact_jaccard(x, y) for x, y in zip(xs, ys)]
    return j


MAX_ROUNDS = 10   # witness propagation rounds in cluster (one or two are typical)


def _greedy(n: int, order: list[int], pos: np.ndarray, ia: np.ndarray, ib: np.ndarray,
            sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents in rank ``order``: kept unless a verified pair links them to a document
    already kept; the dropped one's witness is the most similar such document."""
    src, dst, w = np.r_[ia, ib], np.r_[ib, ia], np.r_[sim, sim]
    by = np.argsort(src, kind="stable")
    dst, w = dst[by], w[by]
    ptr = np.searchsorted(src[by], np.arange(n + 1)).tolist()
    kept = np.zeros(n, dtype=bool)
    dup_of = np.full(n, -1, dtype=np.int64)
    dup_sim = np.full(n, np.nan, dtype=np.float32)
    for i in order:
        nb = dst[ptr[i]:ptr[i + 1]]
        k = kept[nb]
        if not k.any():
            kept[i] = True
            continue
        cand, cs = nb[k], w[ptr[i]:ptr[i + 1]][k]
        best = np.lexsort((pos[cand], -np.nan_to_num(cs, nan=1.0)))[0]   # most similar, then best ranked
        dup_of[i], dup_sim[i] = cand[best], cs[best]
    return kept, dup_of, dup_sim


def components(task: Task) -> Stats:
    """Verified pairs (every verify partition's) -> connected components, and each
    component's pairs routed to one of ``partitions`` resolve tasks (by a hash of the
    component's smallest key). Components are independent under the keep rule (a witness
    pair never leaves its component), so resolving them apart gives the global result.
    Memory: ~40 bytes per verified pair and per document that has a duplicate; keys only."""
    p = task.params
    ver = pa.concat_tables([pq.read_table(f) for f in task.inputs]) if task.inputs else VERIFIED.empty_table()
    ea, eb = ver["a"].to_numpy(), ver["b"].to_numpy()
    members = np.unique(np.concatenate([ea, eb]))
    n = len(members)
    ia, ib = np.searchsorted(members, ea), np.searchsorted(members, eb)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_comp, comp = connected_components(coo_matrix((np.ones(len(ia)), (ia, ib)), shape=(n, n)), directed=False) \
        if n else (0, np.empty(0, np.int64))
    root = np.full(n_comp, n, dtype=np.int64)
    np.minimum.at(root, comp, np.arange(n))                     # members are sorted: the smallest key
    with np.errstate(over="ignore"):
        part = (_mix(members[root[comp]] * BAND_MIX) % np.uint64(p["partitions"])).astype(np.int64) if n else \
            np.empty(0, np.int64)
    edge_part = part[ia]
    for j, out in enumerate(task.outputs):
        m = edge_part == j
        o = np.lexsort((eb[m], ea[m]))
        write_parquet(ver.filter(pa.array(m)).take(pa.array(o)), out, VERIFIED)
    stats = Stats(records_in=len(ea), records_out=len(ea))
    stats.add_info("clusters", int(n_comp))
    return stats


def resolve(task: Task) -> Stats:
    """One partition of the components -> the keep rule applied, as audit rows.
    Memory: its pairs, ~150 bytes per document in it, and two shards' signatures and texts
    for the witness pairs."""
    p = task.params
    n_sigs = len(p["drop_shards"])
    ver = pq.read_table(task.inputs[0])
    files = _by_shard(task.inputs[1:1 + n_sigs])
    doc_files = _by_shard(task.inputs[1 + n_sigs:])
    stats = Stats()
    ea, eb = ver["a"].to_numpy(), ver["b"].to_numpy()
    ej = ver["similarity"].to_numpy(zero_copy_only=False).astype(np.float32)     # NaN: not verified
    members = np.unique(np.concatenate([ea, eb]))               # documents with a duplicate
    n = len(members)
    ia, ib = np.searchsorted(members, ea), np.searchsorted(members, eb)
    # What the keep rule needs, for documents in clusters only, shard by shard.
    meta = {c: [None] * n for c in ("doc_id", "karma", "first_seen", "text_hash")}
    shards, rows = _shard_of(members), _row_of(members)
    for s in np.unique(shards).tolist():
        at = np.flatnonzero(shards == s)
        t = pq.read_table(files[s], columns=list(meta)).take(pa.array(rows[at]))
        for c in meta:
            for i, v in zip(at.tolist(), t[c].to_pylist()):
                meta[c][i] = v
    existing = set(task.options.get("existing_shards", ())) if not p["replace_existing"] else set()
    # Documents already in the corpus first (unless replace_existing), then karma, age, id.
    order = sorted(range(n), key=lambda i: (int(shards[i]) not in existing, -meta["karma"][i],
                                            meta["first_seen"][i], meta["doc_id"][i]))
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    # Greedy, in rank order: a document is dropped only for a verified pair with a document
    # already kept, so every removal has its own witness (no chains through union-find),
    # and a kept document from an earlier run is never dropped for a newcomer. A document
    # kept only because its neighbour was dropped (x ~ m, m dropped for k: a star bucket's
    # centre, or a chain) gets the pair (k, x) checked too, and the greedy pass reruns,
    # until no such pair is new.
    rounds = propagated = 0
    if p["keep"] == "witness":
        tested = np.empty(0, dtype=np.uint64)
        rounds = propagated = 0
        while True:
            kept, dup_of, dup_sim = _greedy(n, order, pos, ia, ib, ej)
            u, v = np.r_[ia, ib], np.r_[ib, ia]
            m = ~kept[u] & kept[v]
            w, x = dup_of[u[m]], v[m]
            ca, cb = np.minimum(w, x)[w != x], np.maximum(w, x)[w != x]
            if existing:      # never test two documents both already in the corpus: that could drop one
                old = np.isin(shards, list(existing))
                ca, cb = ca[~(old[ca] & old[cb])], cb[~(old[ca] & old[cb])]
            code = _mix(ca.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + cb.astype(np.uint64))
            code, first = np.unique(code, return_index=True)
            new = ~np.isin(code, tested)
            ca, cb = ca[first][new], cb[first][new]
            if not len(ca) or rounds >= MAX_ROUNDS:
                break
            rounds += 1
            tested = np.union1d(tested, code[new])
            sim = pair_jaccard(members[ca], members[cb], files, doc_files, p) if p["verify"] != "off" else \
                np.full(len(ca), np.nan, dtype=np.float32)
            good = ~(sim < p["threshold"])
            propagated += int(good.sum())
            ia, ib, ej = np.r_[ia, ca[good]], np.r_[ib, cb[good]], np.r_[ej, sim[good]]
    stats.add_info("witness_rounds", rounds)
    stats.add_info("witness_pairs_added", propagated)
    # Connected components name the clusters for the audit table: the best-ranked member.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_comp, comp = connected_components(coo_matrix((np.ones(len(ia)), (ia, ib)), shape=(n, n)), directed=False) \
        if n else (0, np.empty(0, np.int64))
    head = np.full(n_comp, -1, dtype=np.int64)
    for i in order:
        if head[comp[i]] < 0:
            head[comp[i]] = i
    if p["keep"] == "one_per_cluster":     # union-find's rule: the best-ranked member stays, the rest go
        dup_of = head[comp]
        kept = dup_of == np.arange(n)
        dup_of[kept] = -1
        dup_sim = np.full(n, np.nan, dtype=np.float32)
        for x, y, j in ((ia, ib, ej), (ib, ia, ej)):      # the similarity where the pair was verified
            direct = dup_of[x] == y
            dup_sim[x[direct]] = j[direct]
    ids, hashes = meta["doc_id"], meta["text_hash"]
    reasons = [None if kept[i] else
               ("exact_duplicate" if hashes[i] == hashes[dup_of[i]] else "near_duplicate") for i in range(n)]
    table = pa.table({
        "doc_id": ids,
        "cluster_id": [ids[h] for h in head[comp].tolist()],
        "kept": kept,
        "reason": reasons,
        "duplicate_of": [None if d < 0 else ids[d] for d in dup_of.tolist()],
        "similarity": pa.array(dup_sim, pa.float32(), mask=kept | np.isnan(dup_sim)),
        "key": members,
    }, schema=RESOLVED).sort_by([("cluster_id", "ascending"), ("doc_id", "ascending")])
    write_parquet(table, task.outputs[0], RESOLVED)
    stats.records_in = stats.records_out = n
    return stats


def merge_clusters(task: Task) -> Stats:
    """Every resolve partition's rows -> ``_clusters.parquet`` (streamed, a partition at a
    time) and one drop list per docs shard. Memory: one partition's rows, and 16 bytes
    per removed document."""
    p = task.params
    drops: list[tuple[np.ndarray, np.ndarray]] = []
    n = 0
    with atomic_path(task.outputs[0]) as tmp, pq.ParquetWriter(tmp, CLUSTERS, compression="zstd") as w:
        for f in task.inputs:
            t = pq.read_table(f)
            n += t.num_rows
            w.write_table(t.select(CLUSTERS.names).cast(CLUSTERS))
            gone = t.filter(pc.invert(t["kept"]))
            code = (pc.equal(gone["reason"], "exact_duplicate")).to_numpy(zero_copy_only=False)
            drops.append((gone["key"].to_numpy(), code))
        if not n:
            w.write_table(CLUSTERS.empty_table())
    keys = np.concatenate([k for k, _ in drops]) if drops else np.empty(0, np.uint64)
    exact = np.concatenate([c for _, c in drops]) if drops else np.empty(0, bool)
    shards, rows = _shard_of(keys), _row_of(keys)
    for s, path in zip(p["drop_shards"], task.outputs[1:]):
        m = shards == s
        o = np.argsort(rows[m], kind="stable")
        reason = np.where(exact[m][o], "exact_duplicate", "near_duplicate")
        write_parquet(pa.table({"row": pa.array(rows[m][o], pa.int64()), "reason": pa.array(reason.tolist(), pa.string())},
                               schema=DROPS), path, DROPS)
    stats = Stats(records_in=n, records_out=n)
    stats.add_info("lsh_bands", p["bands"])
    stats.add_info("lsh_rows", p["rows"])
    return stats


def filter_shard(task: Task) -> Stats:
    src, drop_file = task.inputs
    docs = upgrade_docs(pq.read_table(src))   # shards from before v4 lack source, captured_at
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
    params = signature_params(cfg)
    shard_of = {src: shard_id(src) for src in inputs}
    sig_files = [out / "_signatures" / f"sig-{shard_of[s]}.parquet" for s in inputs]
    signed = run_phase(ctx, out, "signatures", [
        Task("signatures", shard_of[s], sign_shard, [s], [f], params) for s, f in zip(inputs, sig_files)
    ])
    # datasketch's optimizer: bands x rows minimizing false positives + negatives at
    # lsh_threshold, below the verification threshold so that pairs at it are candidates.
    bands, rows = _optimal_param(cfg.lsh_threshold, cfg.num_perm, 0.5, 0.5)
    bparams = {**params, "bands": bands, "rows": rows, "partitions": cfg.partitions, "pairs_layout": 2}
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
    ver_files = [out / "_verified" / f"verified-{i:03d}.parquet" for i in range(cfg.partitions)]
    vparams = {**bparams, "threshold": cfg.threshold, "verify": cfg.verify, "n_pair_files": len(pair_files),
               "shards": [int(shard_of[s]) for s in inputs]}
    verified = run_phase(ctx, out, "verify", [
        Task("verify", f"{i:03d}", verify_partition, pair_files + sig_files + inputs, [ver_files[i]], vparams)
        for i in range(cfg.partitions)
    ])
    comp_files = [out / "_components" / f"edges-{i:03d}.parquet" for i in range(cfg.partitions)]
    comps = run_phase(ctx, out, "components", [
        Task("components", "all", components, ver_files, comp_files, {"partitions": cfg.partitions})
    ])
    res_files = [out / "_resolved" / f"resolved-{i:03d}.parquet" for i in range(cfg.partitions)]
    # Shards deduplicated by an earlier run are "in the corpus": by default their documents
    # win against new ones (replace_existing = false), so earlier output is not rewritten.
    existing = [int(shard_of[s]) for s in inputs if (out / "_done" / f"filter-{shard_of[s]}.json").exists()]
    drop_shards = [int(shard_of[s]) for s in inputs]
    resolved = run_phase(ctx, out, "resolve", [
        Task("resolve", f"{i:03d}", resolve, [comp_files[i]] + sig_files + inputs, [res_files[i]],
             {**bparams, "threshold": cfg.threshold, "verify": cfg.verify, "keep": cfg.keep,
              "drop_shards": drop_shards, "replace_existing": cfg.replace_existing},
             options={"existing_shards": existing})
        for i in range(cfg.partitions)
    ])
    clusters = out / "_clusters.parquet"
    drop_files = [out / "_drops" / f"drops-{shard_of[s]}.parquet" for s in inputs]
    clustered = run_phase(ctx, out, "cluster", [
        Task("cluster", "all", merge_clusters, res_files, [clusters] + drop_files,
             {"bands": bands, "rows": rows, "drop_shards": drop_shards})
    ])
    filtered = run_phase(ctx, out, "filter", [
        Task("filter", shard_of[s], filter_shard, [s, d], [out / f"dedup-{shard_of[s]}.parquet"])
        for s, d in zip(inputs, drop_files)
    ])
    stats = filtered.stats
    for ph in (verified, comps, resolved, clustered):
        stats.info.update(ph.stats.info)
    stats.add_info("candidate_pair_rows", paired.stats.records_out)
    stats.add_info("docs_signed", signed.fresh.records_in)      # this run: new shards only
    phases = (signed, banded, paired, verified, comps, resolved, clustered, filtered)
    ran, skipped = sum(ph.ran for ph in phases), sum(ph.skipped for ph in phases)
    return finish_stage(ctx, "dedup", out, stats, to_dict(cfg), ran, skipped, started)

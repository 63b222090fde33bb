"""dedup's candidate pairs and their verification.

In: the band index (``_meta/bands/NNNNN/part-PPP.parquet``), the signatures and the docs
shards. Out: ``_meta/pairs/pairs-PPP.parquet`` and ``keys-PPP.parquet`` (candidate pairs of
one band partition, and their documents), ``_meta/candidates/cand-NNNNN.parquet`` (what
verification needs of each candidate document: its MinHash, text and keep-rule fields,
read from its shard once) and ``_meta/verified/verified-PPP.parquet`` (the duplicate pairs).
``stages.dedup`` runs the phases; see its docstring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtext.pipeline.executor import Task
from webtext.pipeline.io import ParquetSink, shard_id, write_parquet
from webtext.pipeline.schemas import BANDS, CANDIDATES, PAIR_KEYS, PAIRS, VERIFIED
from webtext.pipeline.stats import Stats

from .dedup_sign import BAND_MIX, SIGN_BATCH, _mix, read_minhash
from .ngrams import shingle_hashes

KEY_GROUP = 1 << 16      # keys per row group of a keys file
CAND_GROUP = 512         # documents per row group of a candidates file
ESTIMATE_MARGIN = 0.15   # exact mode: pairs estimated this far below the threshold are not re-read


def pairs_partition(task: Task) -> Stats:
    """One partition of the band index (every shard's file for it) -> candidate pairs,
    and the sorted keys of the documents in them.

    Rows are sorted by (band, bucket); each run of equal keys is a bucket. Buckets of up
    to ``max_bucket_pairs`` members give every pair, larger ones a star around their first
    member (enough for union-find, and it bounds the output). Exact-text buckets are
    marked: they need no verification.
    """
    p = task.params
    t = pa.concat_tables([BANDS.empty_table()] + [pq.read_table(f, use_threads=False).cast(BANDS)
                                                    for f in task.inputs if f.exists()])     # absent: no rows
    band, bucket, key = (t[c].to_numpy() for c in ("band", "bucket", "key"))
    order = np.lexsort((key, bucket, band))
    band, bucket, key = band[order], bucket[order], key[order]
    new_run = np.ones(len(key), dtype=bool)
    new_run[1:] = (band[1:] != band[:-1]) | (bucket[1:] != bucket[:-1])
    starts = np.flatnonzero(new_run)
    sizes = np.diff(np.append(starts, len(key)))
    a, b, exact = _bucket_pairs(band, key, starts[sizes > 1], sizes[sizes > 1], p["max_bucket_pairs"], p["bands"])
    a, b, exact = _unique_pairs(a, b, exact)
    part = pair_partition(a, b, p["partitions"])
    order = np.lexsort((b, a, part))
    table = pa.table({"a": a[order], "b": b[order], "exact": exact[order], "part": part[order]}, schema=PAIRS)
    # one row group per verify partition, so that verify task j reads only its own rows
    with ParquetSink(task.outputs[0], PAIRS) as w:      # no pairs: no file
        bounds = np.searchsorted(part[order], np.arange(p["partitions"] + 1))
        for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
            if hi > lo:
                w.write(table.slice(lo, hi - lo))
    keys = pa.table({"key": np.unique(np.r_[a, b])}, schema=PAIR_KEYS)
    write_parquet(keys, task.outputs[1], row_group_size=KEY_GROUP)
    stats = Stats(records_in=t.num_rows, records_out=table.num_rows)
    stats.add_info("buckets_with_duplicates", int((sizes > 1).sum()))
    return stats


def _bucket_pairs(band, key, starts, sizes, small: int, exact_band: int):
    """The pairs of every bucket (run ``starts[i]``, ``sizes[i]`` of the sorted ``key``):
    every pair of a bucket of up to ``small`` members (all buckets of one size at once),
    a star around the first member of a larger one."""
    a, b, exact = [np.empty(0, np.uint64)], [np.empty(0, np.uint64)], [np.empty(0, bool)]
    for k in np.unique(sizes).tolist():
        s = starts[sizes == k]
        if k <= small:
            i, j = np.triu_indices(k, 1)
            a.append(key[(s[:, None] + i).reshape(-1)]), b.append(key[(s[:, None] + j).reshape(-1)])
            exact.append(np.repeat(band[s] == exact_band, len(i)))
        else:
            for x in s.tolist():
                a.append(np.full(k - 1, key[x])), b.append(key[x + 1:x + k])
                exact.append(np.full(k - 1, band[x] == exact_band))
    return np.concatenate(a), np.concatenate(b), np.concatenate(exact)


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


def by_shard(paths: list[Path]) -> dict[int, Path]:
    """Signature, candidate or docs files by their shard number."""
    return {int(shard_id(f)): f for f in paths}


def shard_of(keys: np.ndarray) -> np.ndarray:
    return (keys >> np.uint64(32)).astype(np.int64)


def row_of(keys: np.ndarray) -> np.ndarray:
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


def _read_keys(path: Path, shard: int) -> np.ndarray:
    """The keys of one shard in a keys file (only the row groups that can hold them)."""
    if not path.exists():       # a partition with no pairs
        return np.empty(0, np.uint64)
    f = pq.ParquetFile(path)
    lo, hi = shard << 32, (shard + 1) << 32
    groups = []
    for g in range(f.metadata.num_row_groups):
        st = f.metadata.row_group(g).column(0).statistics
        if f.metadata.row_group(g).num_rows and (st is None or not st.has_min_max or (st.min < hi and st.max >= lo)):
            groups.append(g)
    k = f.read_row_groups(groups, use_threads=False)["key"].to_numpy() if groups else np.empty(0, np.uint64)
    return k[(k >= np.uint64(lo)) & (k < np.uint64(hi))]


def candidates_shard(task: Task) -> Stats:
    """One docs shard -> its documents that are in a candidate pair, with their MinHash,
    keep-rule fields and (for exact verification) text: the only read of the shard's
    text and signatures that verify and resolve need. Memory: one shard's signatures and
    text column."""
    p = task.params
    *key_files, sig_file, doc_file = task.inputs
    shard = int(shard_id(task.outputs[0]))
    keys = np.unique(np.concatenate([np.empty(0, np.uint64)] + [_read_keys(f, shard) for f in key_files]))
    rows = pa.array(row_of(keys))
    sig = pq.read_table(sig_file, use_threads=False)
    mh = np.ascontiguousarray(read_minhash(sig, p["num_perm"])[row_of(keys)])
    width = 4 * p["num_perm"]
    offsets = pa.py_buffer(np.arange(0, width * len(keys) + 1, width, dtype=np.int32))
    minhash = pa.Array.from_buffers(pa.binary(), len(keys), [None, offsets, pa.py_buffer(mh.astype("<u4"))])
    if p["verify"] == "exact":
        text = pq.read_table(doc_file, columns=["text"], use_threads=False)["text"].take(rows).cast(pa.large_string())
    else:
        text = pa.nulls(len(keys), pa.large_string())
    meta = sig.select(["doc_id", "karma", "first_seen", "text_hash"]).take(rows)
    table = pa.table({"key": keys, **{c: meta[c] for c in meta.column_names}, "minhash": minhash, "text": text})
    # Uncompressed (MinHash values do not compress; verify reads these files many times),
    # in row groups of CAND_GROUP rows, so that a reader takes only the groups it needs.
    write_parquet(table.cast(CANDIDATES), task.outputs[0], compression="none", row_group_size=CAND_GROUP)
    return Stats(records_in=sig.num_rows, records_out=len(keys))


def read_part(path: Path, part: int) -> pa.Table:
    """The rows of one pairs file that belong to verify partition ``part`` (its row groups)."""
    if not path.exists():       # a pairs partition with no pairs
        return PAIRS.empty_table()
    f = pq.ParquetFile(path)
    col = f.schema_arrow.get_field_index("part")
    groups = []
    for g in range(f.metadata.num_row_groups):
        st = f.metadata.row_group(g).column(col).statistics
        if f.metadata.row_group(g).num_rows and (st is None or not st.has_min_max or st.min <= part <= st.max):
            groups.append(g)
    t = f.read_row_groups(groups, use_threads=False) if groups else PAIRS.empty_table()
    return t.filter(pc.equal(t["part"], part)) if len(t) else t


def verify_partition(task: Task) -> Stats:
    """Verify partition j: its candidate pairs from every pairs file, deduplicated, checked
    against ``threshold`` as ``verify`` says -> the duplicate pairs. Memory: 1/partitions
    of the candidate pairs plus two shards' candidate files."""
    p = task.params
    n_pairs = p["n_pair_files"]
    part = int(task.name)
    pairs = pa.concat_tables([read_part(f, part) for f in task.inputs[:n_pairs]])
    files = by_shard(task.inputs[n_pairs:])
    a, b, exact = _unique_pairs(pairs["a"].to_numpy(), pairs["b"].to_numpy(),
                                pairs["exact"].to_numpy(zero_copy_only=False))
    near = ~exact
    jac = exact.astype(np.float32)
    if p["verify"] != "off" and near.any():
        jac[near] = pair_jaccard(a[near], b[near], candidate_files(files, p), p)
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


class _Candidates:
    """One shard's candidate file: its keys, and the MinHash rows and exact shingle sets
    (sorted distinct 64-bit hashes of each word n-gram, from the text) of the rows asked
    for, read a row group at a time as they are first needed."""

    def __init__(self, path: Path, p: dict):
        self.file = pq.ParquetFile(path)
        self.keys = self.file.read(columns=["key"], use_threads=False)["key"].to_numpy()
        self.num_perm, self.n = p["num_perm"], p["shingle_words"]
        self.minhash = np.zeros((len(self.keys), self.num_perm), np.uint32)
        self.loaded = np.zeros(self.file.metadata.num_row_groups, dtype=bool)
        self.sets: dict[int, np.ndarray] = {}

    def index(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys`` in this file (every pair's documents are in it)."""
        at = np.minimum(np.searchsorted(self.keys, keys), max(len(self.keys) - 1, 0))
        if len(keys) and not (len(self.keys) and (self.keys[at] == keys).all()):
            raise RuntimeError("a pair's document is missing from its candidates file")
        return at

    def signatures(self, at: np.ndarray) -> np.ndarray:
        groups = np.unique(at // CAND_GROUP)
        todo = groups[~self.loaded[groups]].tolist()
        if todo:
            mh = self.file.read_row_groups(todo, columns=["minhash"], use_threads=False)["minhash"].combine_chunks()
            off = np.frombuffer(mh.buffers()[1], np.int32)[mh.offset:mh.offset + len(mh) + 1]
            data = np.frombuffer(mh.buffers()[2], np.uint8)[off[0]:off[-1]].view("<u4").reshape(len(mh), -1)
            rows = np.concatenate([np.arange(g * CAND_GROUP, min((g + 1) * CAND_GROUP, len(self.keys))) for g in todo])
            self.minhash[rows] = data
            self.loaded[todo] = True
        return self.minhash[at]

    def shingle_sets(self, at: list[int]) -> list[np.ndarray]:
        todo = sorted({i for i in at if i not in self.sets})
        if todo:
            groups = sorted({i // CAND_GROUP for i in todo})
            text = self.file.read_row_groups(groups, columns=["text"], use_threads=False)["text"].combine_chunks()
            first = {g: k * CAND_GROUP for k, g in enumerate(groups)}     # groups are full but the last
            rows = [first[i // CAND_GROUP] + i % CAND_GROUP for i in todo]
            for lo in range(0, len(todo), SIGN_BATCH):
                batch = rows[lo:lo + SIGN_BATCH]
                h, doc = shingle_hashes(text.take(pa.array(batch, pa.int64())), self.n)
                cut = np.searchsorted(doc, np.arange(len(batch) + 1)).tolist()
                for i, r in enumerate(todo[lo:lo + SIGN_BATCH]):
                    x = np.sort(h[cut[i]:cut[i + 1]])          # sorted, then distinct (np.unique hashes first: slower)
                    self.sets[r] = x[np.r_[True, x[1:] != x[:-1]]]
        return [self.sets[i] for i in at]


class TwoShards:
    """What ``load(path)`` makes of a shard's file, for at most two shards at a time, the
    least recently used let go: pair blocks are sorted by (shard a, shard b), so shard a
    stays while shard b changes."""

    def __init__(self, files: dict[int, Path], load):
        self.files, self.load, self.cache = files, load, {}

    def get(self, shard: int):
        if shard in self.cache:
            self.cache[shard] = self.cache.pop(shard)           # most recently used: last
        else:
            if len(self.cache) >= 2:
                self.cache.pop(next(iter(self.cache)))
            self.cache[shard] = self.load(self.files[shard])
        return self.cache[shard]


def candidate_files(files: dict[int, Path], p: dict) -> TwoShards:
    """Candidate files by shard, loaded on demand, two at a time (``pair_jaccard``'s cache)."""
    return TwoShards(files, lambda f: _Candidates(f, p))


def _exact_jaccard(x: np.ndarray, y: np.ndarray) -> float:
    """Jaccard similarity of two sorted arrays of distinct values."""
    if len(x) > len(y):
        x, y = y, x
    at = np.searchsorted(y, x)
    inter = int(np.count_nonzero(y[np.minimum(at, len(y) - 1)] == x))
    return inter / (len(x) + len(y) - inter)


def pair_jaccard(a: np.ndarray, b: np.ndarray, shards: TwoShards, p: dict) -> np.ndarray:
    """Jaccard similarity of each candidate pair, as ``p["verify"]`` says: ``estimate`` from
    the MinHash signatures; ``exact`` from the documents' shingle sets, recomputed from the
    text for pairs whose estimate is within ``ESTIMATE_MARGIN`` of the threshold (the
    estimate's standard deviation at J = 0.8 is 0.035 with 128 permutations, so a margin of
    0.15 loses a true pair with probability ~1e-5). Shard pair by shard pair, so at most two
    shards' candidate files (``candidate_files``) are in memory."""
    j = np.zeros(len(a), dtype=np.float32)
    sa, sb = shard_of(a), shard_of(b)
    order = np.lexsort((sb, sa))
    blocks = np.flatnonzero(np.r_[True, (sa[order][1:] != sa[order][:-1]) | (sb[order][1:] != sb[order][:-1])])
    for lo, hi in zip(blocks, np.append(blocks[1:], len(order))):
        idx = order[lo:hi]
        ca = shards.get(int(sa[idx[0]]))
        cb = shards.get(int(sb[idx[0]]))
        ia, ib = ca.index(a[idx]), cb.index(b[idx])
        est = (ca.signatures(ia) == cb.signatures(ib)).mean(axis=1)
        j[idx] = est
        if p["verify"] == "exact":
            near = np.flatnonzero(est >= p["threshold"] - ESTIMATE_MARGIN)
            if len(near):
                xs = ca.shingle_sets(ia[near].tolist())
                ys = cb.shingle_sets(ib[near].tolist())
                j[idx[near]] = [_exact_jaccard(x, y) for x, y in zip(xs, ys)]
    return j

"""dedup's per-shard phases: signatures and the LSH band index.

In: a docs shard (``docs/docs-NNNNN.parquet``). Out: ``_signatures/sig-NNNNN.parquet``
(doc_id, karma, first_seen, the exact-text hash and a 128-value MinHash per document),
then ``_bands/NNNNN/part-PPP.parquet`` (band, bucket hash, document key), split by bucket
into ``partitions`` files. ``stages.dedup`` runs them; see its docstring for the phases.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from datasketch import MinHash, MinHashLSH

from pipeline import progress
from pipeline.executor import Task
from pipeline.io import shard_id, write_parquet
from pipeline.schemas import BANDS, SIGNATURES
from pipeline.stats import Stats

from .ngrams import WORDS_VERSION, shingle_hashes

SCHEME = "affine32"   # datasketch 2's 32-bit scheme: values fit uint32 columns
SIGN_BATCH = 1000     # documents per vectorized shingle-hashing batch (bounds its memory)
BAND_MIX = np.uint64(0x9E3779B97F4A7C15)


def text_hash(text: str) -> str:
    return xxhash.xxh128_hexdigest(" ".join(text.lower().split()).encode())


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, elementwise over uint32 (wrapping): the pre-mix
    datasketch's affine32 scheme applies to each hash before its permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def minhashes(texts: pa.Array, p: dict) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures, identical to datasketch's
    ``MinHash.bulk(..., hashfunc=int, scheme="affine32")`` over the high 32 bits of each
    shingle hash (a test asserts it). Shingles are hashed in batches with numpy
    (``ngrams.shingle_hashes``); the permutations are datasketch's own, applied per
    document with numpy, which skips datasketch's per-shingle Python call."""
    out = np.empty((len(texts), p["num_perm"]), dtype=np.uint32)
    a, b = MinHash(num_perm=p["num_perm"], seed=p["seed"], scheme=SCHEME).permutations
    with np.errstate(over="ignore"):
        for lo in range(0, len(texts), SIGN_BATCH):
            batch = texts[lo:lo + SIGN_BATCH]
            h, doc = shingle_hashes(batch, p["shingle_words"])
            hv = _fmix32((h >> np.uint64(32)).astype(np.uint32))[:, None]
            at = np.searchsorted(doc, np.arange(len(batch) + 1)).tolist()
            for i in range(len(batch)):
                out[lo + i] = (hv[at[i]:at[i + 1]] * a + b).min(axis=0)        # every text has a shingle
            progress.advance(len(batch))
    return out


def signature_params(cfg) -> dict:
    """The signature phase's task parameters. "shingle_hash" names the shingle hashing,
    so signatures made another way are redone."""
    return {"num_perm": cfg.num_perm, "shingle_words": cfg.shingle_words, "seed": cfg.seed,
            "shingle_hash": "poly64-v1", "words": WORDS_VERSION}


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """Bands x rows from datasketch's optimizer (false positives and negatives weighted
    equally at ``threshold``), through its public ``MinHashLSH``."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm, weights=(0.5, 0.5))
    return lsh.b, lsh.r


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


def read_minhash(table: pa.Table, num_perm: int) -> np.ndarray:
    """A signature table's ``minhash`` column as an (n, num_perm) uint32 array."""
    n = table.num_rows
    if not n:
        return np.empty((0, num_perm), np.uint32)
    return table["minhash"].combine_chunks().flatten().to_numpy().reshape(n, num_perm)


def band_shard(task: Task) -> Stats:
    """One signature shard -> its rows of the band index, split into ``partitions`` files.

    Rows are (band, bucket hash, document key). Band ``bands`` (one past the last LSH
    band) holds the exact-text hash, so exact duplicates meet in the same index.
    """
    (src,) = task.inputs
    p = task.params
    t = pq.read_table(src, columns=["text_hash", "minhash"])
    n = t.num_rows
    h = band_hashes(read_minhash(t, p["num_perm"]), p["bands"], p["rows"])
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

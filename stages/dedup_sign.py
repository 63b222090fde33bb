"""dedup's per-shard phases: signatures and the LSH band index.

In: a docs shard (``docs/docs-NNNNN.parquet``). Out: ``_meta/signatures/sig-NNNNN.parquet``
(doc_id, karma, first_seen, the exact-text hash and a 128-value MinHash per document),
then ``_meta/bands/NNNNN/part-PPP.parquet`` (band, bucket hash, document key), split by bucket
into ``partitions`` files. ``stages.dedup`` runs them; see its docstring for the phases.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash
from datasketch import MinHash, MinHashLSH

from webtext.pipeline import progress
from webtext.pipeline.executor import Task
from webtext.pipeline.io import shard_id, write_parquet
from webtext.pipeline.schemas import BANDS, SIGNATURES
from webtext.pipeline.stats import Stats

from .ngrams import WORDS_VERSION, shingle_hashes

SCHEME = "affine32"   # datasketch 2's 32-bit scheme: values fit uint32 columns
SIGN_BATCH = 1000     # documents per vectorized shingle-hashing batch (bounds its memory)
BAND_MIX = np.uint64(0x9E3779B97F4A7C15)


def text_hash(text: str) -> str:
    """xxh128 hex of the text lowercased (Python's ``str.lower``) with its whitespace
    collapsed (``str.split``): equal for exact duplicates up to case and spacing."""
    return xxhash.xxh128_hexdigest(" ".join(text.lower().split()).encode())


_ASCII_SPACE = np.zeros(256, dtype=bool)
_ASCII_SPACE[[9, 10, 11, 12, 13, 28, 29, 30, 31, 32]] = True    # what str.split() splits on below 0x80
PYTHON, SPACE = 1, 2
_kinds = np.full(0x110000, -1, dtype=np.int8)   # per code point: 0, PYTHON, SPACE, or -1 (not looked at yet)


def _char_kinds(cps: np.ndarray) -> np.ndarray:
    """For code points at or above 0x80: PYTHON where a text holding one must be hashed by
    ``text_hash`` itself (Python's ``str.lower`` and pyarrow's ``utf8_lower`` disagree,
    as for "İ", or "Σ", which Python lowers by context), SPACE for whitespace
    (``str.split`` splits on it: "\\xa0", "\\u3000"), else 0. Filled in as code points
    are first seen."""
    new = np.unique(cps[_kinds[cps] < 0])
    if len(new):
        chars = [chr(c) for c in new.tolist()]
        arrow = pc.utf8_lower(pa.array(chars, pa.string())).to_pylist()
        _kinds[new] = [PYTHON if c.lower() != x or c == "\u03a3" else SPACE if c.isspace() else 0
                       for c, x in zip(chars, arrow)]
    return _kinds[cps]


def _code_points(b: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """The code point of each UTF-8 sequence starting at the byte positions ``lead``."""
    pad = np.r_[b, np.zeros(3, np.uint8)]
    c0, c1, c2, c3 = (pad[lead + k].astype(np.int64) for k in range(4))
    return np.where(c0 < 0xE0, ((c0 & 0x1F) << 6) | (c1 & 0x3F),
                    np.where(c0 < 0xF0, ((c0 & 0x0F) << 12) | ((c1 & 0x3F) << 6) | (c2 & 0x3F),
                             ((c0 & 0x07) << 18) | ((c1 & 0x3F) << 12) | ((c2 & 0x3F) << 6) | (c3 & 0x3F)))


def text_hashes(texts: pa.Array) -> list[str]:
    """``text_hash`` of each text, the same strings, with the lowercasing and whitespace
    collapsing done on the UTF-8 bytes of a batch with pyarrow and numpy. A text holding a
    character that ``_char_kinds`` marks PYTHON takes ``text_hash``."""
    out: list[str] = []
    for lo in range(0, len(texts), SIGN_BATCH):
        out += _text_hashes(texts[lo:lo + SIGN_BATCH])
    return out


def _utf8(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The UTF-8 bytes of a large_string array and each text's offset into them."""
    off = np.frombuffer(arr.buffers()[1], np.int64)[arr.offset:arr.offset + len(arr) + 1]
    data = arr.buffers()[2]
    b = np.frombuffer(data, np.uint8)[off[0]:off[-1]] if data is not None else np.empty(0, np.uint8)
    return b, off - off[0]


def _text_hashes(texts: pa.Array) -> list[str]:
    n = len(texts)
    texts = texts.cast(pa.large_string())
    b, off = _utf8(texts)
    lead = np.flatnonzero(b >= 0xC0)
    slow = np.zeros(n, dtype=bool)
    if len(lead):
        python = lead[_char_kinds(_code_points(b, lead)) == PYTHON]
        slow[np.searchsorted(off, python, side="right") - 1] = True
    b, off = _utf8(pc.utf8_lower(texts))
    sp = np.flatnonzero(b <= 32)
    sp = sp[_ASCII_SPACE[b[sp]]]
    lead = np.flatnonzero(b >= 0xC0)
    if len(lead):                               # whitespace beyond ASCII: every byte of it is space
        w = lead[_char_kinds(_code_points(b, lead)) == SPACE]
        if len(w):
            mask = np.zeros(len(b), dtype=bool)
            mask[sp] = mask[w] = mask[w + 1] = True
            mask[(w + 2)[b[w] >= 0xE0]] = True
            sp = np.flatnonzero(mask)
    # Runs of whitespace (split at text starts): the first byte of each run between two
    # words becomes one space; runs at either end of a text go.
    first = np.zeros(len(b) + 1, dtype=bool)
    first[off[:-1]] = True
    brk = np.flatnonzero((np.diff(sp) != 1) | first[sp[1:]]) + 1
    run_lo, run_hi = sp[np.r_[0, brk]] if len(sp) else sp, sp[np.r_[brk, len(sp)] - 1] + 1 if len(sp) else sp
    doc = np.searchsorted(off, run_lo, side="right") - 1
    one = run_lo[(run_lo != off[doc]) & (run_hi != off[doc + 1])]
    keep = np.ones(len(b), dtype=bool)
    keep[sp] = False
    keep[one] = True
    out = b.copy()
    out[one] = 32
    kept = out[keep]
    # bytes kept per text: its bytes, less its whitespace, plus its single spaces
    cut = (off - np.searchsorted(sp, off) + np.searchsorted(one, off)).tolist()
    view = memoryview(kept)
    h = xxhash.xxh128_hexdigest
    return [text_hash(texts[i].as_py()) if s else h(view[cut[i]:cut[i + 1]]) for i, s in enumerate(slow.tolist())]


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, elementwise over uint32 (wrapping): the pre-mix
    datasketch's affine32 scheme applies to each hash before its permutations."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


PERM_CHUNK = 1 << 13   # shingles per permutation pass: num_perm x 8,192 uint32 (4 MiB) stays in cache


def minhashes(texts: pa.Array, p: dict) -> np.ndarray:
    """(n, num_perm) uint32 MinHash signatures, identical to datasketch's
    ``MinHash.bulk(..., hashfunc=int, scheme="affine32")`` over the high 32 bits of each
    shingle hash (a test asserts it). Shingles are hashed in batches with numpy
    (``ngrams.shingle_hashes``); datasketch's own permutations are applied with numpy to
    PERM_CHUNK shingles of whole documents at a time, as a (num_perm, shingles) array
    whose per-document minima are one ``minimum.reduceat``, which skips datasketch's
    per-shingle Python call."""
    k = p["num_perm"]
    out = np.empty((len(texts), k), dtype=np.uint32)
    a, b = MinHash(num_perm=k, seed=p["seed"], scheme=SCHEME).permutations
    a, b = a[:, None], b[:, None]
    buf = np.empty((k, PERM_CHUNK), np.uint32)
    with np.errstate(over="ignore"):
        for lo in range(0, len(texts), SIGN_BATCH):
            batch = texts[lo:lo + SIGN_BATCH]
            h, doc = shingle_hashes(batch, p["shingle_words"])
            hv = _fmix32((h >> np.uint64(32)).astype(np.uint32))[None, :]
            at = np.searchsorted(doc, np.arange(len(batch) + 1))       # every text has a shingle
            d0 = 0
            while d0 < len(batch):       # documents d0..d1, at least one even past PERM_CHUNK
                d1 = max(d0 + 1, int(np.searchsorted(at, at[d0] + PERM_CHUNK, side="right")) - 1)
                s, e = int(at[d0]), int(at[d1])
                x = buf[:, :e - s] if e - s <= PERM_CHUNK else np.empty((k, e - s), np.uint32)
                np.multiply(a, hv[:, s:e], out=x)                         # a_k * h + b_k, mod 2**32
                np.add(x, b, out=x)
                out[lo + d0:lo + d1] = np.minimum.reduceat(x, at[d0:d1] - s, axis=1).T
                d0 = d1
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
    t = pq.read_table(src, columns=["doc_id", "karma", "first_seen", "text"], use_threads=False)
    text = t["text"].combine_chunks()
    flat = minhashes(text, p).reshape(-1)
    offsets = np.arange(0, len(flat) + 1, p["num_perm"], dtype=np.int32)
    table = pa.table({
        "doc_id": t["doc_id"], "karma": t["karma"], "first_seen": t["first_seen"],
        "text_hash": text_hashes(text),
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
    t = pq.read_table(src, columns=["text_hash", "minhash"], use_threads=False)
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

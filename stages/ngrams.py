"""Text normalization, word n-grams and their 64-bit hashes, shared by dedup and decontaminate."""

from __future__ import annotations

import re
import unicodedata
from typing import NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

# Names the word normalization below; stages put it in their task parameters, so that
# outputs built under another normalization (Bloom filters, signatures) are rebuilt.
WORDS_VERSION = "unicode-marks-utf8proc-1"

_ASCII_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lowercase words of Unicode letters, digits and combining marks: punctuation
    stripped, whitespace collapsed. Lowercasing is Unicode's (utf8proc through pyarrow,
    as in ``shingle_hashes``: "İ" -> "i", final "Σ" -> "σ"). ASCII text takes a faster
    path with the same result."""
    if text.isascii():
        return _ASCII_WORD.findall(text.lower())
    _, b, _, s, e = word_spans([text])
    raw = b.tobytes()
    return [raw[i:j].decode() for i, j in zip(s.tolist(), e.tolist())]


def doc_shingles(text: str, n: int) -> list[bytes]:
    """A document's word n-gram shingles for MinHash. A text with no words at all (only
    symbols or emoji) is one shingle of its whitespace-collapsed self, so that such texts
    are near duplicates only of each other's exact copies, never of every other such text."""
    ws = words(text)
    if ws:
        return shingles(ws, n)
    low = text.lower() if text.isascii() else pc.utf8_lower(pa.array([text], pa.string()))[0].as_py()
    return [" ".join(low.split()).encode()]


def shingles(ws: list[str], n: int) -> list[bytes]:
    """Word n-grams as bytes; a text shorter than n words is one shingle."""
    if len(ws) < n:
        return [" ".join(ws).encode()] if ws else []
    return [" ".join(ws[i:i + n]).encode() for i in range(len(ws) - n + 1)]


# --- Vectorized shingle hashing (dedup's hot path) -----------------------------------
#
# The same words and shingles as ``doc_shingles``, hashed to uint64 with numpy over a
# whole batch of texts at once, instead of building every shingle as a Python bytes
# object. Words are found on the UTF-8 bytes of the lowercased text (pyarrow's
# ``utf8_lower``): ASCII bytes by a 128-entry table, multi-byte characters by a table of
# every code point's class (``_word_table``), the one ``words`` uses too.

_P = np.uint64(0xD6E8FEB86659FD93)   # odd: the polynomial base for word hashes
_K = np.uint64(0x9E3779B97F4A7C15)   # odd: combines word hashes into a shingle hash
_CHUNK = 1 << 20                     # word hashes: bytes per pass (bounds the power tables)
_word_cp = np.full(0x110000, -1, dtype=np.int8)    # per code point: 1 word char, 0 not, -1 not looked up yet
_pows: dict[int, tuple[np.ndarray, np.ndarray]] = {}


def _is_word_cp(c: int) -> bool:
    """A letter or digit (``str.isalnum``) or a combining mark (category M*, so that
    Devanagari's vowel signs stay inside their words)."""
    return chr(c).isalnum() or unicodedata.category(chr(c))[0] == "M"


def _word_classes(cps: np.ndarray) -> np.ndarray:
    """``_is_word_cp`` of each code point, from a table filled in as code points are first
    seen (a text holds a few hundred distinct ones; the whole table would take 0.3 s)."""
    got = _word_cp[cps]
    unknown = cps[got < 0]
    if len(unknown):
        for c in np.unique(unknown).tolist():
            _word_cp[c] = _is_word_cp(c)
        got = _word_cp[cps]
    return got.astype(bool)


_ASCII_MASK = np.r_[[_is_word_cp(c) for c in range(128)], np.ones(128, dtype=bool)]   # by byte; >= 128: see below


def _word_table() -> np.ndarray:
    """For every code point, whether it is a word character (``_is_word_cp``); 0.3 s."""
    return _word_classes(np.arange(0x110000))


def _powers(n: int, base: np.uint64 = _P) -> tuple[np.ndarray, np.ndarray]:
    """(base**k, base**-k) mod 2**64 for k < n (cached per odd base, grown by doubling)."""
    have = _pows.get(int(base))
    if have is None or len(have[0]) < n:
        k = max(n, 2 * len(have[0]) if have else 0, _CHUNK + 1)
        inv = np.uint64(pow(int(base), -1, 2**64))
        with np.errstate(over="ignore"):
            have = _pows[int(base)] = tuple(
                np.r_[np.uint64(1), np.cumprod(np.full(k - 1, x, dtype=np.uint64), dtype=np.uint64)] for x in (base, inv))
    return have


def _word_hashes(b: np.ndarray, off: np.ndarray, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Polynomial hash of each word's bytes, sum of byte * P**(bytes after it in the word),
    from prefix sums of byte * P**-position: one pass per chunk of whole texts."""
    wh = np.empty(len(s), dtype=np.uint64)
    lo, k0 = 0, 0
    with np.errstate(over="ignore"):
        while k0 < len(s):
            lo = int(s[k0])
            cut = int(np.searchsorted(off, lo + _CHUNK, side="right")) - 1
            hi = max(int(off[cut]), int(e[k0]))            # whole texts, at least one word
            k1 = int(np.searchsorted(s, hi, side="left"))
            pp, rr = _powers(hi - lo + 1)
            g = np.empty(hi - lo + 1, dtype=np.uint64)
            g[0] = 0
            np.cumsum(b[lo:hi].astype(np.uint64) * rr[:hi - lo], out=g[1:])
            ws, we = s[k0:k1] - lo, e[k0:k1] - lo
            wh[k0:k1] = (g[we] - g[ws]) * pp[we - 1]
            k0 = k1
    return wh


def mix64(h: np.ndarray) -> np.ndarray:
    """``_mix64``, for callers that mix the folds of ``raw_ngrams`` themselves."""
    return _mix64(h)


def unmix64(h: np.ndarray) -> np.ndarray:
    """The inverse of ``_mix64`` (each step of the splitmix64 finalizer is a bijection)."""
    with np.errstate(over="ignore"):
        h = h ^ (h >> np.uint64(31)) ^ (h >> np.uint64(62))
        h = h * np.uint64(pow(0x94D049BB133111EB, -1, 2**64))
        h = h ^ (h >> np.uint64(27)) ^ (h >> np.uint64(54))
        h = h * np.uint64(pow(0xBF58476D1CE4E5B9, -1, 2**64))
        return h ^ (h >> np.uint64(30)) ^ (h >> np.uint64(60))


def _mix64(h: np.ndarray) -> np.ndarray:
    """The splitmix64 finalizer: the last step of every word and n-gram hash."""
    with np.errstate(over="ignore"):
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return h ^ (h >> np.uint64(31))


def _word_mask(b: np.ndarray) -> np.ndarray:
    """Per byte of UTF-8 text: does it belong to a word character?"""
    mask = _ASCII_MASK[b]                     # non-ASCII: a word char unless shown otherwise
    lead = np.flatnonzero(b >= 0xC0)
    if len(lead):
        pad = np.r_[b, np.zeros(3, dtype=np.uint8)]
        c0 = pad[lead].astype(np.uint32)
        c1, c2, c3 = ((pad[lead + k].astype(np.uint32) & 0x3F) for k in (1, 2, 3))
        cp = np.where(c0 < 0xE0, ((c0 & 0x1F) << 6) | c1,
                      np.where(c0 < 0xF0, ((c0 & 0x0F) << 12) | (c1 << 6) | c2,
                               ((c0 & 0x07) << 18) | (c1 << 12) | (c2 << 6) | c3))
        no = ~_word_classes(np.minimum(cp, 0x10FFFF))
        at, c0 = lead[no], c0[no]
        mask[at] = mask[at + 1] = False
        mask[at[c0 >= 0xE0] + 2] = False
        mask[at[c0 >= 0xF0] + 3] = False
    return mask


def word_spans(texts, lower: bool = True) -> tuple[pa.Array, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The lowercased texts, their UTF-8 bytes, each text's byte offset, and each word's
    start and end byte (a word never runs across two texts). ``lower=False`` finds the
    same words in the texts as they are (case does not change what is a word character)."""
    if isinstance(texts, pa.ChunkedArray):
        texts = texts.combine_chunks()
    elif not isinstance(texts, pa.Array):
        texts = pa.array(texts, pa.string())
    arr = texts.cast(pa.large_string())
    if lower:
        arr = pc.utf8_lower(arr)
    _, offsets, data = arr.buffers()
    off = np.frombuffer(offsets, dtype=np.int64)[arr.offset: arr.offset + len(arr) + 1]
    b = np.frombuffer(data, dtype=np.uint8)[off[0]:off[-1]] if data is not None and len(arr) else np.empty(0, np.uint8)
    off = off - off[0]
    word = _word_mask(b)
    inner = off[1:-1][off[1:-1] < len(b)]
    start = word.copy()
    start[1:] &= ~word[:-1]
    start[inner] = word[inner]
    end = word.copy()
    end[:-1] &= ~word[1:]
    end[inner - 1] = word[inner - 1]
    return arr, b, off, np.flatnonzero(start), np.flatnonzero(end) + 1


class WordNgrams(NamedTuple):
    """Word n-grams of a batch of texts, hashed with numpy (see ``word_ngrams``)."""
    hashes: np.ndarray       # uint64, one per n-gram, grouped by text in order
    doc: np.ndarray          # int64: the text of each n-gram
    first: np.ndarray        # int64: the n-gram's first word, an index into starts/ends
    starts: np.ndarray       # int64: each word's first byte in the lowercased UTF-8 batch
    ends: np.ndarray         # int64: each word's end byte
    offsets: np.ndarray      # int64: each text's first byte (len = texts + 1)
    word_hashes: np.ndarray  # uint64, one per word
    word_doc: np.ndarray     # int64: the text of each word
    lowered: pa.Array        # the lowercased texts


class RawNgrams(NamedTuple):
    """The n-gram folds of a batch before the final mix (see ``raw_ngrams``)."""
    folds: np.ndarray        # uint64, one per word position i < words - n + 1: ``unmix64`` of
                             # the hash of the n-gram at i, when its n words are in one text
    word_doc: np.ndarray     # int64: the text of each word
    count: int               # how many positions hold a real n-gram (all n words in one text)
    offsets: np.ndarray      # int64: each text's first byte (len = texts + 1)


def raw_ngrams(texts, n: int) -> RawNgrams:
    """``word_ngrams`` up to the fold: the final mix and the selection of the positions
    whose n words share a text are left to the caller, who may need them for a few
    positions only (``hash = _mix64(fold)``; a position i is an n-gram when
    ``word_doc[i] == word_doc[i + n - 1]``)."""
    _, b, off, s, e = word_spans(texts)
    with np.errstate(over="ignore"):
        wh = _mix64(_word_hashes(b, off, s, e) ^ ((e - s).astype(np.uint64) * _K))
        # each word's text: words are in text order, so a repeat of each text's word count
        counts = np.diff(np.searchsorted(s, off))
        doc = np.repeat(np.arange(len(off) - 1), counts)
        m = len(wh) - n + 1
        if m <= 0:
            return RawNgrams(np.empty(0, np.uint64), doc, 0, off)
        # h[i] = sum_k wh[i+k] K**(n-1-k) (Horner's fold of n word hashes), as
        # (G[i+n] - G[i]) K**(i+n-1) from the prefix sums G of wh[t] K**-t: 5 passes, not 2n
        kp, kr = _powers(len(wh) + 1, _K)
        g = np.empty(len(wh) + 1, dtype=np.uint64)
        g[0] = 0
        np.cumsum(wh * kr[:len(wh)], out=g[1:])
        h = (g[n:] - g[:m]) * kp[n - 1:m + n - 1]
    return RawNgrams(h, doc, int(np.maximum(counts - n + 1, 0).sum()), off)


def word_ngrams(texts, n: int) -> WordNgrams:
    """Every word ``n``-gram (``words``' words) of every text, as a uint64 hash, without a
    Python object per word: word boundaries from the UTF-8 bytes, a polynomial hash per
    word, and the ``n`` word hashes of an n-gram folded and mixed. A text of fewer than
    ``n`` words has no n-gram here."""
    arr, b, off, s, e = word_spans(texts)
    with np.errstate(over="ignore"):
        wh = _mix64(_word_hashes(b, off, s, e) ^ ((e - s).astype(np.uint64) * _K))
        # each word's text: words are in text order, so a repeat of each text's word count
        doc = np.repeat(np.arange(len(off) - 1), np.diff(np.searchsorted(s, off)))
        m = len(wh) - n + 1
        if m > 0:
            kp, kr = _powers(len(wh) + 1, _K)      # the fold as in raw_ngrams
            g = np.empty(len(wh) + 1, dtype=np.uint64)
            g[0] = 0
            np.cumsum(wh * kr[:len(wh)], out=g[1:])
            h = (g[n:] - g[:m]) * kp[n - 1:m + n - 1]
            ok = np.flatnonzero(doc[n - 1:] == doc[:m])        # all n words in one text
            hashes, hdoc = _mix64(h[ok]), doc[ok]
        else:
            ok, hashes, hdoc = (np.empty(0, np.int64), np.empty(0, np.uint64), np.empty(0, np.int64))
    return WordNgrams(hashes, hdoc, ok, s, e, off, wh, doc, arr)


def shingle_hashes(texts, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, doc): a uint64 hash of every word ``n``-gram of every text, and the index of
    its text (ascending). The multiset of hashes per text matches ``doc_shingles``, up to
    64-bit collisions: a text of fewer than ``n`` words is one shingle of all of them, and
    a text with no words is one shingle of its whitespace-collapsed self."""
    g = word_ngrams(texts, n)
    hashes, hdoc, wh = g.hashes, g.doc, g.word_hashes
    n_docs = len(g.lowered)
    counts = np.bincount(g.word_doc, minlength=n_docs)
    extra_h, extra_d = [], []
    first = np.r_[0, np.cumsum(counts)[:-1]]
    with np.errstate(over="ignore"):
        for d in np.flatnonzero(counts < n).tolist():
            if counts[d]:                           # fewer than n words: one shingle of them all
                h = np.uint64(0)
                for w in wh[first[d]:first[d] + counts[d]]:
                    h = h * _K + w
                extra_h.append(_mix64(np.array([h], dtype=np.uint64))[0])
            else:                                   # no words at all
                extra_h.append(np.uint64(xxhash.xxh3_64_intdigest(" ".join(g.lowered[d].as_py().split()).encode())))
            extra_d.append(d)
    if extra_d:
        hashes = np.r_[hashes, np.array(extra_h, dtype=np.uint64)]
        hdoc = np.r_[hdoc, np.array(extra_d, dtype=np.int64)]
        order = np.argsort(hdoc, kind="stable")
        hashes, hdoc = hashes[order], hdoc[order]
    return hashes, hdoc

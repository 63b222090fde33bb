"""Reading Reddit submissions from dump files: formats, fast decoding and filtering.

Dumps are NDJSON, one submission object per line: Pushshift ``RS_YYYY-MM`` files and
the Arctic-Shift files that replaced them share the format. They come as .zst (2 GiB
window), .xz, .bz2, .gz or plain. Every compressed format is read through its
decompressor object in 32 KiB input steps, concatenated streams and frames included,
so memory stays bounded. A truncated file yields everything before the damage and then
raises ``TruncatedDumpError``. Corrupt data raises the decompressor's error; what was
decoded before it is kept, except the output of the one 32 KiB step that hit it (a
decompressor returns nothing from a call that fails).

Lines are decoded in batches with msgspec into ``Submission``: only the fields harvest
reads, and the rest of each ~2 KB record is skipped without building Python objects.
A batch with a bad line is decoded again line by line, so each bad line is counted
(``malformed_json``) and every good one kept.
"""

from __future__ import annotations

import bz2
import lzma
import re
import zlib
from pathlib import Path
from typing import Any, Iterator

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from pipeline.schemas import SUBMISSIONS

from . import urls as U

READ_BYTES = 32 * 1024         # compressed input per step (bounds what corruption can cost)
BATCH_BYTES = 4 * 1024 * 1024  # decompressed NDJSON per msgspec batch

# removed_by_category values Reddit uses when the author deleted the post.
DELETED_CATEGORIES = frozenset({"deleted", "author"})


class TruncatedDumpError(EOFError):
    """A compressed dump ends inside a stream or frame."""


# What a decompressor raises on damaged input (bz2 raises OSError).
CORRUPT_ERRORS = (zstandard.ZstdError, lzma.LZMAError, zlib.error, OSError)


class Submission(msgspec.Struct):
    """The fields harvest reads; every other field of a dump line is skipped."""

    url: Any = None
    score: Any = None
    is_self: Any = None
    over_18: Any = None
    created_utc: Any = None
    subreddit: Any = None
    id: Any = None
    title: Any = None
    domain: Any = None
    removed_by_category: Any = None
    banned_by: Any = None


_DECODER = msgspec.json.Decoder(Submission)


def _decompressor(name: str):
    if name.endswith(".zst"):
        return zstandard.ZstdDecompressor(max_window_size=2**31).decompressobj
    if name.endswith(".xz"):
        return lzma.LZMADecompressor
    if name.endswith(".bz2"):
        return bz2.BZ2Decompressor
    if name.endswith(".gz"):
        return lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    return None


def iter_chunks(path: Path) -> Iterator[bytes]:
    """Decompressed bytes of a dump, in chunks; raises TruncatedDumpError after the last good byte."""
    make = _decompressor(path.name)
    with open(path, "rb") as f:
        if make is None:
            while chunk := f.read(BATCH_BYTES):
                yield chunk
            return
        d, in_stream = make(), False
        while data := f.read(READ_BYTES):
            while data:
                in_stream = True
                out = d.decompress(data)
                if out:
                    yield out
                data = b""
                if d.eof:                 # stream/frame complete; what follows starts the next one
                    data, in_stream, d = d.unused_data, False, make()
        if in_stream:
            raise TruncatedDumpError("compressed data ends inside a stream")


def iter_batches(path: Path) -> Iterator[bytes]:
    """Whole lines of the decompressed dump, about BATCH_BYTES at a time."""
    tail, pending, size = b"", [], 0
    try:
        for chunk in iter_chunks(path):
            pending.append(chunk)
            size += len(chunk)
            if size >= BATCH_BYTES:
                buf = tail + b"".join(pending)
                cut = buf.rfind(b"\n") + 1
                tail, pending, size = buf[cut:], [], 0
                if cut:
                    yield buf[:cut]
    except (TruncatedDumpError, *CORRUPT_ERRORS):
        buf = tail + b"".join(pending)
        cut = buf.rfind(b"\n") + 1
        if cut:
            yield buf[:cut]            # every complete line before the damage
        raise
    rest = tail + b"".join(pending)
    if rest.strip():
        yield rest


def decode_batch(buf: bytes) -> tuple[list[Submission], int]:
    """(submissions, malformed line count) for a buffer of whole lines."""
    try:
        return _DECODER.decode_lines(buf), 0
    except (msgspec.DecodeError, msgspec.ValidationError):
        subs, bad = [], 0
        for line in buf.split(b"\n"):
            if line.strip():
                try:
                    subs.append(_DECODER.decode(line))
                except (msgspec.DecodeError, msgspec.ValidationError):
                    bad += 1
        return subs, bad


def as_int(v, default: int = 0) -> int:
    """Dumps hold numbers as ints, floats or strings ("1119552233"); anything else is ``default``."""
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    try:
        return int(float(v))
    except (TypeError, ValueError):
        return default


class Filter:
    """Decides drop reasons for a batch of submissions, column-wise, and returns the rows to keep.

    Everything that can be decided from raw fields is decided with Arrow compute kernels
    over the whole batch (RE2 regexes, no backtracking): flags, the scheme, the raw host
    (Reddit, blocklist; verdicts computed once per distinct host and cached) and the raw
    path's extension. The first matching reason wins, in the order of ``REASONS``. URL
    normalization runs only for what survives (``urls.normalize``: fast paths for plain
    URLs, courlan for the rest), through a bounded cache.
    """

    REASONS = ("no_url", "self_post", "nsfw", "deleted", "removed", "bad_scheme", "reddit_link",
               "media_url", "blocklisted_domain")
    CACHE_LIMIT = 1 << 16

    # RE2 patterns, run on the lowercased URL (DFA matching; captures only for the host).
    _SCHEME = r"^https?://"
    _HOST = r"^https?://(?P<h>[a-z0-9.\-]+)(?:[/?#\\]|$)"   # the common case; others via urls.raw_host

    def __init__(self, allow_nsfw: bool, blocklist: frozenset[str], media_extensions):
        self.allow_nsfw = allow_nsfw
        self.blocklist = blocklist
        media = sorted(frozenset(e.lower().lstrip(".") for e in media_extensions))
        # The last path segment ends in ".<ext>", before any query or fragment.
        alternatives = "|".join(re.escape(e) for e in media) or "(?!)"
        self.media_re = rf"(?s)^https?://[^?#]*/[^/?#]*\.(?:{alternatives})(?:[?#].*)?$"
        self.cache: dict[str, str | None] = {}
        self.host_verdicts: dict[str, tuple[bool, bool]] = {}

    def _host_verdict(self, hostname: str) -> tuple[bool, bool]:
        """(is a Reddit host, is blocklisted), cached."""
        v = self.host_verdicts.get(hostname)
        if v is None:
            if len(self.host_verdicts) >= self.CACHE_LIMIT:
                self.host_verdicts.clear()
            v = self.host_verdicts[hostname] = (U.domain_matches(hostname, U.REDDIT_DOMAINS),
                                                U.domain_matches(hostname, self.blocklist))
        return v

    def normalize(self, raw: str) -> str | None:
        url = self.cache.get(raw, "")
        if url == "":
            if len(self.cache) >= self.CACHE_LIMIT:
                self.cache.clear()
            url = self.cache[raw] = U.normalize(raw)
        return url

    def _hosts(self, low: pa.Array, candidates: np.ndarray) -> pa.Array:
        """The raw host of every (lowercased) URL ("" where there is none to judge)."""
        h = pc.utf8_rtrim(pc.struct_field(pc.extract_regex(low, self._HOST), "h"), characters=".")
        odd = np.flatnonzero(candidates & _mask(pc.is_null(h)))
        if len(odd):    # userinfo, ports, IPv6 brackets, non-ASCII: the exact string splitter
            hosts = h.to_pylist()
            for i in odd.tolist():
                hosts[i] = U.raw_host(low[i].as_py())
            h = pa.array(hosts, pa.string())
        return pc.fill_null(h, "")

    def batch(self, subs: list) -> tuple[dict[str, int], pa.Table]:
        """(drop counts by reason, kept rows as a SUBMISSIONS table) for a list of submissions."""
        n = len(subs)
        if not n:
            return {}, SUBMISSIONS.empty_table()
        raw = [s.url for s in subs]
        url = pc.utf8_trim_whitespace(pa.array([u if type(u) is str else None for u in raw], pa.string()))
        no_url = ~_mask(pc.greater(pc.utf8_length(url), 0))
        domain = pa.array([d if type(d) is str else None for d in (s.domain for s in subs)], pa.string())
        self_post = np.array([s.is_self is True for s in subs]) | _mask(pc.starts_with(domain, "self."))
        nsfw = np.array([s.over_18 is True for s in subs]) & (not self.allow_nsfw)
        deleted = np.array([(type(s.removed_by_category) is str and s.removed_by_category in DELETED_CATEGORIES)
                            or s.title == "[deleted by user]" for s in subs])
        removed = np.array([bool(s.removed_by_category) or bool(s.banned_by) for s in subs])
        low = pc.utf8_lower(url)
        bad_scheme = ~_mask(pc.match_substring_regex(low, self._SCHEME))
        early = no_url | self_post | nsfw | deleted | removed | bad_scheme
        hosts = pc.dictionary_encode(self._hosts(low, ~early))
        verdicts = np.array([self._host_verdict(h) for h in hosts.dictionary.to_pylist()], dtype=bool)
        verdicts = verdicts.reshape(-1, 2)[hosts.indices.to_numpy()]
        media = _mask(pc.match_substring_regex(low, self.media_re))
        conditions = [no_url, self_post, nsfw, deleted, removed, bad_scheme, verdicts[:, 0], media, verdicts[:, 1]]
        reason = np.select(conditions, np.arange(1, len(conditions) + 1, dtype=np.int8), 0)
        keep = np.flatnonzero(reason == 0)
        counts = np.bincount(reason, minlength=len(conditions) + 1)
        drops = {name: int(c) for name, c in zip(self.REASONS, counts[1:]) if c}
        urls = [self.normalize(u) for u in url.take(keep).to_pylist()]
        ok = [i for i, u in enumerate(urls) if u is not None]
        if len(ok) < len(urls):             # courlan found no usable scheme and host
            drops["bad_scheme"] = drops.get("bad_scheme", 0) + len(urls) - len(ok)
        kept = [subs[keep[i]] for i in ok]
        urls = [urls[i] for i in ok]
        table = pa.table({
            "url": pa.array(urls, pa.string()),
            "domain": pa.array([U.raw_host(u) for u in urls], pa.string()),
            "score": pa.array([v if type(v) is int else as_int(v) for v in (s.score for s in kept)], pa.int64()),
            "created_utc": pa.array([v if type(v) is int else as_int(v) for v in (s.created_utc for s in kept)],
                                    pa.int64()),
            "subreddit": pa.array([v if type(v) is str else str(v or "") for v in (s.subreddit for s in kept)],
                                  pa.string()),
            "id": pa.array([v if type(v) is str else str(v or "") for v in (s.id for s in kept)], pa.string()),
            "title": pa.array([v if type(v) is str else None for v in (s.title for s in kept)], pa.string()),
            "url_hash": pa.array([U.url_hash(u) for u in urls], pa.uint64()),
        }, schema=SUBMISSIONS)
        return drops, table

    def __call__(self, s: Submission) -> tuple[str | None, str | None, str | None]:
        """One submission: (reason, None, None) to drop, or (None, normalized url, host) to keep."""
        drops, table = self.batch([s])
        if drops:
            return next(iter(drops)), None, None
        return None, table["url"][0].as_py(), table["domain"][0].as_py()


def _mask(a) -> np.ndarray:
    """A boolean Arrow array as numpy, null as False."""
    return pc.fill_null(a, False).to_numpy(zero_copy_only=False)

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
import zlib
from pathlib import Path
from typing import Any, Iterator

import msgspec
import zstandard

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
    """Decides, per submission, a drop reason or the (normalized URL, host) to keep.

    Everything that can be decided from raw fields is: self/NSFW/removed flags, the
    scheme, the raw host (Reddit, blocklist; verdicts cached per host) and the raw path's
    extension. URL normalization, the costly step, runs only for what survives, through a
    bounded cache.
    """

    CACHE_LIMIT = 1 << 16

    def __init__(self, allow_nsfw: bool, blocklist: frozenset[str], media_extensions):
        self.allow_nsfw = allow_nsfw
        self.blocklist = blocklist
        self.media = frozenset(e.lower().lstrip(".") for e in media_extensions)
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

    def __call__(self, s: Submission) -> tuple[str | None, str | None, str | None]:
        """(reason, None, None) to drop, or (None, normalized url, host) to keep."""
        raw = s.url
        if not isinstance(raw, str) or not raw.strip():
            return "no_url", None, None
        if s.is_self is True or (isinstance(s.domain, str) and s.domain.startswith("self.")):
            return "self_post", None, None
        if s.over_18 is True and not self.allow_nsfw:
            return "nsfw", None, None
        if s.removed_by_category in DELETED_CATEGORIES or s.title == "[deleted by user]":
            return "deleted", None, None
        if s.removed_by_category or s.banned_by:
            return "removed", None, None
        raw = raw.strip()
        if raw[:8].lower().partition("://")[0] not in ("http", "https"):
            return "bad_scheme", None, None
        hostname = U.raw_host(raw)
        is_reddit, is_blocked = self._host_verdict(hostname)
        if is_reddit:
            return "reddit_link", None, None
        path = raw.partition("://")[2].split("?", 1)[0].split("#", 1)[0]
        last = path.rsplit("/", 1)[-1] if "/" in path else ""
        if "." in last and last.rsplit(".", 1)[-1].lower() in self.media:
            return "media_url", None, None
        if is_blocked:
            return "blocklisted_domain", None, None
        url = self.normalize(raw)
        if url is None:
            return "bad_scheme", None, None
        return None, url, U.raw_host(url)

"""Reading Reddit submissions from dump files: formats, fast decoding and filtering.

Dumps are NDJSON, one submission object per line: Pushshift ``RS_YYYY-MM`` files and
the Arctic-Shift files that replaced them share the format. They come as .zst (2 GiB
window), .xz, .bz2, .gz or plain. Every compressed format is read through its
decompressor object in 32 KiB input steps, concatenated streams and frames included,
so memory stays bounded. A truncated file yields everything before the damage and then
raises ``TruncatedDumpError``. Corrupt data yields every byte the decompressor produces
before the error, as the reference CLIs (``zstd -dc``, ``xz -dc``, ...) write them, and
then raises the decompressor's error: a decompressor returns nothing from a call that
fails, so the failed step is decoded again a byte at a time (``_salvage``). Only
complete lines are kept from a damaged file.

Lines are decoded in batches with msgspec into ``Submission``: only the fields harvest
reads, and the rest of each ~2 KB record is skipped without building Python objects.
A batch with a bad line is decoded again line by line, so each bad line is counted
(``malformed_json``) and every good one kept. ``Filter`` then gives each submission
one drop reason (``Filter.REASONS``, then ``bad_value``) or a SUBMISSIONS row.
"""

from __future__ import annotations

import bz2
import lzma
import math
import re
import zlib
from pathlib import Path
from typing import Any, Iterator

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import zstandard

from webtext.pipeline.schemas import SUBMISSIONS, UTC_S

from . import urls as U

READ_BYTES = 32 * 1024         # compressed input per step (bounds what corruption can cost)
BATCH_BYTES = 4 * 1024 * 1024  # decompressed NDJSON per msgspec batch

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# removed_by_category values Reddit uses when the author deleted the post.
DELETED_CATEGORIES = frozenset({"deleted", "author"})


class TruncatedDumpError(EOFError):
    """A compressed dump ends inside a stream or frame."""


# What a decompressor raises on damaged input (bz2 raises OSError).
CORRUPT_ERRORS = (zstandard.ZstdError, lzma.LZMAError, zlib.error, OSError)


class Submission(msgspec.Struct, gc=False):
    """The fields harvest reads; every other field of a dump line is skipped. Not tracked
    by the garbage collector (values decoded from JSON cannot form a cycle), so millions
    of them do not make its collections slower."""

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


_ZLIB_DECOMPRESS = type(zlib.decompressobj())


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
    """Decompressed bytes of a dump, in chunks; raises TruncatedDumpError after the last good byte.

    Corrupt data raises the decompressor's error after every byte it could produce first
    (``_salvage``), as ``xz -dc``, ``zstd -dc``, ``bzip2 -dc`` and ``gzip -dc`` write them.
    """
    make = _decompressor(path.name)
    with open(path, "rb") as f:
        if make is None:
            while chunk := f.read(BATCH_BYTES):
                yield chunk
            return
        d, in_stream = make(), False
        start = at = done = 0     # file offsets of the current stream and of `data`; bytes it produced
        while data := f.read(READ_BYTES):
            while data:
                in_stream = True
                try:
                    out = d.decompress(data)
                except CORRUPT_ERRORS:
                    if rest := _salvage(path, make, start, at, len(data), done):
                        yield rest
                    raise
                if out:
                    done += len(out)
                    yield out
                if d.eof:                 # stream/frame complete; what follows starts the next one
                    at += len(data) - len(d.unused_data)
                    data, in_stream, d, start, done = d.unused_data, False, make(), at, 0
                else:
                    at, data = at + len(data), b""
        if in_stream:
            raise TruncatedDumpError("compressed data ends inside a stream")


def _salvage(path: Path, make, start: int, at: int, size: int, done: int) -> bytes:
    """What the failed step (``size`` bytes at offset ``at``) decodes to before the error.

    A decompressor returns nothing from a call that fails, and none can be copied, so the
    damaged stream is decoded again from ``start``: quietly up to ``at`` (``done`` bytes,
    already yielded), then the failed step one input byte at a time, with at most one output
    byte per call where the decompressor can bound it (zstd fails a whole block at once).
    This costs one more pass over the damaged stream, once per damaged file.
    """
    d = make()
    out: list[bytes] = []
    try:
        with open(path, "rb") as f:
            f.seek(start)
            seen, left = 0, at - start
            while left > 0 and (data := f.read(min(READ_BYTES, left))):
                left -= len(data)
                seen += len(d.decompress(data))
            step = f.read(size)
        if seen != done:
            return b""
        for i in range(len(step)):
            _feed_byte(d, step[i:i + 1], out)
            if d.eof:
                break
    except CORRUPT_ERRORS:
        pass
    return b"".join(out)


def _feed_byte(d, byte: bytes, out: list[bytes]) -> None:
    if isinstance(d, (lzma.LZMADecompressor, bz2.BZ2Decompressor)):
        out.append(d.decompress(byte, max_length=1))
        while not d.needs_input and not d.eof:
            out.append(d.decompress(b"", max_length=1))
    elif isinstance(d, _ZLIB_DECOMPRESS):   # unused input comes back in unconsumed_tail
        piece = d.decompress(byte, 1)
        while piece and not d.eof:
            out.append(piece)
            piece = d.decompress(d.unconsumed_tail, 1)
        out.append(piece)
    else:
        out.append(d.decompress(byte))


def iter_batches(path: Path) -> Iterator[bytes]:
    """Whole lines of the decompressed dump, about BATCH_BYTES at a time.

    Each byte is copied a bounded number of times, however long a line is (no quadratic
    re-joining of an unfinished line). After damage, only complete lines are yielded: a
    partial last line is not a line, and the unreadable rest counts once as
    ``truncated_file`` / ``corrupt_file``.
    """
    pending: list[bytes] = []     # decompressed chunks not yet yielded; the first may start mid-line
    size = 0
    try:
        for chunk in iter_chunks(path):
            pending.append(chunk)
            size += len(chunk)
            if size >= BATCH_BYTES and (cut := chunk.rfind(b"\n") + 1):
                pending[-1] = chunk[:cut]
                yield b"".join(pending)
                pending, size = [chunk[cut:]], len(chunk) - cut
    except (TruncatedDumpError, *CORRUPT_ERRORS):
        buf = b"".join(pending)
        cut = buf.rfind(b"\n") + 1
        if cut:
            yield buf[:cut]            # every complete line before the damage
        raise
    rest = b"".join(pending)
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


def as_int(v, default: int = 0) -> int | None:
    """Dumps hold numbers as ints, floats or strings ("1119552233", "12.0"), truncated to an
    int here; anything else (missing, a bool, a word) is ``default``. None for a number that
    is not finite ("1e400" as a string, "nan").
    """
    if isinstance(v, bool):
        return default
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        try:
            return int(v)              # exact, however long; "12.5" and "1e3" go on to float
        except ValueError:
            pass
    try:
        f = float(v)
    except (TypeError, ValueError, OverflowError):
        return default
    return int(f) if math.isfinite(f) else None


def int64_column(values: list) -> pa.Array:
    """``as_int`` of each value as int64; null where it is None or outside int64.

    Valid values cost one list comprehension and one Arrow conversion; only a batch that
    holds an out-of-range integer (Arrow raises OverflowError) is checked value by value.
    """
    ints = [v if type(v) is int else as_int(v) for v in values]
    try:
        return pa.array(ints, pa.int64())
    except OverflowError:
        return pa.array([v if v is not None and INT64_MIN <= v <= INT64_MAX else None for v in ints], pa.int64())


class Filter:
    """Decides drop reasons for a batch of submissions, column-wise, and returns the rows to keep.

    Everything that can be decided from raw fields is decided with Arrow compute kernels
    over the whole batch (RE2 regexes, no backtracking). The first matching reason wins,
    in the order of ``REASONS``, so the URL itself (scheme, raw host, path extension) is
    judged only on rows that no flag (no URL, self post, NSFW, deleted, removed) dropped
    already, and the media regex only where no earlier URL reason applies. Reddit,
    blocklist and host-validity verdicts are computed once per distinct host and cached
    (a host matches a list when it or a parent domain is on it: one set test each).
    Normalization runs only for what survives: a plain ASCII URL whose scheme and host are
    lowercase is its own normalized and fetch form (one DFA match for the batch); the rest
    go through ``urls.harvest_forms`` (fast paths, courlan for the rest) and a bounded cache.

    ``bad_url`` is a URL no client can fetch: longer than ``max_url_length`` characters
    (decided on the length alone, before any other work on it), a host that is not a DNS
    name or IP literal (``urls.valid_host``), or a port outside 0-65535. ``bad_value`` is
    decided last, on the rows that pass everything else: a score or created_utc that is a
    number outside int64 or not finite. A missing or non-numeric one is 0, as before.
    """

    REASONS = ("no_url", "self_post", "nsfw", "deleted", "removed", "bad_scheme", "bad_url", "reddit_link",
               "media_url", "blocklisted_domain")
    CACHE_LIMIT = 1 << 16

    # RE2 patterns, run on the lowercased URL (DFA matching; captures only for the host).
    _HOST = r"^https?://(?P<h>[a-z0-9.\-]+)(?:[/?#\\]|$)"   # the common case; others via urls.raw_host
    # urls._SIMPLE as RE2 for ASCII strings, its scheme and host lowercase: a plain URL
    # without a query that normalization leaves as it is.
    _PLAIN = r"^https?://[a-z0-9-]+(?:\.[a-z0-9-]+)+(?:/[A-Za-z0-9_~-]+(?:\.[A-Za-z0-9_~-]+)*)*/?$"

    def __init__(self, allow_nsfw: bool, blocklist: frozenset[str], media_extensions, max_url_length: int = 2083):
        self.allow_nsfw = allow_nsfw
        self.max_url_length = max_url_length
        self.blocklist = frozenset(blocklist)
        media = sorted(frozenset(e.lower().lstrip(".") for e in media_extensions))
        # The last path segment ends in ".<ext>", before any query or fragment.
        alternatives = "|".join(re.escape(e) for e in media) or "(?!)"
        self.media_re = rf"(?s)^https?://[^?#]*/[^/?#]*\.(?:{alternatives})(?:[?#].*)?$"
        self.cache: dict[str, tuple[str, str, str] | None] = {}
        self.host_verdicts: dict[str, tuple[bool, bool, bool]] = {}
        self.reddit = frozenset(U.REDDIT_DOMAINS)

    def _host_verdict(self, hostname: str) -> tuple[bool, bool, bool]:
        """(is not a valid host, is a Reddit host, is blocklisted), cached. A host matches a
        domain list when it or one of its parent domains is on it: one set test each."""
        v = self.host_verdicts.get(hostname)
        if v is None:
            if len(self.host_verdicts) >= self.CACHE_LIMIT:
                self.host_verdicts.clear()
            parts = hostname.split(".")
            suffixes = [".".join(parts[i:]) for i in range(len(parts))]
            v = self.host_verdicts[hostname] = (not U.valid_host(hostname), not self.reddit.isdisjoint(suffixes),
                                                not self.blocklist.isdisjoint(suffixes))
        return v

    def forms(self, raw: str) -> tuple[str, str, str] | None:
        """``urls.harvest_forms`` (normalized URL, its host, fetch form), through a bounded cache."""
        got = self.cache.get(raw, False)
        if got is False:
            if len(self.cache) >= self.CACHE_LIMIT:
                self.cache.clear()
            got = self.cache[raw] = U.harvest_forms(raw)
        return got

    def normalize(self, raw: str) -> str | None:
        got = self.forms(raw)
        return None if got is None else got[0]

    def _hosts(self, low: pa.Array, candidates: np.ndarray) -> tuple[pa.Array, np.ndarray]:
        """(the raw host of every lowercased URL, "" where there is none to judge; where the
        port is unusable). The common case has no port, so only odd URLs can have a bad one."""
        h = pc.utf8_rtrim(pc.struct_field(pc.extract_regex(low, self._HOST), "h"), characters=".")
        odd = np.flatnonzero(candidates & _mask(pc.is_null(h)))
        bad_port = np.zeros(len(low), dtype=bool)
        if len(odd):    # userinfo, ports, IPv6 brackets, non-ASCII: the exact string splitter
            hosts = h.to_pylist()
            for i in odd.tolist():
                hosts[i], port_ok = U.raw_authority(low[i].as_py())
                bad_port[i] = not port_ok
            h = pa.array(hosts, pa.string())
        return pc.fill_null(h, ""), bad_port

    def _url_reasons(self, url: pa.Array, too_long: np.ndarray) -> tuple[list[np.ndarray], pa.Array]:
        """([bad_scheme, bad_url, reddit_link, media_url, blocklisted_domain] of each URL, its
        lowercase raw host ("" where there is none to judge)).

        Called on the rows that no flag dropped already. Hosts are judged once per distinct
        host (``_host_verdict``), through a dictionary encoding of the batch's hosts.
        """
        low = pc.utf8_lower(url)
        bad_scheme = ~(_mask(pc.starts_with(low, "http://")) | _mask(pc.starts_with(low, "https://")))
        hosts, bad_port = self._hosts(low, ~(bad_scheme | too_long))
        distinct = pc.dictionary_encode(hosts)
        verdicts = np.array([self._host_verdict(h) for h in distinct.dictionary.to_pylist()], dtype=bool)
        verdicts = verdicts.reshape(-1, 3)[distinct.indices.to_numpy()]
        bad_url = too_long | bad_port | verdicts[:, 0]
        media = np.zeros(len(low), dtype=bool)   # judged where no earlier reason applies
        todo = np.flatnonzero(~(bad_scheme | bad_url | verdicts[:, 1]))
        media[todo] = _mask(pc.match_substring_regex(low.take(todo), self.media_re))
        return [bad_scheme, bad_url, verdicts[:, 1], media, verdicts[:, 2]], hosts

    def batch(self, subs: list) -> tuple[dict[str, int], pa.Table]:
        """(drop counts by reason, kept rows as a SUBMISSIONS table) for a list of submissions."""
        n = len(subs)
        if not n:
            return {}, SUBMISSIONS.empty_table()
        url = pc.utf8_trim_whitespace(pa.array([u if type(u := s.url) is str else None for s in subs], pa.string()))
        length = pc.utf8_length(url)
        no_url = ~_mask(pc.greater(length, 0))
        too_long = _mask(pc.greater(length, self.max_url_length))
        if too_long.any():   # judged on the length alone: keep only enough of it for the scheme test
            url = pc.if_else(pa.array(too_long), pc.utf8_slice_codeunits(url, 0, 16), url)
        domain = pa.array([d if type(d := s.domain) is str else None for s in subs], pa.string())
        self_post = np.array([s.is_self is True for s in subs]) | _mask(pc.starts_with(domain, "self."))
        nsfw = np.array([s.over_18 is True for s in subs]) & (not self.allow_nsfw)
        deleted = np.array([(type(s.removed_by_category) is str and s.removed_by_category in DELETED_CATEGORIES)
                            or s.title == "[deleted by user]" for s in subs])
        removed = np.array([bool(s.removed_by_category) or bool(s.banned_by) for s in subs])
        conditions = [no_url, self_post, nsfw, deleted, removed]
        # The first matching reason wins, so the URL itself is judged only where no flag
        # dropped the row already (about half of a dump's rows are self posts).
        rest = np.flatnonzero(~(no_url | self_post | nsfw | deleted | removed))
        judged_all, rest_hosts = self._url_reasons(url.take(rest), too_long[rest])
        for judged in judged_all:
            full = np.zeros(n, dtype=bool)
            full[rest] = judged
            conditions.append(full)
        reason = np.select(conditions, np.arange(1, len(conditions) + 1, dtype=np.int8), 0)
        keep = np.flatnonzero(reason == 0)
        counts = np.bincount(reason, minlength=len(conditions) + 1)
        drops = {name: int(c) for name, c in zip(self.REASONS, counts[1:]) if c}
        raw = url.take(keep)
        # Plain ASCII URLs without a query whose scheme and host are lowercase already (most
        # of them): the URL is its own normalized and fetch form (urls.harvest_forms), and its
        # host is the one judged above. One DFA match for the batch.
        plain = _mask(pc.and_(pc.match_substring_regex(raw, self._PLAIN), pc.string_is_ascii(raw)))
        at_plain, at_rest = np.flatnonzero(plain), np.flatnonzero(~plain)
        norm = raw.filter(pa.array(plain))
        hosts = rest_hosts.take(np.searchsorted(rest, keep[at_plain]))
        forms = [self.forms(u) for u in raw.take(at_rest).to_pylist()]          # the rest, one by one
        if None in forms:                    # courlan found no usable scheme and host
            ok = [f is not None for f in forms]
            drops["bad_scheme"] = drops.get("bad_scheme", 0) + ok.count(False)
            forms, at_rest = [f for f in forms if f is not None], at_rest[np.array(ok, dtype=bool)]
        slow = list(zip(*forms)) if forms else [(), (), ()]
        # Back in input order: rows of both kinds, sorted by their place in the batch.
        where = np.concatenate([at_plain, at_rest])
        order = pa.array(np.argsort(where, kind="stable"))
        urls = pa.concat_arrays([norm, pa.array(slow[0], pa.string())]).take(order)
        hosts = pa.concat_arrays([hosts, pa.array(slow[1], pa.string())]).take(order)
        fetch = pa.concat_arrays([norm, pa.array(slow[2], pa.string())]).take(order)
        kept = [subs[i] for i in keep[np.sort(where)].tolist()]
        score = int64_column([s.score for s in kept])
        created = int64_column([s.created_utc for s in kept])
        if score.null_count or created.null_count:     # a number no int64 holds
            good = ~_mask(pc.or_(pc.is_null(score), pc.is_null(created)))
            drops["bad_value"] = int((~good).sum())
            idx = np.flatnonzero(good)
            kept = [kept[i] for i in idx.tolist()]
            urls, hosts, fetch, score, created = (a.take(idx) for a in (urls, hosts, fetch, score, created))
        table = pa.table({
            "url": urls,
            "domain": hosts,
            "score": score,
            "created_utc": created.cast(UTC_S),      # int64 unix seconds as a timestamp
            "subreddit": pa.array([v if type(v) is str else str(v or "") for v in [s.subreddit for s in kept]],
                                  pa.string()),
            "id": pa.array([v if type(v) is str else str(v or "") for v in [s.id for s in kept]], pa.string()),
            "title": pa.array([v if type(v) is str else None for v in [s.title for s in kept]], pa.string()),
            "url_hash": pa.array([U.url_hash(u) for u in urls.to_pylist()], pa.uint64()),
            "raw_url": fetch,
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

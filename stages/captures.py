"""Web-archive captures: the records, the parsers of the archives' index answers, the
choice of a capture, and the unpacking of an archived record. Pure functions, no I/O;
``stages.archives`` asks the archives and calls them.

Formats (copied from the services' answers; tests/test_archives.py holds real samples):

- Common Crawl ``/collinfo.json``: a JSON array of crawls, newest first, each
  ``{"id": "CC-MAIN-2025-33", "name": ..., "timegate": ..., "cdx-api": ...,
  "from": "2025-08-02T22:09:07", "to": "2025-08-15T23:42:38"}`` (UTC, no zone).
- Common Crawl ``/{crawl}-index?url=U&output=json`` (pywb): NDJSON, one capture a line:
  ``urlkey timestamp url mime mime-detected status digest length offset filename
  languages encoding``, every value a string. A miss is a 404 with
  ``{"message": "No Captures found for: U"}``.
- The Wayback CDX server ``/cdx/search/cdx?url=U&output=json``: a JSON array whose first
  row is the header ``["urlkey","timestamp","original","mimetype","statuscode","digest",
  "length"]``; no captures is ``[]`` (or an empty body). ``limit=N`` gives the first N
  rows, ``limit=-N`` the last N; ``from``/``to`` are inclusive 1-14 digit timestamps. A
  resume key row (``[]`` then ``["key"]``) may follow; rows that are not captures are
  skipped.

Capture choice (``choose_capture``): status 200 and an HTML type, within
``max_drift_days`` of the submission (``first_seen``, unix seconds); the nearest capture
*after* the submission wins (the page as the Reddit link showed it, or just after),
else the nearest one before it. Ties go to the later capture.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from io import BytesIO

SOURCES = ("commoncrawl", "wayback")
HTML_MIMES = ("text/html", "application/xhtml+xml")
DAY = 86400
_TS14 = re.compile(r"\d{14}")
_CRAWL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SAFE_PATH = re.compile(r"[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_ORIGINAL = re.compile(r"https?://[^\s#\x00-\x1f\x7f]+", re.I)   # what may follow /web/{ts}id_/
WAYBACK_FIELDS = ("urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length")


@dataclass(slots=True)
class Crawl:
    """One Common Crawl crawl and the time it ran (unix seconds)."""
    id: str
    start: float
    end: float


@dataclass(slots=True)
class Capture:
    """One archived capture of a URL, as an archive's index lists it."""
    source: str                 # "commoncrawl" | "wayback"
    collection: str             # the crawl id (CC-MAIN-2017-09) or "wayback"
    timestamp: str              # 14 digits, UTC: yyyyMMddhhmmss
    captured_at: int            # the same, unix seconds
    url: str                    # the URL as archived (Wayback: "original", often with :80)
    status: int
    mime: str
    digest: str = ""            # base32 SHA-1 of the payload
    filename: str | None = None  # Common Crawl: the WARC file on the data server, and the
    offset: int | None = None   # record's gzip member in it (bytes offset...offset+length-1)
    length: int | None = None

    def byte_range(self) -> str | None:
        """The Range header value for a Common Crawl record, else None."""
        if self.offset is None or self.length is None:
            return None
        return f"bytes={self.offset}-{self.offset + self.length - 1}"

    def record_address(self, base: str) -> tuple[str, str | None]:
        """Where the archive serves the record: (URL, Range header or None). ``base`` is the
        data server (Common Crawl) or the Wayback endpoint."""
        base = base.rstrip("/")
        if self.source == "commoncrawl":
            return f"{base}/{self.filename}", self.byte_range()
        return f"{base}/web/{self.timestamp}id_/{self.url}", None


@dataclass(slots=True)
class ArchivedPage:
    """An archived HTTP response: the original status, headers and payload (decoded of any
    Content-Encoding), or ``error``, a drop reason (None: the page is usable)."""
    capture: Capture
    status: int | None = None
    reason: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    content_type: str | None = None
    error: str | None = None


def ts14(unix: float) -> str:
    return datetime.fromtimestamp(int(unix), timezone.utc).strftime("%Y%m%d%H%M%S")


def unix_of(ts: str) -> int | None:
    """Unix seconds of a 14-digit archive timestamp, None if it is not one."""
    if not isinstance(ts, str) or not _TS14.fullmatch(ts):
        return None
    try:
        return int(datetime.strptime(ts, "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc).timestamp())
    except ValueError:
        return None


def _iso(value) -> float | None:
    try:
        when = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).timestamp()


def parse_collinfo(data: bytes | str) -> list[Crawl]:
    """The crawls of ``/collinfo.json``. Entries without a usable id or time span are
    skipped (they cannot be ordered); the ``cdx-api`` address is ignored: queries go to
    the configured index server only."""
    try:
        rows = json.loads(data)
    except ValueError:
        return []
    crawls = []
    for row in rows if isinstance(rows, list) else []:
        if not isinstance(row, dict) or not _CRAWL_ID.fullmatch(str(row.get("id", ""))):
            continue
        start, end = _iso(row.get("from")), _iso(row.get("to"))
        if start is not None and end is not None and start <= end:
            crawls.append(Crawl(str(row["id"]), start, end))
    return crawls


def safe_filename(name: object) -> bool:
    """Whether a capture's ``filename`` is a plain relative path on the data server: no
    scheme, host, absolute path, ``.``/``..`` segment, query, percent-escape or
    whitespace. Common Crawl's look like ``crawl-data/CC-MAIN-2025-33/segments/
    1754151279521.11/warc/CC-MAIN-20250802220907-20250803010907-00970.warc.gz``."""
    if not isinstance(name, str) or not _SAFE_PATH.fullmatch(name):
        return False
    return not any(part in (".", "..") for part in name.split("/"))


def safe_original(capture: "Capture") -> bool:
    """Whether a Wayback capture's timestamp and URL may be put after ``/web/``."""
    return bool(_TS14.fullmatch(capture.timestamp or "")) and bool(_ORIGINAL.fullmatch(capture.url or ""))


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def parse_cc_cdx(data: bytes | str, crawl: str) -> list[Capture]:
    """Captures from a Common Crawl index answer (NDJSON). Lines that are not JSON objects,
    lack a field, or name an unsafe ``filename`` are skipped."""
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    out = []
    for line in text.splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if not isinstance(row, dict):
            continue
        when = unix_of(row.get("timestamp"))
        status, offset, length = _int(row.get("status")), _int(row.get("offset")), _int(row.get("length"))
        if None in (when, status, offset, length) or offset < 0 or length <= 0 \
                or not isinstance(row.get("url"), str) or not safe_filename(row.get("filename")):
            continue
        out.append(Capture("commoncrawl", crawl, row["timestamp"], when, row["url"], status,
                           str(row.get("mime") or ""), str(row.get("digest") or ""),
                           row["filename"], offset, length))
    return out


def parse_wayback_cdx(data: bytes | str) -> list[Capture]:
    """Captures from a Wayback CDX answer (a JSON array, header row first). Rows that do not
    match the header (a resume key, a revisit's ``-`` status) are skipped."""
    try:
        rows = json.loads(data) if data and data.strip() else []
    except ValueError:
        return []
    if not isinstance(rows, list) or not rows or not isinstance(rows[0], list) \
            or not all(isinstance(name, str) for name in rows[0]):
        return []
    col = {name: i for i, name in enumerate(rows[0])}
    if any(name not in col for name in ("timestamp", "original", "statuscode")):
        return []
    out = []
    for row in rows[1:]:
        if not isinstance(row, list) or len(row) != len(rows[0]):
            continue
        r = {name: row[i] for name, i in col.items()}
        when, status = unix_of(r["timestamp"]), _int(r["statuscode"])
        if when is None or status is None or not _ORIGINAL.fullmatch(str(r["original"])):
            continue
        out.append(Capture("wayback", "wayback", r["timestamp"], when, r["original"], status,
                           str(r.get("mimetype") or ""), str(r.get("digest") or "")))
    return out


def is_html(mime: str) -> bool:
    return mime.split(";", 1)[0].strip().lower() in HTML_MIMES


def choose_capture(captures: list[Capture], first_seen: float, max_drift_days: float) -> Capture | None:
    """The capture to recover a page from (see the module docstring), or None."""
    drift = max_drift_days * DAY
    ok = [c for c in captures if c.status == 200 and is_html(c.mime) and abs(c.captured_at - first_seen) <= drift]
    after = [c for c in ok if c.captured_at >= first_seen]
    if after:
        return min(after, key=lambda c: (c.captured_at, c.timestamp))
    return max(ok, key=lambda c: (c.captured_at, c.timestamp), default=None)


def order_crawls(crawls: list[Crawl], first_seen: float, max_drift_days: float | None = None) -> list[Crawl]:
    """The crawls to ask, best first: those running at or after the submission (they can
    hold a capture after it, which ``choose_capture`` prefers), nearest first, then the
    earlier ones, nearest first. With ``max_drift_days``, crawls whose whole span lies
    further away are left out."""
    def distance(c: Crawl) -> float:
        return max(c.start - first_seen, first_seen - c.end, 0.0)

    keep = [c for c in crawls if max_drift_days is None or distance(c) <= max_drift_days * DAY]
    return sorted(keep, key=lambda c: (c.end < first_seen, distance(c), c.id))


def wayback_windows(url: str, first_seen: float, max_drift_days: float, limit: int) -> list[dict[str, str]]:
    """The CDX queries for a URL: the first ``limit`` 200-captures after the submission,
    then the last ``limit`` before it (``limit=-N``), each within the drift."""
    drift = int(max_drift_days * DAY)
    base = {"url": url, "output": "json", "filter": "statuscode:200"}
    return [{**base, "from": ts14(first_seen), "to": ts14(first_seen + drift), "limit": str(limit)},
            {**base, "from": ts14(max(0, first_seen - drift)), "to": ts14(first_seen), "limit": str(-limit)}]


# --- unpacking a Common Crawl record ---------------------------------------------------

def inflate_member(data: bytes, max_out: int) -> tuple[bytes | None, str | None]:
    """One gzip member inflated to at most ``max_out`` bytes: (bytes, None), or
    (None, reason): ``too_large`` (a bomb, or a record over the cap) or ``bad_record``."""
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = d.decompress(data, max_out)
    except zlib.error:
        return None, "bad_record"
    if d.unconsumed_tail:
        return None, "too_large"
    if not d.eof:
        return None, "bad_record"          # the member is cut short
    return out, None


def parse_warc_response(record: bytes) -> tuple[int, str, list[tuple[str, str]], bytes, str] | None:
    """The first WARC response record in ``record``: (HTTP status, reason, headers,
    payload as stored, WARC-Target-URI), or None when there is none (FastWARC parses)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    for rec in ArchiveIterator(BytesIO(record), record_types=WarcRecordType.response, parse_http=True):
        http = rec.http_headers
        if http is None or not http.status_code:
            return None
        return (int(http.status_code), http.reason_phrase or "", list(http.items()), rec.reader.read(),
                rec.headers.get("WARC-Target-URI") or "")
    return None


def _dechunk(body: bytes) -> bytes | None:
    out, pos = bytearray(), 0
    while True:
        end = body.find(b"\r\n", pos)
        try:
            size = int(body[pos:end].split(b";", 1)[0], 16) if end >= 0 else -1
        except ValueError:
            return None
        if size < 0:
            return None
        if size == 0:
            return bytes(out)
        out += body[end + 2:end + 2 + size]
        pos = end + 2 + size + 2


def decode_payload(headers: list[tuple[str, str]], body: bytes, max_bytes: int) -> tuple[bytes | None, str | None]:
    """The payload decoded of chunking and Content-Encoding (gzip, deflate), inflated to at
    most ``max_bytes``: (bytes, None) or (None, ``too_large``). Common Crawl stores payloads
    already decoded (the headers renamed ``X-Crawler-Content-Encoding``), but older crawls
    kept a ``Content-Encoding: gzip`` over a decoded payload: so a payload is only inflated
    when it looks compressed, and kept as it is when it does not inflate."""
    h = {k.lower(): v.strip().lower() for k, v in headers}
    if "chunked" in h.get("transfer-encoding", ""):
        body = _dechunk(body) or body
    enc = h.get("content-encoding", "")
    for wbits in ((16 + zlib.MAX_WBITS,) if enc in ("gzip", "x-gzip") and body[:2] == b"\x1f\x8b"
                  else (zlib.MAX_WBITS, -zlib.MAX_WBITS) if enc == "deflate" else ()):
        d = zlib.decompressobj(wbits)
        try:
            out = d.decompress(body, max_bytes)
        except zlib.error:
            continue
        return (None, "too_large") if d.unconsumed_tail else (out, None)
    return (None, "too_large") if len(body) > max_bytes else (body, None)

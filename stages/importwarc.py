"""Pages for a fetch shard from WARC files the user already has (``--from-warc``, issue #22).

In: the shard's frontier rows (``urls/`` schema) and ``fetch.from_warc``: WARC files or
folders of ``*.warc.gz`` / ``*.warc`` (Common Crawl segments, an earlier crawl, a Wayback
export). Out: for each frontier URL that one of those files holds a usable page for, this
crawl's own response and metadata records in the shard's WARC segments and a journal line,
written before the live crawl starts, so the URL is never fetched live.

- **Match**: a response record's WARC-Target-URI, normalized as harvest normalizes
  (``stages.urls.normalize``), has the url_id of the frontier row's ``url`` or of its
  ``fetch_url``. Revisit rows (``--refetch-after``) are never imported.
- **Usable**: the live pages' rules, as for archive captures (``stages.recover``): status
  2xx, HTML/XHTML type (or none), not binary, at most ``max_bytes`` once decoded of any
  Content-Encoding. Revisit, request and metadata records are never read.
- **Choice**: of several usable records for a URL, the one whose WARC-Date is nearest
  the URL's ``first_seen`` (the first one read on a tie).
- **Provenance**: ``source`` "warc", ``captured_at`` the record's WARC-Date (unix s),
  ``collection`` the file's name and ``archive_record`` "PATH#OFFSET" (the record's
  offset in the file as given; a gzip member's offset for per-record gzip).

Two passes over the files, streaming: the first keeps (file, offset, date) of the best
record per matched URL, the second reads those records again and writes them (files
without a match are read once). Memory: the shard's url_ids and the matches, never a file.
A damaged stretch (a corrupt gzip member, a record that is no WARC record, HTTP headers
that do not parse) counts one ``import_bad_record`` and the scan resumes at the next gzip
member (or the next ``WARC/`` line in an uncompressed file). A whole-file gzip cannot
resume: the rest of that file is lost after damage. Stats: ``import_files``,
``import_matched`` (URLs with a usable record), ``import_unusable`` (matching records that
failed the rules); ``imported_warc`` is counted from the fetch log by ``stages.fetch``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fastwarc.warc import ArchiveIterator, WarcRecordType

from webtext.pipeline.config import FetchConfig
from webtext.pipeline.errors import MissingInputError
from webtext.pipeline.schemas import unix_seconds
from webtext.pipeline.stats import Stats

from .captures import decode_payload
from .http import DROP_HEADERS, Outcome
from .recover import archived_outcome
from .urls import normalize, url_id
from .warcstore import Journal, WarcSegments

SOURCE = "warc"
GZIP_MAGIC = b"\x1f\x8b\x08"
WARC_MAGIC = b"WARC/"
CHUNK = 1 << 20


def find_warcs(specs: list[str]) -> list[Path]:
    """The WARC files named by ``specs`` (files, or folders: their ``*.warc.gz`` and
    ``*.warc``, sorted); a path that does not exist, or no file at all, is a MissingInputError."""
    found: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found += sorted(q for q in p.iterdir() if q.is_file() and q.name.endswith((".warc.gz", ".warc")))
        elif p.is_file():
            found.append(p)
        else:
            raise MissingInputError(f"WARC path {p} does not exist", "Check --from-warc / [fetch] from_warc")
    if not found:
        raise MissingInputError(f"no .warc.gz or .warc files in {', '.join(specs)}",
                                "Point --from-warc at WARC files or folders of them")
    return found


@dataclass(slots=True)
class Record:
    """A response record that matched a frontier URL: where it is, when, and its HTTP parts."""
    key: str                        # the frontier url_id it matched
    offset: int
    captured_at: int | None
    status: int
    reason: str
    headers: list[tuple[str, str]]
    payload: bytes


def _unix(date: str | None) -> int | None:
    try:
        return int(datetime.fromisoformat(date).timestamp()) if date else None
    except ValueError:
        return None


def _next_marker(f, start: int, magic: bytes) -> int | None:
    """Offset of the first ``magic`` at or after ``start`` in ``f``, None at the end."""
    pos = start
    while True:
        f.seek(pos)
        chunk = f.read(CHUNK + len(magic))
        if not chunk:
            return None
        if (i := chunk.find(magic)) >= 0:
            return pos + i
        if len(chunk) <= len(magic):
            return None
        pos += CHUNK


def scan(path: Path, want, stats: Stats, max_bytes: int):
    """Yield a Record for each response record in ``path`` for which ``want(offset, uri)``
    returns a url_id, reading only those records' bodies; damage is counted, never raised."""
    magic = GZIP_MAGIC if path.name.endswith(".gz") else WARC_MAGIC
    pos: int | None = 0
    with open(path, "rb") as f:
        while pos is not None:
            f.seek(pos)
            last, read = pos, 0
            try:
                for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
                    last, read = rec.stream_pos, read + 1
                    http = rec.http_headers
                    if http is None or not http.status_code:
                        stats.add_info("import_bad_record", 1)
                        continue
                    key = want(last, rec.headers.get("WARC-Target-URI") or "")
                    if key is None:
                        continue
                    if rec.content_length > max_bytes:      # stored payload: over the cap already
                        stats.add_info("import_unusable", 1)
                        continue
                    yield Record(key, last, _unix(rec.headers.get("WARC-Date")), int(http.status_code),
                                 http.reason_phrase or "", list(http.items()), rec.reader.read())
                return
            except (OSError, ValueError) as e:      # a damaged member or record: resume after it
                if read or pos == 0:                # one count per damaged stretch
                    stats.add_info("import_bad_record", 1)
                    stats.add_info("import_damage", f"{path.name}@{last}: {e}")
                pos = _next_marker(f, last + 1, magic)


def page(rec: Record, target: str, path: Path, max_bytes: int) -> Outcome | None:
    """The record as fetch's Outcome under ``target`` (the URL as submitted), or None when
    unusable (``stages.recover.archived_outcome``: the rules for archive captures)."""
    body, _ = decode_payload(rec.headers, rec.payload, max_bytes)
    if body is None:
        return None
    ctype = next((v for k, v in rec.headers if k.lower() == "content-type"), None)
    headers = [(k, v) for k, v in rec.headers if k.lower() not in DROP_HEADERS]
    headers.append(("Content-Length", str(len(body))))
    return archived_outcome(target, rec.status, rec.reason, headers, body, ctype, max_bytes, source=SOURCE,
                            captured_at=rec.captured_at, collection=path.name,
                            archive_record=f"{path}#{rec.offset}")


def import_warcs(src: Path, cfg: FetchConfig, segs: WarcSegments, journal: Journal, stats: Stats) -> int:
    """Write the usable pages that ``cfg.from_warc`` holds for the frontier ``src``'s URLs
    without an outcome yet; how many were imported."""
    files = find_warcs(cfg.from_warc)
    stats.add_info("import_files", len(files))
    have = pq.read_schema(src).names
    t = unix_seconds(pq.read_table(src, columns=[c for c in ("url_id", "fetch_url", "first_seen", "revisit")
                                                 if c in have]))
    keys: dict[str, str] = {}                   # url_id of a normalized URL -> frontier url_id
    first_seen: dict[str, int] = {}
    for r in t.to_pylist():
        if r.get("revisit") or r["url_id"] in journal.done:
            continue
        keys[r["url_id"]] = r["url_id"]
        if r.get("fetch_url") and (n := normalize(r["fetch_url"])):
            keys.setdefault(url_id(n), r["url_id"])
        first_seen[r["url_id"]] = r["first_seen"] or 0
    del t
    if not keys:
        return 0

    def match(_offset: int, uri: str) -> str | None:
        n = normalize(uri)
        return keys.get(url_id(n)) if n else None

    best: dict[str, tuple[float, int, int]] = {}    # url_id -> (|date - first_seen|, file, offset)
    for i, path in enumerate(files):            # pass 1: the nearest usable record per URL
        for rec in scan(path, match, stats, cfg.max_bytes):
            if page(rec, "", path, cfg.max_bytes) is None:
                stats.add_info("import_unusable", 1)
                continue
            dist = abs(rec.captured_at - first_seen[rec.key]) if rec.captured_at is not None else float("inf")
            if rec.key not in best or dist < best[rec.key][0]:
                best[rec.key] = (dist, i, rec.offset)
    stats.add_info("import_matched", len(best))
    if not best:
        return 0
    full = pq.read_table(src)
    ids = pa.array(list(best), full["url_id"].type)
    rows = {r["url_id"]: r for r in unix_seconds(full.filter(pc.is_in(full["url_id"], value_set=ids))).to_pylist()}
    del full
    imported = 0
    for i, path in enumerate(files):            # pass 2: write the chosen records
        chosen = {off: key for key, (_, j, off) in best.items() if j == i}
        if not chosen:
            continue
        for rec in scan(path, lambda off, _uri, chosen=chosen: chosen.get(off), Stats(), cfg.max_bytes):  # counted in pass 1
            row = rows[rec.key]
            o = page(rec, row.get("fetch_url") or row["url"], path, cfg.max_bytes)
            if o is None or rec.key in journal.done:
                continue
            name, offset, end = segs.write(row, o)     # records first, then the journal line
            journal.add({"url_id": row["url_id"], "url": row["url"], "final_url": o.final_url,
                         "status": o.status, "error": None, "bytes": len(o.body), "content_type": o.content_type,
                         "charset": o.charset, "elapsed_ms": 0, "tries": 0, "warc_file": name,
                         "warc_offset": offset, "fetched_at": int(time.time()), "etag": None,
                         "last_modified": None, "revisit": False, "wait_ms": 0, "source": SOURCE,
                         "captured_at": o.captured_at, "archive": None, "_end": end})
            imported += 1
    return imported

"""Archive captures for a large URL set from Common Crawl's columnar URL index, in one pass.

In: the URL set (a pyarrow table with ``url_id``, ``url``, ``first_seen`` unix seconds and,
optionally, ``fetch_url``) and the Parquet files of Common Crawl's columnar index
(``s3://commoncrawl/cc-index/table/cc-main/warc/crawl=CC-MAIN-YYYY-WW/subset=warc/*.parquet``,
or a local copy: a file, a list, a folder or a glob; bucket URLs are listed through
``pyarrow.fs``, e.g. ``s3://commoncrawl/cc-index/table/cc-main/warc/?anonymous=true&region=us-east-1``). Out: ``ColumnarPlan``, one row per
URL with a usable capture (schema ``PLAN``: the WARC file, offset and length to ask the
data server for, no CDX request made) and the counts for stats. Usage::

    plan = plan_from_columnar(urls, "cc-index/table/cc-main/warc/", max_drift_days=365)
    captures = to_captures(plan.table)          # url_id -> stages.captures.Capture

The index columns read (cc-index-table ``cc-index-schema-flat.json``; Spark writes them):
``url_surtkey`` string, ``url`` string, ``fetch_time`` timestamp (INT96 from Spark, read as
timestamp[ns]; any unit and zone is accepted), ``fetch_status`` int16, ``content_mime_type``
string, ``warc_filename`` string, ``warc_record_offset`` int32, ``warc_record_length``
int32, and ``crawl`` when a file holds it. ``crawl`` and ``subset`` are Hive partitions
of the published table, so the crawl comes from the column, else from a ``crawl=...``
folder of the file's path, else from ``warc_filename`` (``crawl-data/CC-MAIN-YYYY-WW/``).

The pass (memory: the URL keys plus one batch of the index plus the best capture per URL):
each file is opened alone; row groups whose ``url_surtkey`` min/max statistics hold no
key are skipped (the published files are sorted by SURT key); the others are read in
batches of ``batch_rows`` rows, only the columns above. A batch is semi-joined on the key
set (``pc.index_in``), and the few matching rows are filtered (``unsafe_filename``
counted, then status, HTML type and drift) and folded into the best capture per URL.

Capture choice is ``stages.captures.choose_capture``'s rule, vectorized: status 200, an
HTML type (``captures.is_html`` on each distinct mime value), ``|fetch_time - first_seen|
<= max_drift_days`` days; the nearest capture at or after the submission, else the
nearest one before. Equal fetch times go to the smaller ``(warc_filename, offset)``,
which is what ``choose_capture`` picks when given its candidates in that order.
A URL is looked up under the SURT key of ``url`` and of ``fetch_url`` (both, when they
differ); ``stages.surt`` gives the key as the index writes it.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtext.pipeline.schemas import seconds

from .captures import DAY, Capture, is_html, ts14
from .surt import surt_or_none

INDEX_COLUMNS = ("url_surtkey", "url", "fetch_time", "fetch_status", "content_mime_type",
                 "warc_filename", "warc_record_offset", "warc_record_length")

# One row per URL with a usable capture, in the order of the URL table.
PLAN = pa.schema([
    pa.field("url_id", pa.string(), nullable=False),
    pa.field("url", pa.string(), nullable=False),
    pa.field("crawl", pa.string()),                          # CC-MAIN-YYYY-WW, null if unknown
    pa.field("capture_url", pa.string(), nullable=False),    # the URL as crawled (index "url")
    pa.field("fetch_time", pa.int64(), nullable=False),      # unix s, UTC
    pa.field("status", pa.int32(), nullable=False),
    pa.field("mime", pa.string(), nullable=False),
    pa.field("warc_filename", pa.string(), nullable=False),  # below the data server's root
    pa.field("warc_record_offset", pa.int64(), nullable=False),
    pa.field("warc_record_length", pa.int64(), nullable=False),
])


# --- the one-pass join ---------------------------------------------------------------------

_CRAWL_IN_FILENAME = r"^crawl-data/(?P<crawl>CC-MAIN-\d{4}-\d{2})/"
_CRAWL_IN_PATH = re.compile(r"(?:^|/)crawl=([A-Za-z0-9._-]+)(?:/|$)")
# captures.safe_filename as an RE2 test: a plain relative path, no "." or ".." segment.
_SAFE_PATH = r"^[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$"
_DOT_SEGMENT = r"(?:^|/)\.\.?(?:/|$)"


@dataclass(slots=True)
class ColumnarPlan:
    """The chosen capture per URL (schema PLAN) and the counts of the pass."""
    table: pa.Table
    counts: dict[str, int] = field(default_factory=dict)


_BUCKET_URL = re.compile(r"^(s3|gs|gcs)://", re.I)
_TRUE = ("1", "true", "yes")


def _bucket_fs(url: str):
    """(pyarrow FileSystem, "bucket/prefix") for ``s3://`` / ``gs://`` URLs, options in the
    query as ``pyarrow.fs.FileSystem.from_uri`` reads them (``region``, ``endpoint_override``,
    ``scheme``, ...), plus ``anonymous=true``, which pyarrow's URI parser lacks (public
    buckets such as ``s3://commoncrawl/...?anonymous=true&region=us-east-1``)."""
    import urllib.parse

    import pyarrow.fs as pafs

    u = urllib.parse.urlsplit(url)
    if u.scheme.lower() in ("gs", "gcs"):
        from webtext.pipeline.remote import gcs_filesystem      # its parser knows anonymous for GCS
        return gcs_filesystem(url)
    query = urllib.parse.parse_qsl(u.query, keep_blank_values=True)
    anonymous = any(k == "anonymous" and v.lower() in _TRUE for k, v in query)
    rest = [(k, v) for k, v in query if k != "anonymous"]
    fs, root = pafs.FileSystem.from_uri(urllib.parse.urlunsplit(
        u._replace(query=urllib.parse.urlencode(rest))))    # checks the other options
    if anonymous:
        if u.username or u.password:
            raise ValueError("an s3:// URL with anonymous=true cannot carry credentials")
        opts = dict(rest)
        kw = {k: opts[k] for k in ("region", "scheme", "endpoint_override") if k in opts}
        fs = pafs.S3FileSystem(anonymous=True, **kw)
    return fs, root


def _redacted(url: str) -> str:
    """``url`` without credentials and query, for names shown in logs."""
    import urllib.parse

    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.hostname or "", u.path, "", ""))


def _sources(index) -> list[tuple[str, object, str]]:
    """(name, filesystem or None for local, path) of each Parquet file of ``index``, sorted
    by name: local items as ``index_files`` says, bucket URLs (``s3://bucket/prefix/``,
    ``gs://...``) an object or a prefix listed recursively for ``*.parquet``."""
    items = [index] if isinstance(index, (str, os.PathLike)) else list(index)
    out: dict[str, tuple[str, object, str]] = {}
    for item in items:
        item = os.fspath(item)
        if not _BUCKET_URL.match(item):
            for path in _local_files(item):
                out.setdefault(path, (path, None, path))
            continue
        import pyarrow.fs as pafs

        fs, root = _bucket_fs(item)
        scheme = item.split(":", 1)[0].lower()
        info = fs.get_file_info(root)
        if info.type == pafs.FileType.File:
            paths = [root]
        elif info.type == pafs.FileType.Directory:
            paths = [i.path for i in fs.get_file_info(pafs.FileSelector(root, recursive=True))
                     if i.type == pafs.FileType.File and i.path.endswith(".parquet")]
        else:
            raise FileNotFoundError(f"columnar index {_redacted(item)}: no such object or prefix")
        for path in paths:
            name = f"{scheme}://{path}"
            out.setdefault(name, (name, fs, path))
    return [out[k] for k in sorted(out)]


def _local_files(item: str) -> list[str]:
    if os.path.isdir(item):
        return [str(p) for p in Path(item).rglob("*.parquet")]
    if any(ch in item for ch in "*?["):
        return glob.glob(item, recursive=True)
    return [item]


def index_files(index) -> list[str]:
    """The Parquet files of ``index``: a file, a folder (searched recursively), a glob, a
    bucket URL (``s3://bucket/prefix/?anonymous=true&region=us-east-1``, ``gs://...``: an
    object, or a prefix listed recursively), or a list of those; sorted, so a pass is
    repeatable. Bucket files are named ``s3://bucket/key`` (no credentials, no options)."""
    return [name for name, _, _ in _sources(index)]


def safe_filenames(names: pa.Array) -> pa.Array:
    """``captures.safe_filename`` over an array (null -> False)."""
    ok = pc.and_(pc.match_substring_regex(names, _SAFE_PATH),
                 pc.invert(pc.match_substring_regex(names, _DOT_SEGMENT)))
    return pc.fill_null(ok, False)


def _seconds(times: pa.Array) -> np.ndarray:
    """Unix seconds (floor) of a timestamp array of any unit, or of integer seconds."""
    if pa.types.is_timestamp(times.type):
        per_s = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[times.type.unit]
        raw = times.cast(pa.int64()).to_numpy(zero_copy_only=False)
        return np.floor_divide(raw, per_s)
    return times.cast(pa.int64()).to_numpy(zero_copy_only=False)


class _Keys:
    """The URL set's SURT keys: ``dictionary`` (unique keys, for ``pc.index_in``) and, per
    key, the URL rows that have it (CSR: rows[offsets[k]:offsets[k + 1]])."""

    def __init__(self, urls: pa.Table):
        cols = [urls["url"].to_pylist()]
        if "fetch_url" in urls.column_names:
            cols.append(urls["fetch_url"].to_pylist())
        keys, rows, cache = [], [], {}
        for col in cols:
            for row, u in enumerate(col):
                k = cache.get(u) if u in cache else cache.setdefault(u, surt_or_none(u))
                if k is not None:
                    keys.append(k)
                    rows.append(row)
        self.keyed_rows = len(set(rows))
        enc = pa.array(keys, pa.string()).dictionary_encode()
        ids, rows_np = enc.indices.to_numpy(), np.asarray(rows, dtype=np.int64)
        order = np.lexsort((rows_np, ids))
        ids, rows_np = ids[order], rows_np[order]
        keep = np.ones(len(ids), bool)
        keep[1:] = (ids[1:] != ids[:-1]) | (rows_np[1:] != rows_np[:-1])   # url == fetch_url
        ids, self.rows = ids[keep], rows_np[keep]
        self.dictionary = enc.dictionary
        self.offsets = np.zeros(len(self.dictionary) + 1, np.int64)
        np.cumsum(np.bincount(ids, minlength=len(self.dictionary)), out=self.offsets[1:])
        order = pc.sort_indices(self.dictionary)
        self._sorted = self.dictionary.take(order)   # for row-group pruning

    def any_between(self, lo: str, hi: str) -> bool:
        """Whether some key k has lo <= k <= hi (binary search in the sorted keys)."""
        a, b = 0, len(self._sorted)
        while a < b:
            mid = (a + b) // 2
            if self._sorted[mid].as_py() < lo:
                a = mid + 1
            else:
                b = mid
        return a < len(self._sorted) and self._sorted[a].as_py() <= hi

    def expand(self, key_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(position in key_ids, URL row) for every URL row of every key."""
        starts, counts = self.offsets[key_ids], self.offsets[key_ids + 1] - self.offsets[key_ids]
        pos = np.repeat(np.arange(len(key_ids)), counts)
        within = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return pos, self.rows[starts[pos] + within]


def _best_per_row(cands: pa.Table) -> pa.Table:
    """One candidate per URL row: the first in (row, before, distance, filename, offset)
    order, i.e. the nearest at/after the submission, else the nearest before."""
    cands = cands.sort_by([("row", "ascending"), ("before", "ascending"), ("distance", "ascending"),
                           ("warc_filename", "ascending"), ("warc_record_offset", "ascending")])
    rows = cands["row"].to_numpy()
    first = np.ones(len(rows), bool)
    first[1:] = rows[1:] != rows[:-1]
    return cands.filter(pa.array(first))


def _pruned_row_groups(pf: pq.ParquetFile, keys: _Keys) -> tuple[list[int], int]:
    """The row groups that may hold a key (by url_surtkey min/max), and how many were not."""
    meta = pf.metadata
    col = pf.schema_arrow.get_field_index("url_surtkey")
    keep = []
    for i in range(meta.num_row_groups):
        st = meta.row_group(i).column(col).statistics if col >= 0 else None
        if st is None or not st.has_min_max or keys.any_between(_text(st.min), _text(st.max)):
            keep.append(i)
    return keep, meta.num_row_groups - len(keep)


def _text(v) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def plan_from_columnar(urls: pa.Table, index, max_drift_days: float, *, batch_rows: int = 262_144,
                       compact_rows: int = 1_000_000) -> ColumnarPlan:
    """Join ``urls`` against the columnar index in one pass (module docstring) and choose a
    capture per URL. ``batch_rows`` bounds the index rows held at once; the candidates
    are folded to one per URL whenever more than ``compact_rows`` pile up.

    Counts: ``urls``, ``no_key`` (no SURT key: empty URL, bad port), ``matched`` (a
    usable capture), ``no_capture``, ``index_files``, ``row_groups``,
    ``row_groups_skipped`` (by statistics), ``index_rows`` (read), ``key_rows`` (rows
    whose key is in the URL set), ``unsafe_filename`` (of those, refused by
    ``safe_filename``), ``bad_record`` (safe ones with no fetch time, offset < 0 or length <= 0,
    which ``parse_cc_cdx`` also skips), ``candidates`` (URL-capture pairs passing status,
    type and drift).
    """
    keys = _Keys(urls)
    first_seen = seconds(urls["first_seen"]).to_numpy(zero_copy_only=False)      # unix s, any unit read
    drift = max_drift_days * DAY
    html_cache: dict[str | None, bool] = {}
    counts = dict.fromkeys(("urls", "no_key", "matched", "no_capture", "index_files", "row_groups",
                            "row_groups_skipped", "index_rows", "key_rows", "unsafe_filename",
                            "bad_record", "candidates"), 0)
    counts["urls"], counts["no_key"] = urls.num_rows, urls.num_rows - keys.keyed_rows
    pending: list[pa.Table] = []
    pending_rows = 0
    for name, fs, path in _sources(index):
        with (contextlib.nullcontext(path) if fs is None else fs.open_input_file(path)) as src:
            pf = pq.ParquetFile(src)
            groups, skipped = _pruned_row_groups(pf, keys)
            counts["index_files"] += 1
            counts["row_groups"] += pf.metadata.num_row_groups
            counts["row_groups_skipped"] += skipped
            has_crawl = "crawl" in pf.schema_arrow.names
            in_path = _CRAWL_IN_PATH.search(Path(path).as_posix())
            columns = list(INDEX_COLUMNS) + (["crawl"] if has_crawl else [])
            if not len(keys.dictionary) or not groups:
                continue
            for batch in pf.iter_batches(batch_size=batch_rows, row_groups=groups, columns=columns):
                counts["index_rows"] += batch.num_rows
                key_ids = pc.index_in(batch.column("url_surtkey"), value_set=keys.dictionary)
                hit = pc.is_valid(key_ids)
                if not pc.any(hit).as_py():
                    continue
                sub = pa.Table.from_batches([batch]).filter(hit)
                counts["key_rows"] += sub.num_rows
                safe = safe_filenames(sub["warc_filename"].combine_chunks())
                counts["unsafe_filename"] += sub.num_rows - pc.sum(safe).as_py()
                mimes = sub["content_mime_type"].combine_chunks()
                for m in pc.unique(mimes).to_pylist():
                    if m not in html_cache:
                        html_cache[m] = m is not None and is_html(m)
                html = pa.array([m for m, ok in html_cache.items() if ok and m is not None], pa.string())
                record = pc.fill_null(pc.and_(pc.and_(pc.is_valid(sub["fetch_time"]), pc.greater_equal(
                    sub["warc_record_offset"], 0)), pc.greater(sub["warc_record_length"], 0)), False)
                counts["bad_record"] += pc.sum(pc.and_(safe, pc.invert(record))).as_py() or 0
                ok = pc.and_(pc.and_(pc.and_(safe, record), pc.fill_null(pc.equal(sub["fetch_status"], 200), False)),
                             pc.is_in(mimes, value_set=html))
                sub = sub.filter(ok)
                if not sub.num_rows:
                    continue
                pos, rows = keys.expand(pc.index_in(sub["url_surtkey"], value_set=keys.dictionary)
                                        .to_numpy(zero_copy_only=False).astype(np.int64))
                when = _seconds(sub["fetch_time"].combine_chunks())[pos]
                delta = when - first_seen[rows]
                near = np.abs(delta) <= drift
                if not near.any():
                    continue
                pos, rows, when, delta = pos[near], rows[near], when[near], delta[near]
                if has_crawl:
                    crawl = sub["crawl"].take(pa.array(pos))
                elif in_path:
                    crawl = pa.array([in_path.group(1)] * len(pos), pa.string())
                else:
                    crawl = pc.struct_field(pc.extract_regex(sub["warc_filename"].take(pa.array(pos)),
                                                             _CRAWL_IN_FILENAME), [0])
                take = pa.array(pos)
                cands = pa.table({
                    "row": rows, "before": delta < 0, "distance": np.abs(delta),
                    "crawl": crawl, "capture_url": sub["url"].take(take), "fetch_time": when,
                    "status": sub["fetch_status"].take(take).cast(pa.int32()),
                    "mime": sub["content_mime_type"].take(take),
                    "warc_filename": sub["warc_filename"].take(take),
                    "warc_record_offset": sub["warc_record_offset"].take(take).cast(pa.int64()),
                    "warc_record_length": sub["warc_record_length"].take(take).cast(pa.int64())})
                counts["candidates"] += cands.num_rows
                pending.append(cands)
                pending_rows += cands.num_rows
                if pending_rows > compact_rows:
                    pending = [_best_per_row(pa.concat_tables(pending))]
                    pending_rows = pending[0].num_rows
    best = _best_per_row(pa.concat_tables(pending)) if pending else None
    if best is None or not best.num_rows:
        table = PLAN.empty_table()
    else:
        rows = best["row"]
        table = pa.table({"url_id": urls["url_id"].take(rows), "url": urls["url"].take(rows),
                          **{n: best[n] for n in PLAN.names[2:]}}).cast(PLAN)
    counts["matched"] = table.num_rows
    counts["no_capture"] = urls.num_rows - table.num_rows
    return ColumnarPlan(table, counts)


def to_captures(plan: pa.Table) -> dict[str, Capture]:
    """url_id -> ``captures.Capture`` for ``ArchiveClient.fetch`` (source commoncrawl)."""
    return {r["url_id"]: Capture("commoncrawl", r["crawl"] or "", ts14(r["fetch_time"]), r["fetch_time"],
                                 r["capture_url"], r["status"], r["mime"], "", r["warc_filename"],
                                 r["warc_record_offset"], r["warc_record_length"])
            for r in plan.to_pylist()}

"""harvest's reduce phase: map parts (SUBMISSIONS) -> one URL shard (URLS), in bounded memory.

In: every map part ``urls/_meta/parts/*.parquet`` (schema SUBMISSIONS; older parts without
``url_hash`` or ``raw_url`` are filled in), each tagged with the harvest version that
brought it in. Out: ``urls/urls-NNNNN.parquet`` (schema URLS, sorted by ``url_id``), the
URLs whose ``url_hash % num_shards`` is this shard and whose aggregated karma is at
least ``min_score``; stats count taken_down (``params["takedowns"]``, ``stages.takedowns``),
duplicate_submission, low_score, merged_duplicate_url.
One task per shard (``aggregate_urls``), run by ``stages.harvest.run``.

Phases of a task, each holding one bucket of about ``bucket_rows`` submissions at a
time (``[harvest] reduce_bucket_rows``); rows wait in between in Arrow IPC files under
``urls/_meta/spill/<task>/``, and ``n = ceil(shard rows / bucket_rows)``:
1. stream the parts, keep this shard's rows and spill them into ``n`` buckets by a hash
   of the submission id (rows without an id go straight to phase 2's buckets);
2. per id bucket, keep each submission's latest observation (``latest_observations``:
   the newest source, then the highest score) and spill the rows into ``n`` buckets by
   the top bits of ``url_hash``;
3. per URL bucket, aggregate (``url_rows``); bucket order is url_id order, so each
   bucket's rows are appended to the output as they come.
The output does not depend on ``n``: it equals aggregating the whole shard at once.

Deduplication is per shard: the same submission id under two URLs (a URL normalized
differently by two harvest versions) counts once when both URLs fall in this shard and
once in each shard otherwise.

Memory: one bucket, a 16k-row read batch and 32k spilled rows waiting to be written.
Peak RSS of one task (``benchmarks/harvest_bench.py --reduce``, 100k-row buckets) was
about 330, 370 and 350 MiB at 100k, 1M and 3M submissions (before: 390, 500, 470), of
which 117 MiB is the imports; Arrow's own peak 42, 71, 73 MiB. The rest is pages the
allocator (mimalloc) keeps; a run under ``ARROW_DEFAULT_MEMORY_POOL=jemalloc
JE_ARROW_MALLOC_CONF=dirty_decay_ms:0,muzzy_decay_ms:0`` peaked at 216, 261, 267 MiB
(but took 1.8x as long).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtext.pipeline.executor import Task
from webtext.pipeline import layout
from webtext.pipeline.io import ParquetSink
from webtext.pipeline.schemas import SUBMISSIONS, URLS
from webtext.pipeline.stats import Stats

from . import urls as U
from .takedowns import Matcher


# The reduce phase works in buckets so that its memory does not grow with the harvest:
# at most about REDUCE_BUCKET_ROWS submissions are held at once ([harvest]
# reduce_bucket_rows overrides it). Spilled rows wait in Arrow IPC files under urls/_meta/spill/.
REDUCE_BUCKET_ROWS = 100_000
READ_ROWS = 16_384                 # rows per record batch read from a part
SPILL_ROWS = 32_768                # rows held before they are appended to the bucket files
READ_BUFFER = 1 << 20              # a part's pages are read through a 1 MiB buffer, not a column chunk at once
OUT_ROWS = 65_536                  # URL rows per output row group at most (one bucket's rows: fewer)
WORK = SUBMISSIONS.append(pa.field("version", pa.int32(), nullable=False))   # a submission and its source's version


def _cast_part(t: pa.Table) -> pa.Table:
    """Rows of a map part as SUBMISSIONS; columns that older parts lack are filled in."""
    if "url_hash" not in t.column_names:    # parts written before url_hash existed
        t = t.append_column("url_hash", pa.array([U.url_hash(u) for u in t["url"].to_pylist()], pa.uint64()))
    if "raw_url" not in t.column_names:     # parts written before raw_url existed: unknown
        t = t.append_column("raw_url", pa.nulls(t.num_rows, pa.string()))
    return t.select(SUBMISSIONS.names).cast(SUBMISSIONS)


def iter_part(path: Path, rows: int = READ_ROWS):
    """A map part as SUBMISSIONS tables of at most ``rows`` rows.

    Memory: one batch and a buffer per column, whatever the part's row groups (a whole
    column chunk read at once, and decoding on other threads, each with its own
    allocator heap, cost about 2x more RSS for the map's 65536-row groups).
    """
    with pq.ParquetFile(path, buffer_size=READ_BUFFER, pre_buffer=False) as f:
        for batch in f.iter_batches(batch_size=rows, use_threads=False):
            yield _cast_part(pa.Table.from_batches([batch]))


def read_part(path: Path) -> pa.Table:
    """A whole map part as SUBMISSIONS (for small parts and tests; the reduce streams them)."""
    return _cast_part(pq.read_table(path))


def release_unused() -> None:
    """Hand the pages Arrow's allocator keeps for reuse back to the system.

    Called after each spill write and each bucket. The default pool (mimalloc in the
    wheels) keeps freed pages for reuse, and they add up over a reduce: without this
    the peak RSS of a 1M-submission reduce was ~50 MiB higher. It costs well under 1%.
    """
    pa.default_memory_pool().release_unused()


class Spill:
    """Rows routed to ``n`` bucket files, then read back one bucket at a time.

    Each bucket keeps its rows in the order they were added. Rows wait in memory until
    ``hold`` of them are pending (across all buckets); then each bucket's pending rows
    are appended to its file as one more IPC stream (no file stays open, so ``n`` may
    exceed the limit on open files).
    """

    def __init__(self, folder: Path, name: str, n: int, hold: int = SPILL_ROWS, schema: pa.Schema = WORK):
        self.folder, self.name, self.n, self.hold, self.schema = folder, name, n, hold, schema
        self.pending: list[list[pa.Table]] = [[] for _ in range(n)]
        self.pending_rows = 0
        self.written: set[int] = set()

    def path(self, b: int) -> Path:
        return self.folder / f"{self.name}-{b:05d}.arrow"

    def add(self, table: pa.Table, bucket: np.ndarray | None = None) -> None:
        """Append rows; ``bucket`` holds each row's bucket (all in bucket 0 when None)."""
        if not table.num_rows:
            return
        if bucket is None or self.n == 1:
            self.pending[0].append(table)
        else:
            order = np.argsort(bucket, kind="stable")       # stable: a bucket keeps the rows' order
            table, ends = table.take(order), np.cumsum(np.bincount(bucket, minlength=self.n))
            for b in np.flatnonzero(np.diff(ends, prepend=0)):
                start = ends[b - 1] if b else 0
                self.pending[b].append(table.slice(start, ends[b] - start))
        self.pending_rows += table.num_rows
        if self.pending_rows >= self.hold:
            self.flush()

    def flush(self) -> None:
        opts = pa.ipc.IpcWriteOptions(compression="lz4")
        for b, tables in enumerate(self.pending):
            if tables:
                with pa.OSFile(str(self.path(b)), "ab") as f, pa.ipc.new_stream(f, self.schema, options=opts) as w:
                    for t in tables:
                        w.write_table(t)
                self.written.add(b)
        self.pending, self.pending_rows = [[] for _ in range(self.n)], 0
        release_unused()

    def read(self, b: int) -> pa.Table:
        """Bucket ``b``'s rows as one table (call ``close`` first); its file is deleted."""
        if b not in self.written:
            return self.schema.empty_table()
        tables, path = [], self.path(b)
        size = path.stat().st_size
        with pa.OSFile(str(path)) as f:
            while f.tell() < size:                  # one stream per flush
                with pa.ipc.open_stream(f) as r:
                    tables.append(r.read_all())
        path.unlink()
        return pa.concat_tables(tables).combine_chunks()

    def close(self) -> None:
        """Write what is pending; then ``read`` each bucket."""
        self.flush()



def url_buckets(url_hash: pa.ChunkedArray | pa.Array, n: int) -> np.ndarray:
    """Bucket of each url_hash: floor(hash * n / 2^64), so bucket order is url_id order."""
    h = url_hash.to_numpy()
    return (((h >> np.uint64(32)) * np.uint64(n)) >> np.uint64(32)).astype(np.int64)


def id_buckets(ids: list[str], n: int) -> np.ndarray:
    return np.array([U.url_hash(i) % n for i in ids], dtype=np.int64)


def _starts(sorted_keys: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """True where a sorted column's value differs from the row before (and at row 0)."""
    first = np.ones(len(sorted_keys), dtype=bool)
    if len(sorted_keys) > 1:
        k = sorted_keys.combine_chunks() if isinstance(sorted_keys, pa.ChunkedArray) else sorted_keys
        first[1:] = pc.fill_null(pc.not_equal(k.slice(1), k.slice(0, len(k) - 1)), True).to_numpy(zero_copy_only=False)
    return first


def latest_observations(subs: pa.Table) -> tuple[pa.Table, int]:
    """One row per submission id: the one from the newest source (then the highest score).

    A submission seen in two sources (a dump and the API, or overlapping dumps) must not
    have its karma counted twice. Rows without an id are all kept. The rows kept stay in
    their input order; of rows that tie, the first is kept (the sort is stable).
    """
    keys = subs.select(["id", "version", "score", "url"])
    order = pc.sort_indices(keys, sort_keys=[("id", "ascending"), ("version", "descending"),
                                             ("score", "descending"), ("url", "ascending")])
    ids = keys["id"].take(order)
    first = _starts(ids) | pc.equal(ids, "").to_numpy(zero_copy_only=False)
    keep = np.zeros(len(first), dtype=bool)
    keep[order.to_numpy()[first]] = True                # back in input order: one copy of the kept rows
    return subs.filter(pa.array(keep)), int((~first).sum())


def url_rows(subs: pa.Table, p: dict, stats: Stats) -> pa.Table:
    """URLS rows (sorted by url_id) of deduplicated submissions holding every row of their URLs.

    The caller must hold no other reference to ``subs``: its columns are sorted one at
    a time, each freed once sorted, so sorting costs one column more than the bucket.
    """
    stats.info["reduce_bucket_peak"] = max(stats.info.get("reduce_bucket_peak", 0), subs.num_rows)
    # Sorted so that the aggregation, and the lists it builds, are deterministic. Rows
    # without an id can tie on (url, created_utc, id): they keep latest_observations'
    # order (version, then score, descending), then the order they were read in.
    keys = [("url", "ascending"), ("created_utc", "ascending"), ("id", "ascending"),
            ("version", "descending"), ("score", "descending")]
    order = pc.sort_indices(subs.select([k for k, _ in keys]), sort_keys=keys)
    names, cols = subs.column_names, subs.columns
    del subs
    for i, c in enumerate(cols):
        cols[i] = c.take(order)
    subs = pa.table(cols, names=names)
    del cols, c, order
    agg = "sum" if p["score_agg"] == "sum" else "max"
    g = subs.drop_columns(["raw_url"]).group_by("url", use_threads=False).aggregate([
        ("score", agg), ("url", "count"), ("created_utc", "min"), ("created_utc", "max"),
        ("subreddit", "distinct"), ("id", "list"), ("title", "first"), ("domain", "first"),
        ("version", "min"), ("url_hash", "first"),
    ])
    keep = pc.greater_equal(g[f"score_{agg}"], p["min_score"])
    kept = g.filter(keep)
    stats.drop("low_score", int(pc.sum(g.filter(pc.invert(keep))["url_count"]).as_py() or 0))
    stats.drop("merged_duplicate_url", int(pc.sum(kept["url_count"]).as_py() or 0) - kept.num_rows)
    stats.records_out += kept.num_rows
    stats.add_info("unique_urls", g.num_rows)
    del g
    fetch = fetch_urls(subs, kept["url"])
    del subs
    domains = kept["domain_first"].to_pylist()
    table = pa.table({
        "url_id": pa.array([f"{h:016x}" for h in kept["url_hash_first"].to_pylist()], pa.string()),
        "url": kept["url"],
        "domain": pa.array(domains, pa.string()),
        "registered_domain": pa.array([U.registered_domain(d) for d in domains], pa.string()),
        "score": kept[f"score_{agg}"],
        "num_submissions": pc.cast(kept["url_count"], pa.int32()),
        "first_seen": kept["created_utc_min"],
        "last_seen": kept["created_utc_max"],
        "subreddits": pa.array([sorted(s) for s in kept["subreddit_distinct"].to_pylist()], pa.list_(pa.string())),
        "submission_ids": kept["id_list"],
        "title": kept["title_first"],
        "harvest_version": kept["version_min"],
        "fetch_url": fetch,
    }).sort_by("url_id")
    stats.add_info("new_urls", int(pc.sum(pc.equal(table["harvest_version"], p["latest"])).as_py() or 0))
    return table.select(URLS.names).cast(URLS)


def fetch_urls(subs: pa.Table, urls: pa.ChunkedArray) -> pa.Array:
    """Each URL's most-submitted raw form (ties: the earliest first submission, then the
    smallest string), or the URL itself where no raw form is known (parts written before
    raw_url). Normalization makes keys; servers may need the query as it was submitted."""
    if "raw_url" not in subs.column_names:       # a SUBMISSIONS schema without it (before v3)
        return urls.combine_chunks()
    subs = subs.select(["url", "raw_url", "id", "created_utc"])
    forms = subs.filter(pc.fill_null(pc.greater(pc.utf8_length(subs["raw_url"]), 0), False))
    forms = forms.group_by(["url", "raw_url"], use_threads=False).aggregate([("id", "count"), ("created_utc", "min")])
    forms = forms.sort_by([("url", "ascending"), ("id_count", "descending"), ("created_utc_min", "ascending"),
                           ("raw_url", "ascending")])
    best = forms.filter(pa.array(_starts(forms["url"])))
    at = pc.index_in(urls, value_set=best["url"].combine_chunks())
    return pc.coalesce(best["raw_url"].combine_chunks().take(at), urls.combine_chunks())


def aggregate_urls(task: Task) -> Stats:
    """Reduce task: every part's submissions whose URL hashes to this shard -> URL rows.

    The three passes of the module docstring, with ``n = ceil(shard rows / bucket_rows)``
    buckets (``options["bucket_rows"]``, from ``[harvest] reduce_bucket_rows``). The
    output is the same as aggregating the whole shard at once, whatever ``n``.
    """
    p, out = task.params, task.outputs[0]
    nshards = p["num_shards"]
    limit = task.options.get("bucket_rows", REDUCE_BUCKET_ROWS)
    expected = sum(pq.read_metadata(part).num_rows for part in task.inputs) / nshards
    n = max(1, int(np.ceil(expected / limit)))          # hashing spreads rows evenly over buckets
    spill_dir = layout.meta(out.parent, layout.SPILL) / task.name
    shutil.rmtree(spill_dir, ignore_errors=True)        # left by an attempt that was killed
    spill_dir.mkdir(parents=True)
    stats = Stats()
    try:
        _reduce(task, n, limit, spill_dir, stats)
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    return stats


def _reduce(task: Task, n: int, limit: int, spill_dir: Path, stats: Stats) -> None:
    """aggregate_urls' three passes (see there) with ``n`` buckets of about ``limit`` rows."""
    p, out = task.params, task.outputs[0]
    shard, nshards = p["shard"], p["num_shards"]
    rows, hold = min(READ_ROWS, limit), min(SPILL_ROWS, limit)
    by_id, by_url = Spill(spill_dir, "id", n, hold), Spill(spill_dir, "url", n, hold)
    taken = Matcher.from_params(p.get("takedowns"))
    taken_urls: set[int] = set()    # distinct URLs dropped by a takedown (the drop counts submissions)
    for part in task.inputs:
        version = p["versions"][part.name]
        for t in iter_part(part, rows):
            t = t.filter(pa.array(t["url_hash"].to_numpy() % np.uint64(nshards) == shard))
            t = t.append_column("version", pa.array(np.full(t.num_rows, version, dtype=np.int32))).cast(WORK)
            stats.records_in += t.num_rows
            if taken:                       # taken-down URLs never come back into urls/
                hit = taken.mask(t["url"], t["domain"])
                stats.drop("taken_down", int(hit.sum()))
                taken_urls.update(t["url_hash"].to_numpy()[hit].tolist())
                t = t.filter(pa.array(~hit))
            no_id = pc.equal(t["id"], "").to_numpy(zero_copy_only=False)
            if no_id.any():
                anon = t.filter(pa.array(no_id))
                by_url.add(anon, url_buckets(anon["url_hash"], n))
                t = t.filter(pa.array(~no_id))
            by_id.add(t, id_buckets(t["id"].to_pylist(), n) if n > 1 else None)
    if taken_urls:
        stats.add_info("taken_down_urls", len(taken_urls))
    by_id.close()
    for b in range(n):
        subs, repeated = latest_observations(by_id.read(b))
        stats.drop("duplicate_submission", repeated)
        by_url.add(subs, url_buckets(subs["url_hash"], n))
        del subs
        release_unused()
    by_url.close()
    stats.info["reduce_bucket_peak"] = 0     # the most rows aggregated at once (a maximum: this task only)
    with ParquetSink(out, URLS) as w:       # a shard no URL hashes to: no file
        for b in range(n):
            stats.add_info("reduce_buckets", 1)
            if b in by_url.written:         # the only reference to the bucket is url_rows' own
                w.write(url_rows(by_url.read(b), p, stats), row_group_size=OUT_ROWS)
            release_unused()

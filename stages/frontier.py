"""fetch's frontier: which URLs each fetch task fetches (``stages.fetch`` runs the tasks).

In: harvest's ``urls/urls-NNNNN.parquet`` shards and the frontier files planned before.
Out: ``warc/_meta/frontier/frontier-NNNNN.parquet`` files (schema URLS, plus the revisit
columns for revisits), numbered on from the last and never rewritten, and
``warc/_meta/frontier/plan.json`` (the urls shards' digests and each file's plan time).

- ``plan_frontier``: the URLs never scheduled before (when the urls shards changed) and,
  with a refetch age, those due for a revisit, with the validators of their newest fetch.
- ``split_by_site``: a shard's new URLs in ceil(n / ``urls_per_task``) files by a hash of
  each URL's site, so a site stays in one task (one robots.txt and tdmrep.json request,
  one politeness gate).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from webtext.pipeline import layout
from webtext.pipeline.executor import Context
from webtext.pipeline.io import atomic_path, read_json, shard_id, sorted_files, write_json

from .politeness import site_of
from .takedowns import Matcher

FRONTIER = layout.FRONTIER


def plan_frontier(ctx: Context, urls: list[Path], out: Path, refetch_after_s: float = 0,
                  urls_per_task: int = 5000) -> tuple[list[Path], int]:
    """Every frontier file, after adding those for URLs never scheduled before (only when
    the urls shards changed since the last plan) and, with ``refetch_after_s``, those for
    URLs last scheduled longer ago than that (``due_for_refetch``, with ``last_validators``).
    Returns the frontier files and how many URLs this call scheduled for a revisit.
    Memory: the ids of every URL scheduled so far (16 hex characters each) and one urls shard."""
    fdir = layout.meta(out, FRONTIER)
    fdir.mkdir(parents=True, exist_ok=True)
    plan_path = fdir / "plan.json"
    digests = {p.name: ctx.state.digest(p) for p in urls}
    existing = sorted_files(fdir, "frontier-*.parquet")
    plan = read_json(plan_path) if plan_path.exists() else {}
    planned_at = dict(plan.get("planned_at", {}))
    fresh = plan.get("urls") != digests
    if not fresh and not refetch_after_s:
        return existing, 0
    ids = {f: pq.read_table(f, columns=["url_id"])["url_id"].combine_chunks() for f in existing}
    next_id = 1 + max((int(shard_id(f)) for f in existing), default=-1)

    def add(table: pa.Table) -> None:
        nonlocal next_id
        for part in split_by_site(table, urls_per_task):
            path = fdir / f"frontier-{next_id:05d}.parquet"
            with atomic_path(path) as tmp:
                pq.write_table(part, tmp, compression="zstd")
            existing.append(path)
            ids[path] = part["url_id"].combine_chunks()
            planned_at[path.name] = time.time()
            next_id += 1

    taken = Matcher.from_state(ctx.state)      # takedowns: never scheduled, new or revisit

    def allowed(table: pa.Table) -> pa.Table:
        return table.filter(pa.array(~taken.mask(table["url"], table["domain"]))) if taken else table

    if fresh:
        seen = pa.concat_arrays(list(ids.values())) if ids else pa.array([], pa.string())
        for src in urls:
            table = pq.read_table(src)
            new = table.filter(pc.invert(pc.is_in(table["url_id"], value_set=seen))) if len(seen) else table
            new = allowed(new)
            if new.num_rows:
                add(new)
    revisits = 0
    if refetch_after_s and existing:
        due = due_for_refetch(ids, planned_at, time.time() - refetch_after_s)
        if len(due):
            validators = last_validators(out, due)
            for src in urls:
                table = pq.read_table(src)
                table = allowed(table.filter(pc.is_in(table["url_id"], value_set=due)))
                if table.num_rows:
                    at = pc.index_in(table["url_id"], value_set=validators["url_id"])   # null: none archived
                    for c in ("validator_url", "etag", "last_modified"):
                        table = table.append_column(c, validators[c].take(at))
                    add(table.append_column("revisit", pa.array(np.ones(table.num_rows, bool))))
                    revisits += table.num_rows
    write_json(plan_path, {"urls": digests, "frontiers": [f.name for f in existing], "planned_at": planned_at})
    return existing, revisits


def split_by_site(table: pa.Table, urls_per_task: int) -> list[pa.Table]:
    """``table`` in ceil(rows / urls_per_task) parts by a hash of each row's site (the
    registrable domain of its host), rows in their order; empty parts are left out. A
    site is never split, so a part may be larger than ``urls_per_task``."""
    k = -(-table.num_rows // urls_per_task)
    if k <= 1:
        return [table] if table.num_rows else []
    hosts = table["domain"].combine_chunks().dictionary_encode()
    buckets = np.array([xxhash.xxh3_64_intdigest(site_of(h or "").encode()) % k for h in hosts.dictionary.to_pylist()],
                       dtype=np.int64)
    of_row = buckets[hosts.indices.to_numpy(zero_copy_only=False)] if len(buckets) else np.zeros(0, np.int64)
    parts = [table.filter(pa.array(of_row == b)) for b in range(k)]
    return [p for p in parts if p.num_rows]


def due_for_refetch(ids: dict[Path, pa.Array], planned_at: dict[str, float], cutoff: float) -> pa.Array:
    """The url_ids (``ids``: per frontier file) whose latest scheduling (the newest
    frontier file holding them; its plan time, else its file time) is older than ``cutoff``."""
    when = [pa.array(np.full(len(col), planned_at.get(f.name, f.stat().st_mtime))) for f, col in ids.items()]
    t = pa.table({"url_id": pa.concat_arrays(list(ids.values())), "t": pa.concat_arrays(when)})
    latest = t.group_by("url_id").aggregate([("t", "max")])
    return latest.filter(pc.less(latest["t_max"], cutoff))["url_id"].combine_chunks()


def last_validators(out: Path, due: pa.Array) -> pa.Table:
    """url_id, validator_url, etag, last_modified of each due URL's newest archived fetch
    (fetch logs of schema version 1 have no validators: then only the URL)."""
    pieces = []
    validators = ("etag", "last_modified")
    for seq, log in enumerate(sorted_files(out, "fetchlog-*.parquet")):
        have = set(pq.read_schema(log).names)
        t = pq.read_table(log, columns=["url_id", "error", "final_url", *(c for c in validators if c in have)])
        t = t.filter(pc.and_(pc.is_null(t["error"]), pc.is_in(t["url_id"], value_set=due)))
        cols = {"url_id": t["url_id"], "validator_url": t["final_url"],
                **{c: t[c] if c in t.column_names else pa.nulls(t.num_rows, pa.string())
                   for c in validators}}
        pieces.append(pa.table(cols).append_column("seq", pa.array(np.full(t.num_rows, seq))))
    if not pieces:
        return pa.table({c: pa.array([], pa.string()) for c in ("url_id", "validator_url", *validators)})
    t = pa.concat_tables(pieces).sort_by("seq")
    last = t.group_by("url_id", use_threads=False).aggregate([(c, "last") for c in ("validator_url", *validators)])
    return last.rename_columns(["url_id" if c == "url_id" else c.removesuffix("_last") for c in last.column_names])

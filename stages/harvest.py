"""harvest: Reddit submissions -> ``urls/`` (one row per normalized URL, karma aggregated).

Sources (``[harvest] source``):
- ``dumps``: Pushshift/Arctic-Shift NDJSON files (``stages.reddit``), given as files or
  folders in ``[harvest] dumps``; one map task per file, in parallel.
- ``api``: the live Reddit API through praw (``stages.reddit_api``), one map task per
  pull; a pull also re-reads, by id, the submissions of earlier pulls younger than
  ``api_settle_hours`` and writes their current score into its part (karma matures after
  a post is listed; info counts ``rescored``, ``matured`` and ``vanished``).

Phases:
1. *map*: each source -> ``urls/_meta/parts/<source>.parquet`` (schema SUBMISSIONS), the
   submissions that pass the filters. Bad lines are counted; a truncated compressed file
   keeps everything before the damage (``truncated_file`` counts the unreadable rest as 1).
2. *reduce*, one task per output shard (``stages.harvest_reduce``): keep each
   submission's newest observation, group the submissions by URL, aggregate karma
   (``sum`` over submissions as OpenWebText2, or ``max`` as WebText), keep URLs with
   aggregated karma >= ``min_score`` -> ``urls/urls-NNNNN.parquet`` (schema URLS). It
   spills the shard's rows into buckets on disk (by submission id, then by url_hash)
   and holds one bucket of about ``reduce_bucket_rows`` submissions at a time, so its
   memory does not grow with the harvest.

Incremental: the state database records every source (dump name and sha256, or API
pull) with the *harvest version* that first brought it in. A rerun maps only new
sources; reduce re-aggregates, so a known URL's karma is updated, never duplicated.
Each URL's ``harvest_version`` is the earliest version of any of its submissions, so
``harvest_version == latest`` marks the URLs that are new in the latest harvest.
Harvesting dumps A and B in two runs gives the same URLs and karma as one run over both.

Drop reasons (in submissions): malformed_json, no_url, self_post, nsfw, deleted (by
its author), removed (by moderators or Reddit), bad_scheme, bad_url (longer than
``max_url_length``, or a host or port no client can use), reddit_link, media_url,
blocklisted_domain, bad_value (a score or created_utc outside int64), truncated_file /
corrupt_file (the unreadable rest of a damaged file, counted as 1; every complete line
the decompressor produces before the damage is kept), duplicate_submission (the same
submission id seen again; the newest observation is kept), taken_down (a submission of
a URL that ``webtext remove`` took down: by URL, domain or prefix), low_score (the URL's
aggregate is below the threshold), and merged_duplicate_url (a submission merged into a
URL kept through another one).
"""

from __future__ import annotations

import time
from pathlib import Path

from webtext.pipeline import progress
from webtext.pipeline.config import HarvestConfig, to_dict
from webtext.pipeline.errors import MissingInputError
from webtext.pipeline.executor import Context, Task, finish_stage, run_phase
from webtext.pipeline import layout
from webtext.pipeline.io import read_json, safe_name, sorted_files
from webtext.pipeline.stats import Stats

from . import reddit_api
from .harvest_map import (DATA_DIR, SubmissionWriter, filter_into, filter_params, load_blocklist,  # noqa: F401
                          make_filter)
from .harvest_reduce import aggregate_urls
from .reddit import CORRUPT_ERRORS, TruncatedDumpError, decode_batch, iter_batches
from .takedowns import Matcher


def harvest_dump(task: Task) -> Stats:
    """Map task: one dump file -> one Parquet file of kept submissions."""
    (path,), (out,) = task.inputs, task.outputs
    keep = make_filter(task.params)
    stats = Stats()
    with SubmissionWriter(out) as w:
        try:
            for buf in iter_batches(path):
                stats.add_info("decompressed_bytes", len(buf))
                subs, bad = decode_batch(buf)
                stats.records_in += len(subs) + bad
                progress.advance(len(subs) + bad)
                stats.drop("malformed_json", bad)
                filter_into(keep, subs, stats, w)
        except (TruncatedDumpError, *CORRUPT_ERRORS) as e:   # keep what came before; count the rest as 1
            stats.records_in += 1
            stats.drop("truncated_file" if isinstance(e, TruncatedDumpError) else "corrupt_file")
            stats.add_info("damaged_file", f"{path.name}: {type(e).__name__}: {e}")
    stats.records_out = w.rows
    return stats


def find_dumps(specs: list[str]) -> list[Path]:
    if not specs:
        raise MissingInputError(
            "no dumps given", "Pass --dumps PATH (an RS_* file or a folder of them) or set [harvest] dumps"
        )
    found: list[Path] = []
    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            found += [q for q in sorted(p.iterdir()) if q.is_file() and q.name.startswith(("RS_", "RS-"))]
        elif p.is_file():
            found.append(p)
        else:
            raise MissingInputError(f"dump path {p} does not exist", "Check --dumps / [harvest] dumps")
    if not found:
        raise MissingInputError(f"no RS_* dump files in {', '.join(specs)}", "Point --dumps at Pushshift RS_* files")
    return found


def run(ctx: Context) -> dict:
    cfg: HarvestConfig = ctx.cfg.harvest
    started = time.time()
    out_dir = ctx.dir("urls")
    parts_dir = layout.meta(out_dir, layout.PARTS)
    fparams = filter_params(cfg)
    version = ctx.state.next_harvest_version()
    if cfg.source == "api":
        pull = reddit_api.Pull.plan(cfg, ctx.state, parts_dir, version)
        tasks = [pull.task(cfg, fparams)]
        sources = {pull.part.name: f"api:{pull.part.stem}"}
    else:
        dumps = find_dumps(cfg.dumps)
        parts = [parts_dir / f"{safe_name(d)}.parquet" for d in dumps]
        # Progress counts submissions (lines); a compressed dump's count is not known up front.
        tasks = [Task("map", part.stem, harvest_dump, [d], [part], fparams, units="submissions")
                 for d, part in zip(dumps, parts)]
        sources = {part.name: ctx.state.digest(d) for d, part in zip(dumps, parts)}
    mapped = run_phase(ctx, out_dir, "map", tasks)
    for name, digest in sources.items():
        ctx.state.record_source(name, digest, version)
    if cfg.source == "api":
        pull.record(ctx.state, mapped.stats)
    # Reduce over every part ever harvested, each tagged with the version that brought it in.
    versions = ctx.state.source_versions()
    all_parts = [p for p in sorted_files(parts_dir, "*.parquet") if p.name in versions]
    latest = max(versions.values(), default=version)
    # "format" 2: URLS gained fetch_url (so reduce tasks done before it run again).
    rparams = {"format": 2, "min_score": cfg.min_score, "score_agg": cfg.score_agg, "num_shards": cfg.num_shards,
               "versions": {p.name: versions[p.name] for p in all_parts}, "latest": latest}
    if rules := Matcher.from_state(ctx.state).params():    # `webtext remove`: a new takedown reruns reduce
        rparams["takedowns"] = rules
    # bucket_rows bounds the task's memory, not its output: an option, so changing it reruns nothing.
    tasks = [Task("reduce", f"{i:05d}", aggregate_urls, all_parts, [out_dir / f"urls-{i:05d}.parquet"],
                  {**rparams, "shard": i}, {"bucket_rows": cfg.reduce_bucket_rows}) for i in range(cfg.num_shards)]
    for stale in sorted_files(out_dir, "urls-*.parquet"):   # from an earlier run with more shards
        if stale not in {t.outputs[0] for t in tasks}:
            stale.unlink()
    reduced = run_phase(ctx, out_dir, "reduce", tasks)
    # The funnel covers every source harvested so far, in submissions: the map stats of all
    # parts (from their completion records), then duplicate/low_score/merged from reduce.
    sourced = Stats()
    for name in versions:       # a source with no kept submission has a record but no part
        if (rec := layout.done_dir(out_dir) / f"map-{Path(name).stem}.json").exists():
            sourced.merge(Stats.from_dict(read_json(rec)["stats"]))
    stats = Stats(records_in=sourced.records_in, records_out=reduced.stats.records_out)
    stats.dropped.update(sourced.dropped)
    stats.dropped.update(reduced.stats.dropped)
    stats.info.update({k: v for k, v in sourced.info.items() if k != "api_newest"})
    stats.add_info("sources", len(all_parts))
    stats.add_info("harvest_version", latest)
    for key in ("unique_urls", "new_urls", "taken_down_urls"):
        stats.add_info(key, reduced.stats.info.get(key, 0))
    return finish_stage(ctx, "harvest", out_dir, stats, to_dict(cfg),
                        mapped.ran + reduced.ran, mapped.skipped + reduced.skipped, started)

"""fetch: ``urls/`` -> ``warc/`` (WARC/1.1 .warc.gz plus a Parquet fetch log per shard).

Every URL is fetched once. When the urls shards change (a new harvest), the URLs not
in any earlier *frontier* file are written to new ``warc/_meta/frontier/frontier-NNNNN.parquet``
files (schema URLS, numbered on from the last), and only those are fetched: old
frontiers, fetch logs and everything downstream stay done. Frontier files are never
rewritten, so their tasks stay done across refreshes (planning: ``stages.frontier``).

Tasks by size: a urls shard's new URLs are split into ceil(n / ``urls_per_task``)
frontier files by a hash of each URL's site (its registrable domain), so the number of
tasks follows the number of URLs, not ``harvest.num_shards``, and each site of the shard
stays in one task (one robots.txt fetch, one politeness gate). Rows keep their order
within a file. The split depends only on the URLs, so every worker count and executor
writes the same files.

Revisits (``refetch_after_days``, ``--refetch-after DAYS``): URLs whose newest frontier
was planned longer ago than that go into a new frontier file too, with the final URL,
ETag and Last-Modified of their newest archived fetch. Their request is conditional; a
304 is the outcome ``not_modified`` (nothing archived; the document stays as it is). A
page that answers 200 is archived and extracted again: its new document has the same
doc_id, and shard replaces the old one in the next corpus version when the text passed
every filter and changed beyond a near-duplicate of the old text (dedup keeps the old one
otherwise). URLs taken down with ``webtext remove`` are never revisited.

One task per frontier file writes ``warc/warc-NNNNN-SSS.warc.gz`` segments (request,
response and metadata record per archived page, one gzip member per record, rotated at
``warc_max_bytes``) and ``warc/fetchlog-NNNNN.parquet`` (schema FETCHLOG, one row per
URL). A shard resumes URL by URL after a crash (``stages.warcstore``).

The crawler (``stages.http``) is asyncio + aiohttp: ``concurrency`` workers share a queue
of URLs interleaved across hosts; per host a connection limit and a minimum delay, and
limits on requests in flight per site (``per_domain``: the ICANN registrable domain, so
``*.blogspot.com`` is one site) and per resolved address (``per_ip``); robots.txt per
host (its first 500 KiB); manual redirects (at most ``max_redirects``, loops detected,
every hop re-checked); a cap on the *decoded* body (so a gzip bomb is cut off); retries
with exponential backoff and jitter for 429/5xx/connection errors, waiting at least a
Retry-After (seconds or HTTP-date), during which its whole host is held.
Only HTML/XHTML is archived; the detected charset is recorded for extract.

What is requested is the URL as submitted (``fetch_url``: harvest removed only the
fragment and tracking parameters), or ``url`` in frontiers written before that column
existed; the normalized ``url`` and ``url_id`` stay the keys of the fetch log. The WARC
records name the URL actually requested (after redirects). ``elapsed_ms`` is the
servers' time (sending to end of body, over tries and hops); ``wait_ms`` is the rest of
the URL's time: politeness, robots.txt and retry sleeps.

The stored response is the decoded body: Content-Encoding and Transfer-Encoding are
removed from the archived headers and Content-Length is set to the stored length.

Dead links (``archive``: off | fallback | prefer; ``stages.recover``, ``stages.archives``):
in fallback mode a URL whose live fetch ends dead (404/410, 5xx after the retries,
connection_error, timeout, or a 2xx that is a soft 404 or a parked domain) is looked up in
Common Crawl and the Wayback Machine (``archive_sources``, in order) for the capture
nearest its submission; in prefer mode submissions older than
``archive_prefer_older_than_days`` go to the archives first and live only without a
usable capture. Revisits are never looked up. A recovered capture is written as this
crawl's own response and metadata records under the URL as submitted (no request record;
WARC-Date is the capture time), with the archived status, headers and body (the live
pages' checks: HTML type, not binary, ``max_bytes``; charset detected here). The metadata
JSON and the fetch log say where it came from (``source``: live | commoncrawl | wayback,
``captured_at``: the archive's capture time, in the log null for a live page, whose time
is ``fetched_at``; in the metadata ``collection`` and ``archive_record``); the log's
``archive`` is recovered | miss | error (null: not looked up). A recovered URL has no
drop reason; a dead one without a capture keeps its live reason. With
``archive_commoncrawl_columnar`` the shard's URLs are joined once against Common Crawl's
columnar index at the start of the shard (no CDX request for Common Crawl). The lookup's
outcome is part of the URL's journal line, so a resumed shard repeats no finished lookup.

AI opt-outs (``stages.fetchoptout``, ``stages.optout``): each archived live page gets
``ai_robots`` (the AI crawlers the host's robots.txt, already fetched, disallows for it) and
``tdmrep_reserved`` / ``tdmrep_policy`` from the host's ``/.well-known/tdmrep.json``, asked
once per host in a task (``tdmrep``), in the log and the WARC metadata record. The first
page of a host waits for that file: its ``wait_ms`` includes it.

Existing archives (``from_warc``, ``--from-warc PATH``; ``stages.importwarc``): before the
crawl, a shard's URLs are looked up in the user's WARC files; a usable page found there
is written and journaled like a recovered capture (``source`` "warc") and not fetched live.

Drop reasons: bad_scheme, bad_url (a host that is no valid host, e.g. ``1.2.3.999``),
private_address, robots_disallowed, robots_unavailable,
crawl_delay_too_long, http_3xx/4xx/5xx, timeout, connection_error, too_many_redirects,
redirect_loop, too_large, not_html, not_modified, and with ``archive`` on, soft_404 (a
deep URL redirected to its site's root or a not-found page) and parked_domain (a parking
or for-sale page, ``stages.deadpages``) when no archive had the page.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import defaultdict
from urllib.parse import urlsplit

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq

from webtext.pipeline import layout, progress
from webtext.pipeline.config import FetchConfig, to_dict
from webtext.pipeline.executor import Context, Task, finish_stage, run_phase
from webtext.pipeline.io import (
    ParquetSink,
    parquet_rows,
    require_shards,
    shard_id,
)
from webtext.pipeline.schemas import FETCHLOG, unix_seconds
from webtext.pipeline.stats import Stats

from .fetchoptout import FetchOptouts
from .frontier import plan_frontier, split_by_site  # noqa: F401  (split_by_site: fetch's public name too)
from .http import Client, Outcome, SafeResolver, Validators
from .importwarc import find_warcs, import_warcs
from .recover import Recovery, dead_reason, plan_columnar
from .warcstore import Journal, WarcSegments, finalize


def interleave_by_host(rows: list[dict]) -> list[dict]:
    """Round-robin over hosts so one big host does not stall the queue."""
    by_host: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_host[r["domain"]].append(r)
    queues = [by_host[h] for h in sorted(by_host)]
    out = []
    for i in range(max((len(q) for q in queues), default=0)):
        out += [q[i] for q in queues if i < len(q)]
    return out


async def _crawl(batches, cfg: FetchConfig, segs: WarcSegments, journal: Journal,
                 planned: dict | None = None) -> dict[str, int]:
    """Fetch every row of every batch; one session (robots.txt, tdmrep.json and DNS caches)
    for all batches. Returns counts for the stats: robots_fetched and the tdmrep_* counts."""
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, sock_connect=cfg.connect_timeout_s,
                                    sock_read=cfg.read_timeout_s)
    proxy_host = urlsplit(cfg.proxy).hostname if cfg.proxy else None     # the operator's choice: trusted
    resolver = aiohttp.ThreadedResolver() if cfg.allow_private else SafeResolver((proxy_host,) if proxy_host else ())
    connector = aiohttp.TCPConnector(limit=cfg.concurrency, limit_per_host=cfg.per_host, ttl_dns_cache=300,
                                     resolver=resolver)
    headers = {"User-Agent": cfg.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"}
    queue: asyncio.Queue = asyncio.Queue()

    def record(row: dict, o: Outcome, total_s: float, archive: str | None) -> None:
        name = offset = end = None
        elapsed_ms = int(o.elapsed_s * 1000)
        now = int(time.time())
        if o.error is None:
            if o.captured_at is None:
                o.captured_at = now                 # a live page: captured when fetched
            name, offset, end = segs.write(row, o)     # records first, then the journal line
        ok = o.error is None
        journal.add({"url_id": row["url_id"], "url": row["url"], "final_url": o.final_url, "status": o.status,
                     "error": o.error, "bytes": len(o.body), "content_type": o.content_type,
                     "charset": o.charset, "elapsed_ms": elapsed_ms, "tries": o.tries, "warc_file": name,
                     "warc_offset": offset, "fetched_at": now, "etag": o.etag,
                     "last_modified": o.last_modified, "revisit": bool(row.get("revisit")),
                     "wait_ms": max(0, int(total_s * 1000) - elapsed_ms),
                     # captured_at: the archive's capture time; a live page's is fetched_at
                     "source": o.source if ok else None,
                     "captured_at": o.captured_at if ok and o.source != "live" else None,
                     "archive": archive,
                     # AI opt-outs known at fetch time (stages.fetchoptout); null: not evaluated
                     "ai_robots": o.ai_robots, "tdmrep_reserved": o.tdmrep_reserved,
                     "tdmrep_policy": o.tdmrep_policy, "_end": end})
        progress.advance(1)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers,
                                     trust_env=not cfg.proxy) as session:
        client = Client(session, cfg, resolver)
        optouts = FetchOptouts(client, cfg.tdmrep)
        recovery = Recovery(session, cfg, planned, time.time()) if cfg.archive != "off" else None

        async def fetch_one(row: dict) -> tuple[Outcome, str | None]:
            """The URL's outcome (live or recovered) and its archive lookup's result."""
            target = row.get("fetch_url") or row["url"]     # as submitted; url is the key
            archive = None
            if recovery and recovery.prefer(row) and not row.get("revisit"):
                recovered, archive = await recovery.recover(row, target)
                if recovered:
                    return recovered, archive
            v = row.get("validator_url")
            if v == row["url"]:         # from a log that requested the normalized form
                v = target
            o = await client.get(target, Validators(v, row.get("etag"), row.get("last_modified")) if v else None)
            if recovery and dead_reason(target, o) and archive is None and not row.get("revisit"):
                recovered, archive = await recovery.recover(row, target)
                if recovered:
                    recovered.tries, recovered.elapsed_s = o.tries, o.elapsed_s
                    return recovered, archive
            return o, archive

        async def worker():
            while not queue.empty():
                row = queue.get_nowait()
                t0 = time.monotonic()
                o, archive = await fetch_one(row)
                await optouts.annotate(o)
                record(row, o, time.monotonic() - t0, archive)

        for rows in batches:
            for r in rows:
                queue.put_nowait(r)
            await asyncio.gather(*(worker() for _ in range(max(1, min(cfg.concurrency, len(rows))))))
    return {"robots_fetched": len(client.robots_log), **optouts.counts}


def fetch_shard(task: Task) -> Stats:
    """One urls shard -> WARC segments + fetch log, resumable URL by URL (see stages.warcstore)."""
    (src,), (log_path,) = task.inputs, task.outputs
    cfg = FetchConfig(**task.options["fetch"])
    out_dir = log_path.parent
    partial = layout.meta(out_dir, layout.PARTIAL) / task.name
    partial.mkdir(parents=True, exist_ok=True)
    journal = Journal(partial / "journal.jsonl")
    stats = Stats()
    if not journal.complete:
        stats.add_info("resumed_outcomes", len(journal.done))
        progress.advance(len(journal.done))

        def batches():   # the shard in bounded batches, hosts interleaved within each
            for batch in pq.ParquetFile(src).iter_batches(batch_size=cfg.batch_urls):
                yield [r for r in interleave_by_host(unix_seconds(batch).to_pylist()) if r["url_id"] not in journal.done]

        planned = None
        if cfg.archive != "off" and cfg.archive_commoncrawl_columnar and "commoncrawl" in cfg.archive_sources:
            have = pq.read_schema(src).names        # one pass over the index for the shard
            planned, counts = plan_columnar(pq.read_table(src, columns=[c for c in (
                "url_id", "url", "fetch_url", "first_seen") if c in have]), cfg)
            stats.add_info("columnar_matched", counts["matched"])
        segs = WarcSegments(partial, task.name, cfg.user_agent, cfg.warc_max_bytes, journal.ends,
                            cfg.warc_gzip_level, cfg.warc_gzip)
        try:
            if cfg.from_warc:       # pages from the user's WARC files first: never fetched live
                import_warcs(src, cfg, segs, journal, stats)
            for key, n in asyncio.run(_crawl(batches(), cfg, segs, journal, planned)).items():
                stats.add_info(key, n)
        finally:
            segs.close()
        journal.mark_complete()
    journal.close()
    names: set[str] = set()
    with ParquetSink(log_path, FETCHLOG) as w:      # a shard with no URL: no log
        for rows in journal.iter_rows():
            w.write(pa.Table.from_pylist(rows, schema=FETCHLOG))
            for r in rows:
                stats.records_in += 1
                if r.get("revisit"):
                    stats.add_info("revisits", 1)
                if r.get("source") == "warc":
                    stats.add_info("imported_warc", 1)
                if r.get("archive") == "recovered":
                    stats.add_info(f"recovered_{r['source']}", 1)
                elif r.get("archive") in ("miss", "error"):
                    stats.add_info(f"archive_{r['archive']}", 1)
                if r["error"]:
                    stats.drop(r["error"])
                else:
                    stats.records_out += 1
                    if r.get("ai_robots"):
                        stats.add_info("ai_robots_disallowed", 1)
                    if r.get("tdmrep_reserved"):
                        stats.add_info("tdmrep_reserved", 1)
                    stats.add_info("bytes", r["bytes"])
                    names.add(r["warc_file"])
    for stale in partial.glob("warc-*.warc.gz"):       # segments with no journaled record
        if stale.name not in names:
            stale.unlink()
    segments = finalize(partial, out_dir, sorted(names))
    stats.info["_outputs"] = [str(p) for p in segments]
    (partial / "journal.jsonl").unlink()
    partial.rmdir()
    return stats


def run(ctx: Context) -> dict:
    cfg: FetchConfig = ctx.cfg.fetch
    started = time.time()
    if cfg.from_warc:
        find_warcs(cfg.from_warc)       # a missing path fails before any work
    urls = require_shards(ctx.dir("urls"), "urls-*.parquet", "URL shards", "harvest")
    if not cfg.proxy and (env := os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")):
        cfg.proxy = env
    out = ctx.dir("warc")
    frontier, revisits = plan_frontier(ctx, urls, out, cfg.refetch_after_days * 86400, cfg.urls_per_task)
    tasks = [Task("fetch", shard_id(src), fetch_shard, [src], [out / f"fetchlog-{shard_id(src)}.parquet"],
                  options={"fetch": to_dict(cfg)}, units="URLs", size=parquet_rows(src))
             for src in frontier]
    res = run_phase(ctx, out, "fetch", tasks)
    res.stats.add_info("frontier_files", len(frontier))
    res.stats.add_info("new_urls", res.fresh.records_in - res.fresh.info.get("revisits", 0))
    res.stats.add_info("revisits_planned", revisits)
    return finish_stage(ctx, "fetch", out, res.stats, to_dict(cfg), res.ran, res.skipped, started)

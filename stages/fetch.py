"""fetch: ``urls/`` -> ``warc/`` (WARC/1.1 .warc.gz plus a Parquet fetch log per shard).

One task per urls shard writes ``warc/warc-NNNNN.warc.gz`` (request, response and
metadata record per archived page, one gzip member per record) and
``warc/fetchlog-NNNNN.parquet`` (schema FETCHLOG, one row per URL).

The crawler (``stages.http``) is asyncio + aiohttp: ``concurrency`` workers share a queue
of URLs interleaved across hosts; a per-host connection limit and minimum delay; robots.txt
per host; manual redirects (at most ``max_redirects``, loops detected, every hop
re-checked); a cap on the *decoded* body (so a gzip bomb is cut off); retries with
exponential backoff and jitter for 429/5xx/connection errors, honouring Retry-After.
Only HTML/XHTML is archived; the detected charset is recorded for extract.

The stored response is the decoded body: Content-Encoding and Transfer-Encoding are
removed from the archived headers and Content-Length is set to the stored length.

Drop reasons: bad_scheme, private_address, robots_disallowed, robots_unavailable,
crawl_delay_too_long, http_3xx/4xx/5xx, timeout, connection_error, too_many_redirects,
redirect_loop, too_large, not_html.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import time
from collections import defaultdict
from urllib.parse import urlsplit

import aiohttp
import pyarrow as pa
import pyarrow.parquet as pq
from warcio.statusandheaders import StatusAndHeaders
from warcio.warcwriter import WARCWriter

from pipeline.config import FetchConfig, to_dict
from pipeline.executor import Context, Task, finish_stage, run_phase
from pipeline.io import atomic_path, require_shards, shard_id, write_parquet
from pipeline.schemas import FETCHLOG
from pipeline.stats import Stats

from .http import Client, Outcome, SafeResolver

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


class _WarcSink:
    """Writes request/response/metadata records; remembers each response's offset."""

    def __init__(self, f, user_agent: str):
        self.f = f
        self.writer = WARCWriter(f, gzip=True, warc_version="WARC/1.1")
        self.user_agent = user_agent

    def write(self, row: dict, o: Outcome) -> int:
        w = self.writer
        parts = urlsplit(o.final_url)
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        req_headers = StatusAndHeaders(
            f"GET {path} HTTP/1.1", [("Host", parts.netloc), ("User-Agent", self.user_agent)],
            is_http_request=True,
        )
        req = w.create_warc_record(o.final_url, "request", payload=io.BytesIO(b""), length=0,
                                   http_headers=req_headers)
        resp_headers = StatusAndHeaders(f"{o.status} {o.reason}".strip(), o.headers, protocol="HTTP/1.1")
        resp = w.create_warc_record(o.final_url, "response", payload=io.BytesIO(o.body),
                                    length=len(o.body), http_headers=resp_headers)
        rid = resp.rec_headers.get_header("WARC-Record-ID")
        req.rec_headers.add_header("WARC-Concurrent-To", rid)
        meta = {k: row[k] for k in ("url_id", "url", "score", "num_submissions", "first_seen", "subreddits", "title")}
        meta["charset"] = o.charset
        meta_rec = w.create_warc_record(
            o.final_url, "metadata", payload=io.BytesIO(json.dumps(meta).encode()),
            warc_content_type="application/json", warc_headers_dict={"WARC-Concurrent-To": rid},
        )
        w.write_record(req)
        offset = self.f.tell()
        w.write_record(resp)
        w.write_record(meta_rec)
        return offset


async def _crawl(rows: list[dict], cfg: FetchConfig, sink: _WarcSink, warc_name: str, stats: Stats) -> dict:
    log: dict[str, list] = {f.name: [] for f in FETCHLOG}
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, sock_connect=cfg.connect_timeout_s,
                                    sock_read=cfg.read_timeout_s)
    connector = aiohttp.TCPConnector(
        limit=cfg.concurrency, limit_per_host=cfg.per_host, ttl_dns_cache=300,
        resolver=None if cfg.allow_private else SafeResolver(),
    )
    headers = {"User-Agent": cfg.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"}
    queue: asyncio.Queue = asyncio.Queue()
    for r in rows:
        queue.put_nowait(r)

    def record(row: dict, o: Outcome, ms: int) -> None:
        offset = None
        if o.error is None:
            offset = sink.write(row, o)
            stats.records_out += 1
            stats.add_info("bytes", len(o.body))
        else:
            stats.drop(o.error)
        for k, v in (("url_id", row["url_id"]), ("url", row["url"]), ("final_url", o.final_url),
                     ("status", o.status), ("error", o.error), ("bytes", len(o.body)),
                     ("content_type", o.content_type), ("charset", o.charset), ("elapsed_ms", ms),
                     ("tries", o.tries), ("warc_file", warc_name if offset is not None else None),
                     ("warc_offset", offset)):
            log[k].append(v)

    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers,
                                     trust_env=not cfg.proxy) as session:
        client = Client(session, cfg)

        async def worker():
            while not queue.empty():
                row = queue.get_nowait()
                t0 = time.monotonic()
                o = await client.get(row["url"])
                record(row, o, int((time.monotonic() - t0) * 1000))

        await asyncio.gather(*(worker() for _ in range(max(1, min(cfg.concurrency, len(rows))))))
    stats.add_info("robots_fetched", len(client.robots_log))
    return log


def fetch_shard(task: Task) -> Stats:
    (src,) = task.inputs
    warc_path, log_path = task.outputs
    cfg = FetchConfig(**task.options["fetch"])
    rows = interleave_by_host(pq.read_table(src).to_pylist())
    stats = Stats(records_in=len(rows))
    with atomic_path(warc_path) as tmp:
        with open(tmp, "wb") as f:
            log = asyncio.run(_crawl(rows, cfg, _WarcSink(f, cfg.user_agent), warc_path.name, stats))
    order = sorted(range(len(log["url_id"])), key=log["url_id"].__getitem__)
    table = pa.table({k: [v[i] for i in order] for k, v in log.items()}, schema=FETCHLOG)
    write_parquet(table, log_path, FETCHLOG)
    return stats


def run(ctx: Context) -> dict:
    cfg: FetchConfig = ctx.cfg.fetch
    started = time.time()
    inputs = require_shards(ctx.dir("urls"), "urls-*.parquet", "URL shards", "harvest")
    if not cfg.proxy and (env := os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy")):
        cfg.proxy = env
    out = ctx.dir("warc")
    tasks = []
    for src in inputs:
        shard = shard_id(src)
        tasks.append(Task("fetch", shard, fetch_shard, [src],
                          [out / f"warc-{shard}.warc.gz", out / f"fetchlog-{shard}.parquet"],
                          options={"fetch": to_dict(cfg)}))
    res = run_phase(ctx, out, "fetch", tasks)
    return finish_stage(ctx, "fetch", out, res.stats, to_dict(cfg), res.ran, res.skipped, started)

"""fetch: ``urls/`` -> ``warc/`` (WARC/1.1 .warc.gz plus a Parquet fetch log per shard).

One task per urls shard writes ``warc/warc-NNNNN.warc.gz`` (request, response and
metadata record per archived page, one gzip member per record) and
``warc/fetchlog-NNNNN.parquet`` (schema FETCHLOG, one row per URL).

The crawler is asyncio + aiohttp: a global concurrency limit and a per-host connection
limit, URLs interleaved across hosts, manual redirects (at most ``max_redirects``, loops
detected, each hop re-checked), a body-size cap applied to the *decoded* body (so a
gzip bomb is cut off), retries with exponential backoff for 429/5xx/connection errors,
honouring Retry-After. Only HTML/XHTML is archived.

Safety: only http(s); hosts that resolve to private, loopback, link-local, multicast or
reserved addresses are refused (checked by the resolver, so after every redirect too)
unless ``allow_private``. Behind a forward proxy (``proxy`` or HTTP_PROXY) the proxy
resolves names; IP-literal targets are still checked here.

The stored response is the decoded body: Content-Encoding and Transfer-Encoding are
removed from the archived headers and Content-Length is set to the stored length.

Drop reasons: bad_scheme, private_address, http_3xx/4xx/5xx, timeout,
connection_error, too_many_redirects, redirect_loop, too_large, not_html.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import os
import random
import socket
import time
from collections import defaultdict
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

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

HTML_TYPES = ("text/html", "application/xhtml+xml")
RETRY_STATUS = {429, 500, 502, 503, 504}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
DROP_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}


class PrivateAddressError(OSError):
    """The target resolves to an address we must not fetch."""


def is_public_ip(ip: str) -> bool:
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    return addr.is_global and not (addr.is_multicast or addr.is_reserved)


class SafeResolver(aiohttp.ThreadedResolver):
    """Resolves like aiohttp, but refuses hosts with any non-public address."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        infos = await super().resolve(host, port, family)
        bad = [i["host"] for i in infos if not is_public_ip(i["host"])]
        if bad:
            raise PrivateAddressError(f"{host} resolves to non-public address {bad[0]}")
        return infos


@dataclass(slots=True)
class Outcome:
    final_url: str | None = None
    status: int | None = None
    error: str | None = None       # drop reason; None means archived
    body: bytes = b""
    headers: list[tuple[str, str]] | None = None
    reason: str = ""
    content_type: str | None = None
    tries: int = 0


def _check_target(url: str, allow_private: bool) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "bad_scheme"
    if allow_private:
        return None
    host = parts.hostname
    if host == "localhost" or host.endswith(".localhost"):
        return "private_address"
    try:
        if not is_public_ip(host):
            return "private_address"
    except ValueError:
        pass  # a name, checked by SafeResolver when we resolve it
    return None


def _looks_binary(body: bytes) -> bool:
    head = body[:1024]
    return b"\x00" in head or head.startswith((b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04"))


def _retry_after(value: str | None, default: float) -> float:
    try:
        return min(float(value), 60.0) if value else default
    except ValueError:
        return default


async def _get(session: aiohttp.ClientSession, url: str, cfg: FetchConfig, proxy: str | None) -> Outcome:
    """Fetch one URL, following redirects by hand so every hop is checked."""
    seen = {url}
    out = Outcome()
    for _hop in range(cfg.max_redirects + 1):
        if reason := _check_target(url, cfg.allow_private):
            out.error = reason
            return out
        for attempt in range(cfg.retries + 1):
            out.tries += 1
            delay = None
            try:
                async with session.get(url, allow_redirects=False, proxy=proxy) as resp:
                    out.final_url, out.status, out.reason = url, resp.status, resp.reason or ""
                    if resp.status in REDIRECT_STATUS and "Location" in resp.headers:
                        out.error = "redirect"
                    elif resp.status in RETRY_STATUS and attempt < cfg.retries:
                        delay = _retry_after(resp.headers.get("Retry-After"), cfg.backoff_s * 2**attempt)
                    elif not 200 <= resp.status < 300:
                        out.error = f"http_{resp.status // 100}xx"
                        return out
                    else:
                        out.error = await _read_body(resp, cfg, out)
                        return out
                    if out.error == "redirect":
                        location = urljoin(url, resp.headers["Location"])
                        break
            except PrivateAddressError:
                out.error = "private_address"
                return out
            except aiohttp.ClientConnectorError as e:
                if isinstance(e.os_error, PrivateAddressError):
                    out.error = "private_address"
                    return out
                out.error = "connection_error"
            except asyncio.TimeoutError:   # before ClientError: ServerTimeoutError is both
                out.error = "timeout"
            except (aiohttp.ClientError, ConnectionError) as e:
                out.error = "connection_error"
                out.reason = f"{type(e).__name__}: {e}"[:200]
            if out.error in ("timeout", "connection_error") and attempt < cfg.retries:
                delay = cfg.backoff_s * 2**attempt
            if delay is None:
                return out
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            out.error = None
        else:
            return out
        out.error = None
        if location in seen:
            out.error = "redirect_loop"
            return out
        seen.add(location)
        url = location
    out.error = "too_many_redirects"
    return out


async def _read_body(resp: aiohttp.ClientResponse, cfg: FetchConfig, out: Outcome) -> str | None:
    ctype = resp.headers.get("Content-Type", "")
    out.content_type = ctype or None
    mime = ctype.split(";", 1)[0].strip().lower()
    if mime and mime not in HTML_TYPES:
        return "not_html"
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):   # decoded bytes: bombs are capped too
        buf += chunk
        if len(buf) > cfg.max_bytes:
            resp.close()
            return "too_large"
    body = bytes(buf)
    if _looks_binary(body):
        return "not_html"
    out.body = body
    out.headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in DROP_HEADERS]
    out.headers.append(("Content-Length", str(len(body))))
    return None


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
    proxy = cfg.proxy or None
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, sock_connect=cfg.connect_timeout_s)
    connector = aiohttp.TCPConnector(
        limit=cfg.concurrency, limit_per_host=cfg.per_host, ttl_dns_cache=300,
        resolver=None if cfg.allow_private else SafeResolver(),
    )
    sem = asyncio.Semaphore(cfg.concurrency)
    headers = {"User-Agent": cfg.user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.1"}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=headers,
                                     trust_env=not proxy) as session:
        async def one(row: dict):
            async with sem:
                t0 = time.monotonic()
                o = await _get(session, row["url"], cfg, proxy)
                return row, o, int((time.monotonic() - t0) * 1000)

        for fut in asyncio.as_completed([one(r) for r in rows]):
            row, o, ms = await fut
            offset = None
            if o.error is None:
                offset = sink.write(row, o)
                stats.records_out += 1
                stats.add_info("bytes", len(o.body))
            else:
                stats.drop(o.error)
            for k, v in (("url_id", row["url_id"]), ("url", row["url"]), ("final_url", o.final_url),
                         ("status", o.status), ("error", o.error), ("bytes", len(o.body)),
                         ("content_type", o.content_type), ("elapsed_ms", ms), ("tries", o.tries),
                         ("warc_file", warc_name if offset is not None else None), ("warc_offset", offset)):
                log[k].append(v)
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

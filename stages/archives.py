"""Dead-link recovery, first layer: an asyncio client for Common Crawl and the Wayback
Machine. In: a URL and when it was submitted (``first_seen``, unix seconds). Out: the
archived capture nearest that time (``lookup``) and its original HTTP response
(``fetch``). ``stages.captures`` holds the records, the parsers and the choice of capture.

Usage (inside fetch's asyncio loop, on its aiohttp session)::

    archives = ArchiveClient(session, proxy=cfg.proxy or None)
    capture = await archives.lookup(url, first_seen)          # None: in no archive
    if capture:
        page = await archives.fetch(capture)                  # page.error None: usable

- **Common Crawl.** ``{cc_index}/collinfo.json`` is read once per client (the crawls and
  their time spans). The crawls are asked in ``order_crawls`` order, at most
  ``max_crawls`` of them, each with ``{cc_index}/{crawl}-index?url=U&output=json``; a 404
  there is that crawl's miss; the first crawl with a suitable capture ends the search.
  ``fetch`` asks ``{cc_data}/{filename}`` for ``Range: bytes=offset-(offset+length-1)``,
  inflates the one gzip member (at most ``max_bytes`` + 64 KiB of WARC and HTTP headers)
  and parses its WARC response record with FastWARC.
- **Wayback Machine.** ``{wayback}/cdx/search/cdx`` with ``filter=statuscode:200`` and
  ``from``/``to``: the first captures after the submission, then (``limit=-N``) the last
  ones before it. ``fetch`` asks ``{wayback}/web/{timestamp}id_/{url}``, the capture
  without rewriting; the original headers come back as ``X-Archive-Orig-*`` (the
  Content-Type as itself). Redirects are followed only to ``/web/`` on the same endpoint.
- **Safety.** Archive answers are stranger content: bodies are read up to ``max_bytes``
  (decoded bytes, so compression bombs are capped), the gzip member and any
  Content-Encoding of the record are inflated with an output cap. Only the configured
  endpoints are contacted: a capture's ``filename`` must be a plain relative path
  (``captures.safe_filename``), crawl ids are checked, the Wayback address is built from
  the endpoint, and ``collinfo.json``'s ``cdx-api`` addresses are ignored. The endpoints
  themselves pass ``stages.http.check_target`` (``allow_private`` for loopback tests).
  Charset detection stays with fetch (``stages.http.detect_charset`` on ``page.body``).
- **Politeness.** Per archive host (``host:port``): ``connections_per_host`` requests in
  flight, ``delay_s`` between them (``stages.politeness.HostGate``); a 429 or 503 holds
  the whole host for its Retry-After (both forms, capped at ``max_retry_after_s``) or
  else the backoff; 429, 5xx, timeouts and connection errors are retried ``retries``
  times with jittered exponential backoff.
- **Misses and errors.** A miss is ``None`` from ``lookup``. When an archive could not be
  asked (retries spent, an unexpected status), and no other source had the page,
  ``lookup`` and ``fetch`` raise ``ArchiveUnavailable`` so that fetch can count
  ``archive_error`` apart from ``archive_miss``. A record that is unusable (too large,
  not parseable, refused address) is ``ArchivedPage.error``.

Why not cdx-toolkit: it is synchronous (requests), sleeps a fixed 3 s before every
request, retries 429/5xx without reading Retry-After and without a host-wide hold, reads
bodies whole (``resp.text``) and decodes records with warcio's uncapped content stream,
and trusts the ``cdx-api`` addresses of collinfo.json. Fetch needs one aiohttp session
with its proxy, its politeness and a cap on every byte, so this is a small async client.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import Counter
from urllib.parse import urljoin, urlsplit

import aiohttp
from yarl import URL

from .captures import (
    SOURCES,
    ArchivedPage,
    Capture,
    Crawl,
    choose_capture,
    decode_payload,
    inflate_member,
    order_crawls,
    parse_cc_cdx,
    parse_collinfo,
    parse_warc_response,
    parse_wayback_cdx,
    safe_filename,
    safe_original,
    wayback_windows,
)
from .http import DROP_HEADERS, check_target
from .politeness import HostGate, KeyedLimit, retry_after_s

CC_INDEX = "https://index.commoncrawl.org"
CC_DATA = "https://data.commoncrawl.org"
WAYBACK = "https://web.archive.org"
RETRY_STATUS = {429, 500, 502, 503, 504}
HOLD_STATUS = {429, 503}             # the archive asks us to slow down: hold the whole host
INDEX_MAX_BYTES = 4 * 1024 * 1024    # one URL's captures in one crawl or window
RECORD_HEADERS_MAX = 64 * 1024       # WARC + HTTP headers beside a max_bytes payload
ORIG = "x-archive-orig-"


class ArchiveUnavailable(Exception):
    """An archive could not be asked: ``reason`` (``timeout``, ``connection_error``,
    ``http_429``, ``http_5xx``...) after the retries, for ``url``."""

    def __init__(self, reason: str, url: str):
        super().__init__(f"{reason}: {url}")
        self.reason, self.url = reason, url


class ArchiveClient:
    """Lookups and record fetches against Common Crawl and the Wayback Machine, sharing the
    crawler's aiohttp session. ``stats`` counts requests, retries and holds."""

    def __init__(self, session: aiohttp.ClientSession, *, cc_index: str = CC_INDEX, cc_data: str = CC_DATA,
                 wayback: str = WAYBACK, proxy: str | None = None, delay_s: float = 1.0,
                 connections_per_host: int = 1, retries: int = 3, backoff_s: float = 1.0,
                 max_retry_after_s: float = 120.0, max_bytes: int = 5 * 1024 * 1024,
                 timeout: aiohttp.ClientTimeout | None = None, max_crawls: int = 3, cdx_limit: int = 25,
                 max_drift_days: float = 365.0, allow_private: bool = False, user_agent: str | None = None):
        self.session, self.proxy = session, proxy or None
        self.cc_index, self.cc_data, self.wayback = (e.rstrip("/") for e in (cc_index, cc_data, wayback))
        for endpoint in (self.cc_index, self.cc_data, self.wayback):
            if (reason := check_target(endpoint, allow_private)) or urlsplit(endpoint).query:
                raise ValueError(f"archive endpoint {endpoint!r} is refused ({reason or 'has a query'})")
        self.delay_s, self.retries, self.backoff_s = delay_s, retries, backoff_s
        self.max_retry_after_s, self.max_bytes = max_retry_after_s, max_bytes
        self.timeout = timeout or aiohttp.ClientTimeout(total=60, connect=10, sock_read=30)
        self.max_crawls, self.cdx_limit, self.max_drift_days = max_crawls, cdx_limit, max_drift_days
        self.headers = {"User-Agent": user_agent} if user_agent else {}
        self.gate, self.limit = HostGate(), KeyedLimit(connections_per_host)
        self.stats: Counter = Counter()
        self._crawls: asyncio.Task | None = None

    # --- lookups ------------------------------------------------------------------------

    async def lookup(self, url: str, first_seen: float, sources: tuple[str, ...] = SOURCES,
                     max_drift_days: float | None = None) -> Capture | None:
        """The capture of ``url`` to recover, trying ``sources`` in order; None when none
        has one. Raises ``ArchiveUnavailable`` when a source failed and none had it."""
        drift = self.max_drift_days if max_drift_days is None else max_drift_days
        failed = None
        for source in sources:
            ask = {"commoncrawl": self.lookup_commoncrawl, "wayback": self.lookup_wayback}[source]
            try:
                if capture := await ask(url, first_seen, drift):
                    return capture
            except ArchiveUnavailable as e:
                self.stats[f"error_{source}"] += 1
                failed = failed or e
        if failed:
            raise failed
        return None

    async def crawls(self) -> list[Crawl]:
        """Common Crawl's crawls, asked once per client (again after a failure)."""
        if self._crawls is None or (self._crawls.done() and self._crawls.exception()):
            self._crawls = asyncio.ensure_future(self._collinfo())
        return await asyncio.shield(self._crawls)

    async def _collinfo(self) -> list[Crawl]:
        url = f"{self.cc_index}/collinfo.json"
        status, _, body = await self._get(url, limit=INDEX_MAX_BYTES)
        if status != 200 or body is None:
            raise ArchiveUnavailable(f"http_{status}" if body is not None else "too_large", url)
        return parse_collinfo(body)

    async def lookup_commoncrawl(self, url: str, first_seen: float, max_drift_days: float) -> Capture | None:
        for crawl in order_crawls(await self.crawls(), first_seen, max_drift_days)[: self.max_crawls]:
            index = f"{self.cc_index}/{crawl.id}-index"
            status, _, body = await self._get(index, params={"url": url, "output": "json"}, limit=INDEX_MAX_BYTES)
            if status == 404:                  # {"message": "No Captures found for: ..."}
                continue
            if status != 200 or body is None:
                raise ArchiveUnavailable(f"http_{status}" if body is not None else "too_large", index)
            if capture := choose_capture(parse_cc_cdx(body, crawl.id), first_seen, max_drift_days):
                return capture
        return None

    async def lookup_wayback(self, url: str, first_seen: float, max_drift_days: float) -> Capture | None:
        cdx = f"{self.wayback}/cdx/search/cdx"
        for params in wayback_windows(url, first_seen, max_drift_days, self.cdx_limit):
            status, _, body = await self._get(cdx, params=params, limit=INDEX_MAX_BYTES)
            if status == 404:
                continue
            if status != 200 or body is None:
                raise ArchiveUnavailable(f"http_{status}" if body is not None else "too_large", cdx)
            if capture := choose_capture(parse_wayback_cdx(body), first_seen, max_drift_days):
                return capture
        return None

    # --- records ------------------------------------------------------------------------

    def record_address(self, capture: Capture) -> tuple[str, str | None]:
        return capture.record_address(self.cc_data if capture.source == "commoncrawl" else self.wayback)

    async def fetch(self, capture: Capture) -> ArchivedPage:
        """The archived response of ``capture`` (``error`` None: usable)."""
        if capture.source == "commoncrawl":
            return await self._fetch_commoncrawl(capture)
        return await self._fetch_wayback(capture)

    async def _fetch_commoncrawl(self, capture: Capture) -> ArchivedPage:
        page = ArchivedPage(capture)
        if not safe_filename(capture.filename) or capture.byte_range() is None:
            page.error = "unsafe_filename"
            return page
        if capture.length > self.max_bytes + RECORD_HEADERS_MAX:
            page.error = "too_large"
            return page
        url, byte_range = self.record_address(capture)
        status, _, member = await self._get(url, headers={"Range": byte_range, "Accept-Encoding": "identity"},
                                            limit=capture.length, ok=(206,))
        if status != 206 or member is None or len(member) != capture.length:
            page.error = "bad_record"          # a 200 (Range ignored: never read whole) or a short read
            return page
        record, page.error = inflate_member(member, self.max_bytes + RECORD_HEADERS_MAX)
        if record is None:
            return page
        parsed = parse_warc_response(record)
        if parsed is None:
            page.error = "bad_record"
            return page
        page.status, page.reason, headers, payload, _uri = parsed
        page.body, page.error = decode_payload(headers, payload, self.max_bytes)
        self._finish(page, headers)
        return page

    async def _fetch_wayback(self, capture: Capture) -> ArchivedPage:
        page = ArchivedPage(capture)
        if not safe_original(capture):
            page.error = "unsafe_url"
            return page
        url, _ = self.record_address(capture)
        prefix = f"{self.wayback}/web/"
        for _hop in range(4):
            status, headers, body = await self._get(URL(url, encoded=True), limit=self.max_bytes)
            location = headers.get("Location") if headers else None
            if status in (301, 302, 307, 308) and location:
                url = urljoin(url, location)   # to another timestamp of the same URL
                if not url.startswith(prefix):
                    page.error = "bad_redirect"
                    return page
                continue
            break
        else:
            page.error = "too_many_redirects"
            return page
        if body is None:
            page.error = "too_large"
            return page
        if status != 200:                      # listed by the CDX server, not served (404, 403)
            page.error = f"archive_http_{status}"
            return page
        original = [(k[len(ORIG):], v) for k, v in headers.items() if k.lower().startswith(ORIG)]
        if "Content-Type" in headers:
            original = [(k, v) for k, v in original if k.lower() != "content-type"]
            original.append(("Content-Type", headers["Content-Type"]))
        page.status, page.reason = status, ""
        page.body = body
        self._finish(page, original)
        return page

    @staticmethod
    def _finish(page: ArchivedPage, headers: list[tuple[str, str]]) -> None:
        page.body = page.body or b""
        page.headers = [(k, v) for k, v in headers if k.lower() not in DROP_HEADERS]
        page.headers.append(("Content-Length", str(len(page.body))))
        page.content_type = next((v for k, v in headers if k.lower() == "content-type"), None)
        if page.error:
            page.body = b""

    # --- one polite request -------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _slot(self, host: str):
        async with contextlib.AsyncExitStack() as places:
            async with self.gate.turn(host, self.delay_s):
                await places.enter_async_context(self.limit.hold(host))
            yield

    async def _get(self, url, *, params: dict | None = None, headers: dict | None = None, limit: int,
                   ok: tuple[int, ...] = (200,)):
        """GET with retries: (status, response headers, body or None when over ``limit``).
        Raises ``ArchiveUnavailable`` when the retries are spent."""
        host = urlsplit(str(url)).netloc
        reason = "connection_error"
        for attempt in range(self.retries + 1):
            self.stats["requests"] += 1
            asked = None
            async with self._slot(host):
                try:
                    async with self.session.get(url, params=params, headers={**self.headers, **(headers or {})},
                                                proxy=self.proxy, allow_redirects=False,
                                                timeout=self.timeout) as resp:
                        if resp.status not in RETRY_STATUS:
                            body = await _read(resp, limit) if resp.status in ok or resp.status < 300 \
                                else b""
                            return resp.status, resp.headers, body
                        reason = f"http_{resp.status}"
                        asked = retry_after_s(resp.headers.get("Retry-After"))
                        if resp.status in HOLD_STATUS:
                            self.stats["held"] += 1
                            asked = self.backoff_s * 2**attempt if asked is None else asked
                except asyncio.TimeoutError:
                    reason = "timeout"
                except (aiohttp.ClientError, OSError):
                    reason = "connection_error"
            if asked is not None:
                self.gate.hold(host, min(asked, self.max_retry_after_s))
            if attempt == self.retries:
                break
            self.stats["retries"] += 1
            await asyncio.sleep(self.backoff_s * 2**attempt * random.uniform(0.5, 1.0))
        raise ArchiveUnavailable(reason, str(url))


async def _read(resp: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body (decoded of transfer compression by aiohttp), or None past ``limit`` bytes."""
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):
        buf += chunk
        if len(buf) > limit:
            resp.close()
            return None
    return bytes(buf)

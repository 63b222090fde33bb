"""The crawler's HTTP client: safety checks, politeness, robots.txt, redirects, retries,
body limits and charset detection. ``stages.fetch`` drives it and writes WARC.

- **Safety.** Only http(s). Every URL and every redirect hop goes through
  ``check_target`` before any connection: its host is parsed as a browser or a forward
  proxy parses it (``stages.hosts``, the WHATWG host parser), so ``2852039166``,
  ``0xa9.0xfe.0xa9.0xfe``, ``0251.0376.0251.0376`` and ``169.254.43518`` are all
  169.254.169.254. Non-public addresses (private, loopback, link-local, multicast,
  reserved, unspecified; IPv4-mapped IPv6 by its IPv4 address) and ``localhost`` names
  are ``private_address``; a host that is no valid host is ``bad_url``. Names resolving
  to non-public addresses are refused by ``SafeResolver``. Behind a forward proxy the
  proxy resolves names, so only the literal and localhost checks apply there.
- **Politeness** (``stages.politeness``). Requests to one host (``host:port``) are sent
  ``host_delay_s`` apart, or the host's robots.txt Crawl-delay when larger (up to
  ``max_crawl_delay_s``; beyond that the host is skipped as ``crawl_delay_too_long``).
  A 429 or 5xx with Retry-After (seconds or an HTTP-date, capped at
  ``max_retry_after_s``) holds the whole host that long; the retry waits at least that,
  and our own jittered backoff. In flight at once: ``per_host`` connections per host
  (the connector), ``per_domain`` requests per site (the ICANN registrable domain, so
  all of ``*.blogspot.com`` share one limit) and, without a proxy, ``per_ip`` per
  resolved address. robots.txt requests count too.
- **robots.txt** (RFC 9309) is fetched once per host and parsed with protego; only its
  first ``ROBOTS_MAX_BYTES`` (500 KiB, cut at the last line end) are read. A 4xx
  answer allows everything; 5xx, a timeout or a connection error defers the host's
  URLs (``robots_unavailable``); disallowed URLs are never requested
  (``robots_disallowed``).
- **Timing.** ``Outcome.elapsed_s`` is the time from sending to the end of the body,
  summed over tries and redirect hops: the servers' time, without politeness waits,
  robots.txt or retry sleeps.
- **Conditional GET.** A revisit (``--refetch-after``) sends the ETag and Last-Modified of
  the earlier fetch as If-None-Match and If-Modified-Since to the URL they came from; a
  304 answer is the outcome ``not_modified`` (nothing archived, the old document stays).
- **Charset**: the Content-Type header, else a ``<meta>`` declaration in the first
  4 KiB, else UTF-8 if the body decodes as UTF-8, else charset_normalizer's guess.
  Declared labels mean what they mean to a browser (the WHATWG Encoding Standard, via
  webencodings): ISO-8859-1 and ASCII are windows-1252, Shift_JIS is cp932. A label
  that is no web encoding (utf-7, unicode_escape, idna) is ignored: those codecs turn
  hostile bytes into lone surrogates or raise.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ipaddress
import random
import re
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import aiohttp
import webencodings
from protego import Protego
from yarl import URL

from webtext.pipeline.config import FetchConfig

from .hosts import host_verdict, is_public_address
from .politeness import HostGate, KeyedLimit, retry_after_s, site_of

HTML_TYPES = ("text/html", "application/xhtml+xml")
RETRY_STATUS = {429, 500, 502, 503, 504}
REDIRECT_STATUS = {301, 302, 303, 307, 308}
DROP_HEADERS = {"content-encoding", "transfer-encoding", "content-length"}
ROBOTS_MAX_BYTES = 500 * 1024      # RFC 9309 2.5: parse at least the first 500 KiB, ignore the rest
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.I)
_HEADER_CHARSET = re.compile(r"""charset\s*=\s*["']?([A-Za-z0-9_.:-]+)""", re.I)


class PrivateAddressError(OSError):
    """The target resolves to an address we must not fetch."""


def is_public_ip(ip: str) -> bool:
    """For a resolved address as text (an IPv6 zone, ``%eth0``, is ignored)."""
    return is_public_address(ipaddress.ip_address(ip.split("%", 1)[0]))


class SafeResolver(aiohttp.ThreadedResolver):
    """Resolves like aiohttp, but refuses hosts with any non-public address, except the
    ``trusted`` names: the forward proxy's own host, which the operator chose (often
    ``localhost`` or a name on the private network). Behind a proxy that is the only name
    resolved here; the proxy resolves the targets, and check_target judges them."""

    def __init__(self, trusted: tuple[str, ...] = ()):
        super().__init__()
        self.trusted = frozenset(h.lower().rstrip(".") for h in trusted if h)

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        infos = await super().resolve(host, port, family)
        if host.lower().rstrip(".") in self.trusted:
            return infos
        bad = [i["host"] for i in infos if not is_public_ip(i["host"])]
        if bad:
            raise PrivateAddressError(f"{host} resolves to non-public address {bad[0]}")
        return infos


def check_target(url: str, allow_private: bool) -> str | None:
    """A drop reason for a URL we must not request (``bad_scheme``, ``bad_url``,
    ``private_address``), or None. The host is judged both as written and as aiohttp
    sends it (yarl's IDNA form), each read by the WHATWG host parser. A name other than
    localhost passes: ``SafeResolver`` checks what it resolves to (without a proxy)."""
    try:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return "bad_scheme"
        sent = URL(url).raw_host or ""
    except ValueError:                     # unbalanced brackets, a backslash in the authority
        return "bad_url"
    hostinfo = parts.netloc.rpartition("@")[2]
    written = hostinfo[:hostinfo.find("]") + 1] if hostinfo.startswith("[") else hostinfo.partition(":")[0]
    verdicts = {host_verdict(written), host_verdict(f"[{sent}]" if ":" in sent else sent)}
    if "bad_url" in verdicts:
        return "bad_url"
    if allow_private:
        return None
    return "private_address" if "private_address" in verdicts else None


def header_charset(content_type: str | None) -> str | None:
    """The charset parameter of a Content-Type header, as written."""
    m = _HEADER_CHARSET.search(content_type or "")
    return m.group(1) if m else None


# Python text codecs that no web page is decoded with, and that are unsafe on hostile
# bytes: they produce lone surrogates (which fastText, lxml and Arrow reject) or raise
# even with errors="replace".
UNSAFE_CODECS = frozenset({"utf-7", "unicode-escape", "raw-unicode-escape", "idna", "punycode", "undefined"})


def web_codec(label: str | None) -> str | None:
    """The Python codec a browser decodes a page labelled ``label`` with (WHATWG Encoding
    Standard, through webencodings), or None for a label that is no web encoding or has
    no decoder (``replacement``, ``x-user-defined``)."""
    enc = webencodings.lookup(label) if label else None
    if enc is None or enc.name in ("replacement", "x-user-defined"):
        return None
    return enc.codec_info.name


def safe_codec(name: str | None) -> str | None:
    """``name`` as a Python codec's canonical name, or None when it names no text codec or
    an unsafe one (``UNSAFE_CODECS``). For names that are already decisions (what fetch
    recorded, what charset_normalizer guessed), not labels from the page."""
    try:
        info = codecs.lookup(name) if name else None
    except LookupError:
        return None
    if info is None or not getattr(info, "_is_text_encoding", True) or info.name in UNSAFE_CODECS:
        return None
    return info.name


def detect_charset(body: bytes, content_type: str | None) -> str:
    """The page's character set as a Python codec name: header, then meta tag, then sniffing."""
    for m in (_HEADER_CHARSET.search(content_type or ""), _META_CHARSET.search(body[:4096])):
        if m:
            name = m.group(1).decode("ascii", "replace") if isinstance(m.group(1), bytes) else m.group(1)
            codec = web_codec(name)
            if codec:
                return codec
    try:
        body.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError:
        from charset_normalizer import from_bytes

        best = from_bytes(body[:65536]).best()
        return (safe_codec(best.encoding) if best else None) or "utf-8"


def looks_binary(body: bytes) -> bool:
    head = body[:1024]
    return b"\x00" in head or head.startswith((b"%PDF", b"\x89PNG", b"GIF8", b"\xff\xd8\xff", b"PK\x03\x04"))


@dataclass(slots=True)
class Outcome:
    final_url: str | None = None
    status: int | None = None
    error: str | None = None       # drop reason; None means archived
    body: bytes = b""
    headers: list[tuple[str, str]] | None = None
    reason: str = ""
    content_type: str | None = None
    charset: str | None = None
    tries: int = 0
    etag: str | None = None        # validators of the archived response, for a later conditional GET
    last_modified: str | None = None
    elapsed_s: float = 0.0         # sending to end of body, summed over tries and hops (no waits)
    # Where an archived page came from (stages.recover): "live", or a web archive's capture
    source: str = "live"           # live | commoncrawl | wayback
    captured_at: int | None = None  # unix s of the capture (None for live: fetch's own time)
    collection: str | None = None  # the crawl id or "wayback"; None for live
    archive_record: str | None = None  # the archive's record address ("URL bytes=a-b"); None for live
    # AI opt-outs known at fetch time (stages.fetchoptout; None: not evaluated)
    ai_robots: list[str] | None = None  # AI agents robots.txt disallows for final_url
    tdmrep_reserved: bool | None = None  # the host's /.well-known/tdmrep.json rule for final_url
    tdmrep_policy: str | None = None


@dataclass(slots=True)
class Validators:
    """What an earlier fetch of a page returned to make the next one conditional (RFC 9110
    13.1): its ETag and Last-Modified, and the URL they belong to (after redirects)."""
    url: str
    etag: str | None = None
    last_modified: str | None = None

    def headers(self) -> dict[str, str] | None:
        h = {}
        if self.etag:
            h["If-None-Match"] = self.etag
        if self.last_modified:
            h["If-Modified-Since"] = self.last_modified
        return h or None


class Client:
    """One crawl's HTTP client: session, politeness (host gate, per-site and per-IP
    limits) and robots cache. ``resolver`` is the connector's: the per-IP limit asks it
    (once per host) which address a name connects to."""

    def __init__(self, session: aiohttp.ClientSession, cfg: FetchConfig, resolver=None):
        self.session, self.cfg = session, cfg
        self.proxy = cfg.proxy or None
        self.gate = HostGate()
        self.per_site, self.per_ip = KeyedLimit(cfg.per_domain), KeyedLimit(cfg.per_ip)
        self.resolver = None if self.proxy else resolver     # behind a proxy, the proxy resolves
        self.addresses: dict[str, asyncio.Task] = {}
        self.robots: dict[str, asyncio.Task] = {}
        self.robots_log: list[tuple[str, int | None, str | None]] = []   # (host, status, error)

    async def _robots_for(self, origin: str):
        """Protego rules for an origin, or a drop reason string when unavailable."""
        o = await self._request_following(f"{origin}/robots.txt", robots=True)
        self.robots_log.append((origin, o.status, o.error))
        if o.error is None:
            return Protego.parse(o.body.decode(o.charset or "utf-8", errors="replace"))
        if o.status is not None and 400 <= o.status < 500:
            return None                        # no robots.txt: everything is allowed
        if o.error in ("private_address", "bad_scheme"):
            return o.error
        return "robots_unavailable"            # 5xx, timeout, connection error: defer the host

    async def allowed(self, url: str) -> str | None:
        """None if robots.txt lets us fetch ``url``, else a drop reason."""
        if not self.cfg.obey_robots:
            return None
        p = urlsplit(url)
        origin = f"{p.scheme}://{p.netloc}"
        if origin not in self.robots:
            self.robots[origin] = asyncio.ensure_future(self._robots_for(origin))
        rules = await self.robots[origin]
        if isinstance(rules, str):
            return rules
        if rules is None:
            return None
        if not rules.can_fetch(url, self.cfg.user_agent):
            return "robots_disallowed"
        delay = rules.crawl_delay(self.cfg.user_agent)
        if delay:
            if delay > self.cfg.max_crawl_delay_s:
                return "crawl_delay_too_long"
            self.gate.set_delay(p.netloc, max(float(delay), self.cfg.host_delay_s))
        return None

    def robots_rules(self, url: str) -> tuple[bool, Protego | None]:
        """The robots.txt this crawl already fetched for ``url``'s origin, without a request:
        (True, rules) with rules None when the host has none (4xx); (False, None) when there
        is nothing to go by (robots ignored, not fetched yet, or unavailable)."""
        p = urlsplit(url)
        task = self.robots.get(f"{p.scheme}://{p.netloc}")
        if task is None or not task.done() or task.cancelled() or task.exception() is not None:
            return False, None
        rules = task.result()
        return (False, None) if isinstance(rules, str) else (True, rules)

    async def get_file(self, url: str) -> Outcome:
        """A site file such as ``/.well-known/tdmrep.json``, as a page is fetched (safety
        checks, robots.txt, politeness, timeouts, redirects, retries), but of any type and
        cut at ``ROBOTS_MAX_BYTES``."""
        if reason := check_target(url, self.cfg.allow_private):
            return Outcome(error=reason)
        if reason := await self.allowed(url):
            return Outcome(error=reason)
        return await self._request_following(url, robots=True)

    async def get(self, url: str, validators: Validators | None = None) -> Outcome:
        """Fetch a page: robots.txt first, then the URL with redirects (each hop re-checked).
        With ``validators`` from an earlier fetch, the request for their URL is conditional
        (If-None-Match, If-Modified-Since) and a 304 answer is the outcome ``not_modified``."""
        if reason := check_target(url, self.cfg.allow_private):
            return Outcome(error=reason)
        if reason := await self.allowed(url):
            return Outcome(error=reason)
        return await self._request_following(url, validators=validators)

    async def _request_following(self, url: str, robots: bool = False,
                                 validators: Validators | None = None) -> Outcome:
        seen, out = {url}, Outcome()
        for _hop in range(self.cfg.max_redirects + 1):
            if reason := check_target(url, self.cfg.allow_private):
                out.error = reason
                return out
            if not robots and out.tries and (reason := await self.allowed(url)):
                out.error = reason             # a redirect into a disallowed path
                return out
            conditional = validators.headers() if validators and validators.url == url else None
            location = await self._request(url, out, robots, conditional)
            if location is None:
                return out
            if location in seen:
                out.error = "redirect_loop"
                return out
            seen.add(location)
            url = location
        out.error = "too_many_redirects"
        return out

    async def _address(self, hostname: str, port: int) -> str | None:
        """The address the connector connects ``hostname`` to (the resolver's first), asked
        once per host; None behind a proxy or when the name does not resolve (the request
        then fails on its own)."""
        if self.resolver is None:
            return None
        if hostname not in self.addresses:
            self.addresses[hostname] = asyncio.ensure_future(self.resolver.resolve(hostname, port, socket.AF_UNSPEC))
        try:
            return (await self.addresses[hostname])[0]["host"]
        except (OSError, IndexError, aiohttp.ClientError):
            return None

    @contextlib.asynccontextmanager
    async def _slot(self, url: str):
        """Politeness around one request: the host's turn (spacing, Retry-After holds), in
        which a place under the site's and the address's limits is taken; the places are
        held until the body is read. Always host, then site, then address: no deadlock."""
        p = urlsplit(url)
        async with contextlib.AsyncExitStack() as places:
            async with self.gate.turn(p.netloc, self.cfg.host_delay_s):
                address = await self._address(p.hostname, p.port or (443 if p.scheme == "https" else 80))
                await places.enter_async_context(self.per_site.hold(site_of(p.hostname)))
                await places.enter_async_context(self.per_ip.hold(address))
            yield

    async def _request(self, url: str, out: Outcome, robots: bool,
                       conditional: dict[str, str] | None = None) -> str | None:
        """One URL with retries; returns a redirect target, or None when ``out`` is final.
        Before a retry: the server's Retry-After holds the whole host (capped), and this URL
        also sleeps our own backoff, jittered (so the wait is at least what was asked)."""
        cfg = self.cfg
        for attempt in range(cfg.retries + 1):
            out.tries += 1
            async with self._slot(url):
                sent = time.monotonic()
                try:
                    location, retry, asked = await self._send(url, out, robots, conditional)
                finally:
                    out.elapsed_s += time.monotonic() - sent
            if asked:
                self.gate.hold(urlsplit(url).netloc, min(asked, cfg.max_retry_after_s))
            if not retry or attempt == cfg.retries:
                return location
            await asyncio.sleep(cfg.backoff_s * 2**attempt * random.uniform(0.5, 1.0))
        return None

    async def _send(self, url: str, out: Outcome, robots: bool,
                    conditional: dict[str, str] | None) -> tuple[str | None, bool, float | None]:
        """One request: (redirect target, whether it may be retried, the server's Retry-After
        in seconds). Sets ``out``'s status and error (None: archived)."""
        out.error = None
        try:
            async with self.session.get(url, allow_redirects=False, proxy=self.proxy,
                                        headers=conditional) as resp:
                out.final_url, out.status, out.reason = url, resp.status, resp.reason or ""
                if resp.status == 304 and conditional:
                    out.error = "not_modified"
                elif resp.status in REDIRECT_STATUS and "Location" in resp.headers:
                    return urljoin(url, resp.headers["Location"]), False, None
                elif not 200 <= resp.status < 300:
                    out.error = f"http_{resp.status // 100}xx"
                    if resp.status in RETRY_STATUS:
                        return None, True, retry_after_s(resp.headers.get("Retry-After"))
                else:
                    out.error = await _read_body(resp, self.cfg, out, robots)
                return None, False, None
        except PrivateAddressError:
            out.error = "private_address"
            return None, False, None
        except aiohttp.ClientConnectorError as e:
            if isinstance(e.os_error, PrivateAddressError):
                out.error = "private_address"
                return None, False, None
            out.error = "connection_error"
        except asyncio.TimeoutError:       # before ClientError: ServerTimeoutError is both
            out.error = "timeout"
        except (aiohttp.ClientError, ConnectionError) as e:
            out.error = "connection_error"
            out.reason = f"{type(e).__name__}: {e}"[:200]
        return None, True, None


async def _read_body(resp: aiohttp.ClientResponse, cfg: FetchConfig, out: Outcome, robots: bool) -> str | None:
    """Read an archivable body into ``out``, or return a drop reason. robots.txt may have
    any type, and past ``ROBOTS_MAX_BYTES`` its body is cut at the last line end."""
    ctype = resp.headers.get("Content-Type", "")
    out.content_type = ctype or None
    mime = ctype.split(";", 1)[0].strip().lower()
    if not robots and mime and mime not in HTML_TYPES:
        return "not_html"
    limit = ROBOTS_MAX_BYTES if robots else cfg.max_bytes
    buf = bytearray()
    async for chunk in resp.content.iter_chunked(1 << 16):   # decoded bytes: bombs are capped too
        buf += chunk
        if len(buf) > limit:
            resp.close()
            if not robots:
                return "too_large"
            del buf[buf.rfind(b"\n", 0, limit) + 1:]
            break
    body = bytes(buf)
    if not robots and looks_binary(body):
        return "not_html"
    out.body = body
    out.charset = detect_charset(body, ctype)
    out.headers = [(k, v) for k, v in resp.headers.items() if k.lower() not in DROP_HEADERS]
    out.headers.append(("Content-Length", str(len(body))))
    out.etag, out.last_modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
    return None

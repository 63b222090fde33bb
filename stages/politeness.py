"""The crawler's politeness (``stages.http`` wraps every request in it): when a host may
be asked again, and how many requests may be in flight to one site or one address.

- ``HostGate`` spaces the requests to one host (``host:port``): each is sent no sooner
  than the host's delay after the previous one was sent, nor before a server's
  Retry-After has passed (``hold``).
- ``KeyedLimit`` caps the requests in flight per key. The crawler keys one by site
  (``site_of``) and one by resolved IP address, beside the connector's limit per host.
- ``retry_after_s`` reads a Retry-After header in both of its forms (RFC 9110 10.2.3).

No I/O happens here; times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import re
import time
from datetime import timezone
from email.utils import parsedate_to_datetime

import tld

_DELAY_SECONDS = re.compile(r"\d+(\.\d+)?")     # RFC 9110 allows integers; a decimal costs nothing to honour


@functools.lru_cache(maxsize=1 << 16)
def site_of(hostname: str) -> str:
    """The registrable domain of ``hostname`` under the ICANN section of the public suffix
    list: ``foo.blogspot.com`` -> ``blogspot.com``, so that thousands of blogs on the same
    servers share one limit. (``stages.urls.registered_domain`` also searches the private
    section, where blogspot.com is a suffix, and keeps ``foo.blogspot.com``.) The host
    itself when it has no known suffix: an IP address, ``localhost``, ``*.example``."""
    return tld.get_fld(hostname, fix_protocol=True, search_private=False, fail_silently=True) or hostname


def retry_after_s(value: str | None, now: float | None = None) -> float | None:
    """The seconds a Retry-After header asks us to wait: delay-seconds, or an HTTP-date
    (``now``: the wall clock, ``time.time()``; a date in the past asks for 0). None when
    there is no header or it is unreadable."""
    value = (value or "").strip()
    if _DELAY_SECONDS.fullmatch(value):
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:             # "-0000": HTTP-dates are in GMT anyway
        when = when.replace(tzinfo=timezone.utc)
    wait = when.timestamp() - (time.time() if now is None else now)
    return max(0.0, wait) if math.isfinite(wait) else None


class HostGate:
    """Per-host spacing of requests, keyed by ``host:port``."""

    def __init__(self):
        self.next_at: dict[str, float] = {}     # nothing is sent to the host before this
        self.last_at: dict[str, float] = {}     # when the last request to the host was sent
        self.delay: dict[str, float] = {}       # the host's own delay (robots.txt Crawl-delay)
        self.locks: dict[str, asyncio.Lock] = {}

    def set_delay(self, host: str, delay: float) -> None:
        """A host's own delay (robots.txt Crawl-delay); it also spaces the request just made."""
        if self.delay.get(host) != delay:
            self.delay[host] = delay
            if host in self.last_at:
                self.next_at[host] = max(self.next_at.get(host, 0.0), self.last_at[host] + delay)

    def hold(self, host: str, seconds: float) -> None:
        """Send nothing to ``host`` for ``seconds`` from now (a server's Retry-After)."""
        self.next_at[host] = max(self.next_at.get(host, 0.0), time.monotonic() + seconds)

    @contextlib.asynccontextmanager
    async def turn(self, host: str, default_delay: float):
        """Wait for the host's turn and keep it while the body runs (the caller takes its
        other limits there, so the spacing counts from when requests are really sent).
        The request is sent when the body ends; the next turn comes a delay after that."""
        async with self.locks.setdefault(host, asyncio.Lock()):
            while (at := self.next_at.get(host, 0.0)) > (now := time.monotonic()):
                await asyncio.sleep(at - now)   # a hold may move next_at while we sleep: look again
            yield
            self.last_at[host] = now = time.monotonic()
            self.next_at[host] = max(self.next_at.get(host, 0.0), now + self.delay.get(host, default_delay))


class KeyedLimit:
    """At most ``n`` holders per key at once. A key's semaphore exists only while someone
    holds or waits for it, so memory follows the requests in flight, not the sites seen."""

    def __init__(self, n: int):
        self.n = n
        self.entries: dict[str, list] = {}      # key -> [semaphore, holders and waiters]

    @contextlib.asynccontextmanager
    async def hold(self, key: str | None):
        if key is None:                         # nothing to limit by (an unresolved name)
            yield
            return
        entry = self.entries.setdefault(key, [asyncio.Semaphore(self.n), 0])
        entry[1] += 1
        try:
            async with entry[0]:
                yield
        finally:
            entry[1] -= 1
            if not entry[1]:
                del self.entries[key]

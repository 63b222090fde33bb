"""Dead-link recovery inside fetch (issue #22): which live outcomes are dead, and turning an
archived capture (``stages.archives``) into an ``Outcome`` that fetch archives as its own.

- **Dead** (``dead_reason``): ``http_4xx`` for 404/410, ``http_5xx`` (after the
  retries), ``connection_error`` (an unresolvable name too), ``timeout``, and live pages
  that answered 2xx but are no page: a soft 404 (``stages.deadpages.is_soft_404`` on the
  requested and final URL: drop reason ``soft_404``) or a parked domain
  (``parking_signal`` on the body: ``parked_domain``). Those two are never archived as
  the live page. Never dead: ``robots_disallowed``, ``private_address``, ``bad_url``,
  ``bad_scheme``, ``not_html``, ``too_large`` and every other reason (never looked up).
- **Fallback** (``archive = "fallback"``): a dead live outcome is looked up; **prefer**:
  rows whose ``first_seen`` is older than ``archive_prefer_older_than_days`` are looked up
  first, and fetched live only when no usable capture exists.
- **Lookup** (``Recovery.recover``): the sources in ``archive_sources`` order, for the
  URL as submitted (``fetch_url``, else ``url``) near ``first_seen``. With a columnar plan
  (``archive_commoncrawl_columnar``) Common Crawl's captures come from the plan alone
  (no CDX request). A capture is *usable* when its record is fetched without error, its
  status is 2xx, its type is HTML/XHTML (or absent) and its body is not binary, within
  ``max_bytes``; an unusable one lets the next source try. Outcome: ``recovered``,
  ``miss`` (no source had a capture) or ``error`` (an archive could not be asked, or
  its only capture was unusable).
"""

from __future__ import annotations

import aiohttp
import pyarrow as pa

from webtext.pipeline.config import FetchConfig

from .archives import ArchiveClient, ArchiveUnavailable
from .captures import Capture
from .columnar import plan_from_columnar, to_captures
from .deadpages import DROP_PARKED, DROP_SOFT_404, is_soft_404, parking_signal
from .http import HTML_TYPES, Outcome, detect_charset, looks_binary

DEAD_ERRORS = {"http_5xx", "connection_error", "timeout"}
DAY = 86400


def dead_reason(requested: str, o: Outcome) -> str | None:
    """The drop reason that makes ``o`` (the live outcome for ``requested``) dead, or None.
    A soft 404 or parked page gets its reason set on ``o`` (and its body dropped)."""
    if o.error is None:
        if is_soft_404(requested, o.final_url or requested, o.status):
            reason = DROP_SOFT_404
        elif parking_signal(o.body, o.final_url or requested, o.headers):
            reason = DROP_PARKED
        else:
            return None
        o.error, o.body, o.headers, o.charset, o.etag, o.last_modified = reason, b"", None, None, None, None
        return reason
    if o.error in DEAD_ERRORS or (o.error == "http_4xx" and o.status in (404, 410)):
        return o.error
    return None


def plan_columnar(table: pa.Table, cfg: FetchConfig) -> tuple[dict[str, Capture], dict[str, int]]:
    """Common Crawl captures of a shard's URLs from the columnar index, in one pass."""
    plan = plan_from_columnar(table, cfg.archive_commoncrawl_columnar, cfg.archive_max_drift_days)
    return to_captures(plan.table), plan.counts


class Recovery:
    """One shard crawl's archive lookups, on fetch's aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, cfg: FetchConfig,
                 planned: dict[str, Capture] | None = None, now: float = 0.0):
        self.cfg = cfg
        self.sources = tuple(cfg.archive_sources)
        self.planned = planned          # url_id -> Common Crawl capture (columnar), or None: ask CDX
        self.prefer_before = now - cfg.archive_prefer_older_than_days * DAY
        self.client = ArchiveClient(
            session, cc_index=cfg.archive_commoncrawl_index, cc_data=cfg.archive_commoncrawl_data,
            wayback=cfg.archive_wayback, proxy=cfg.proxy or None, delay_s=cfg.archive_delay_s,
            connections_per_host=cfg.archive_connections, retries=cfg.archive_retries,
            max_retry_after_s=cfg.max_retry_after_s, max_bytes=cfg.max_bytes,
            max_drift_days=cfg.archive_max_drift_days, allow_private=cfg.allow_private,
            user_agent=cfg.user_agent)

    def prefer(self, row: dict) -> bool:
        """Whether ``row`` goes to the archives before the live web (prefer mode, old)."""
        first = row.get("first_seen")
        return self.cfg.archive == "prefer" and first is not None and first < self.prefer_before

    async def _capture(self, source: str, row: dict, target: str) -> Capture | None:
        if source == "commoncrawl" and self.planned is not None:
            return self.planned.get(row["url_id"])
        return await self.client.lookup(target, row["first_seen"], (source,), self.cfg.archive_max_drift_days)

    async def recover(self, row: dict, target: str) -> tuple[Outcome | None, str]:
        """(an archivable Outcome for ``target``, "recovered") or (None, "miss" | "error")."""
        failed = False
        for source in self.sources:
            try:
                capture = await self._capture(source, row, target)
                if capture is None:
                    continue
                page = await self.client.fetch(capture)
            except ArchiveUnavailable:
                failed = True
                continue
            if o := self._outcome(target, page):
                return o, "recovered"
            failed = True               # listed but unusable: the next source may have it
        return None, "error" if failed else "miss"

    def _outcome(self, target: str, page) -> Outcome | None:
        """The archived page as fetch's Outcome under the original URL, or None if unusable."""
        if page.error or page.status is None:
            return None
        cap = page.capture
        url, byte_range = self.client.record_address(cap)
        return archived_outcome(target, page.status, page.reason, list(page.headers), page.body,
                                page.content_type, self.cfg.max_bytes, source=cap.source,
                                captured_at=int(cap.captured_at), collection=cap.collection,
                                archive_record=f"{url} {byte_range}" if byte_range else url)


def archived_outcome(target: str, status: int, reason: str, headers: list[tuple[str, str]], body: bytes,
                     content_type: str | None, max_bytes: int, **provenance) -> Outcome | None:
    """A page from an archive (a web archive's capture, or a user's WARC record) as fetch's
    Outcome under ``target``, the URL as submitted; None when the live pages' rules refuse
    it: a 2xx status, an HTML type (or none), not binary, within ``max_bytes``.
    ``provenance``: the Outcome's source, captured_at, collection and archive_record."""
    if not 200 <= status < 300:
        return None
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if (mime and mime not in HTML_TYPES) or looks_binary(body) or len(body) > max_bytes:
        return None
    return Outcome(final_url=target, status=status, body=body, headers=headers,
                   reason=reason or ("OK" if status == 200 else ""), content_type=content_type,
                   charset=detect_charset(body, content_type), **provenance)

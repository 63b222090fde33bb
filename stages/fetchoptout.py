"""AI opt-outs known at fetch time, per archived live page (``stages.optout`` decides;
this module only gathers what it needs during the crawl).

- robots.txt verdicts for the AI crawlers (``optout.AI_AGENTS``), from the robots.txt the
  politeness layer already fetched for the page's origin: no extra request. None when
  robots.txt is ignored (``obey_robots = false``) or was unavailable.
- ``/.well-known/tdmrep.json`` (TDMRep), requested once per origin (``fetch.tdmrep``,
  default true) after the origin's first archived page, through the same client as pages:
  the safety checks (private addresses), robots.txt, the host gate and per-site limits,
  timeouts and retries. Any answer other than a 2xx (404 above all) means no file: the
  host reserves nothing there. A file that is no JSON array is counted
  (``tdmrep_invalid``) and read as no file. The parsed file is kept for the crawl;
  hosts stay in one fetch task (``frontier.split_by_site``), so each is asked once.

Pages recovered from web archives or imported from WARC files get none of these (null):
no live answer of their host was asked for.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from urllib.parse import urlsplit

from .http import Client, Outcome
from .optout import parse_tdmrep, robots_verdicts, tdmrep_lookup, url_path

TDMREP_PATH = "/.well-known/tdmrep.json"


class FetchOptouts:
    """One crawl's opt-out lookups; ``counts`` (tdmrep_requests, tdmrep_files,
    tdmrep_invalid, tdmrep_unavailable) go into the fetch stats."""

    def __init__(self, client: Client, tdmrep: bool):
        self.client, self.tdmrep = client, tdmrep
        self.files: dict[str, asyncio.Task] = {}     # origin -> parsed tdmrep.json, or None
        self.counts: Counter = Counter()

    async def annotate(self, o: Outcome) -> None:
        """Set ``o.ai_robots`` and ``o.tdmrep_*`` for an archived live page."""
        if o.error is not None or o.source != "live" or not o.final_url:
            return
        known, rules = self.client.robots_rules(o.final_url)
        o.ai_robots = robots_verdicts(rules, o.final_url) if known else None
        if self.tdmrep:
            p = urlsplit(o.final_url)
            origin = f"{p.scheme}://{p.netloc}"
            if origin not in self.files:
                self.files[origin] = asyncio.ensure_future(self._file(origin))
            doc = await self.files[origin]
            if doc is not None:
                o.tdmrep_reserved, o.tdmrep_policy = tdmrep_lookup(doc, url_path(o.final_url))

    async def _file(self, origin: str):
        """The origin's parsed tdmrep.json, or None (no file, unreachable or invalid)."""
        got = await self.client.get_file(origin + TDMREP_PATH)
        self.counts["tdmrep_requests"] += got.tries > 0
        if got.error is not None:
            if got.status is None or got.status >= 500:
                self.counts["tdmrep_unavailable"] += 1
            return None
        doc = parse_tdmrep(got.body)
        self.counts["tdmrep_invalid" if doc is None else "tdmrep_files"] += 1
        return doc

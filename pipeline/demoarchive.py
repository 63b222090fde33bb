"""The demo web's dead links that the web archives still hold (issue #22).

In: the demo web being built (its pages, links and ``planted`` lists), prose paragraphs
and its seeded ``random.Random``. Out: an ``ArchiveWeb`` (``listen=False``) holding the
captures, which ``DemoProxy`` serves under the archives' real host names, and these
``planted`` lists (every URL live-dead, each submitted once, in January):

- ``recovered_cc``: a 404 and a 410 whose article Common Crawl captured in December
  2025; the first is in the Wayback Machine too, which is never asked for it (Common
  Crawl comes first in ``archive_sources``).
- ``recovered_wayback``: a 404 and a 503 captured only by the Wayback Machine.
- ``parked``: a lapsed domain whose live answer is a for-sale parking page (200,
  ``stages.deadpages.parking_signal``: ``parked_title``); Common Crawl has the article.
- ``soft_404``: a deep URL that redirects to its site's home page; the Wayback Machine
  has the article.
- ``archive_miss``: a 404 whose only capture (Wayback, 2023) lies beyond the default
  ``archive_max_drift_days`` (365) from its submission. The older plants ``dead`` and
  ``error`` have no capture at all: misses too.

Captured pages are articles like the live ones: prose paragraphs (``is_prose``) of the
docstrings of ``ARCHIVE_MODULES`` that no live page carries, at least ``MIN_WORDS``
words each, so extract keeps them and they reach the corpus.
"""

from __future__ import annotations

import random
import re
from datetime import datetime, timezone

from .archiveweb import ArchiveWeb

# Three crawls before the demo's submissions (January 2026), with spans like the real ones'.
DEMO_CRAWLS = [
    ("CC-MAIN-2025-51", "2025-12-05T00:00:00", "2025-12-18T23:59:59"),
    ("CC-MAIN-2025-47", "2025-11-07T00:00:00", "2025-11-19T23:59:59"),
    ("CC-MAIN-2025-43", "2025-10-03T00:00:00", "2025-10-16T23:59:59"),
]
PARKED_HOST = "lapsedtech.example"
MIN_WORDS = 120               # extract's min_words is 100
N_PAGES = 7                   # captured articles (the archive_miss one included)
# Modules the live pages do not quote (demoweb._MODULES); about 1,300 words of prose.
ARCHIVE_MODULES = (
    "logging.handlers logging.config email.headerregistry email.policy email.feedparser email.header "
    "email.charset xml.dom.minidom xml.dom.pulldom xml.sax.handler xml.sax.saxutils unittest.mock "
    "concurrent.futures.process concurrent.futures.thread multiprocessing.pool multiprocessing.managers "
    "multiprocessing.connection json.decoder wsgiref.handlers email.parser email.generator importlib.metadata "
    "asyncio.base_events asyncio.streams asyncio.events asyncio.locks asyncio.queues http.cookiejar"
).split()


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()


def parking_page(host: str) -> bytes:
    """A registrar's for-sale lander: thin, the domain "is for sale" in its title."""
    return (f"<!DOCTYPE html><html><head><title>{host} is for sale</title></head><body>"
            f"<h1>{host}</h1><p>This domain may be for sale. Inquire about this domain.</p>"
            f"<p>Related searches: Python Tutorials | Web Hosting | Online Courses</p></body></html>").encode()


def is_prose(paragraph: str) -> bool:
    """Plain sentences: no ASCII art, date lists, code or shouting, words nine in ten
    (extract's quality and language filters drop the rest)."""
    words = paragraph.split()
    return not re.search(r"--|[|\\*_`#@<>]|\d{2}:\d{2}|XXX|WARNING|\(\)", paragraph) and \
        sum(w.strip(".,;:()\"'").isalpha() for w in words) >= 0.9 * len(words)


def take_articles(paragraphs: list[str], n: int, exclude: set[str]) -> list[list[str]]:
    """``n`` articles of consecutive prose paragraphs not in ``exclude``, each at least
    ``MIN_WORDS`` words; raises when they run out (another Python's docstrings)."""
    pool = iter(p for p in paragraphs if p not in exclude and is_prose(p))
    out = []
    for _ in range(n):
        ps: list[str] = []
        while sum(len(p.split()) for p in ps) < MIN_WORDS:
            if (p := next(pool, None)) is None:
                raise ValueError("too few docstring paragraphs for the demo's archived pages")
            ps.append(p)
        out.append(ps)
    return out


def plant_archived(pages: dict, links: list, planted: dict, texts: list[list[str]], rng: random.Random,
                   hosts: list[str], html, title, page_type) -> ArchiveWeb:
    """Add the dead links and their captures; the archives. ``texts``: ``N_PAGES``
    articles' paragraphs (``take_articles``). ``html(host, title, paragraphs)``,
    ``title(paragraph)`` and ``page_type(status, body, headers=)`` are the demo web's page
    makers."""
    archive = ArchiveWeb(DEMO_CRAWLS, listen=False)
    texts = iter(texts)
    cc_time = _unix("2025-12-09T14:03:11")          # during CC-MAIN-2025-51
    wb_time = _unix("2025-12-20T08:41:52")

    def dead(kind: str, host: str, live, captures: list[tuple[str, float]]) -> None:
        ps = next(texts)
        slug = re.sub(r"[^a-z0-9]+", "-", title(ps[0]).lower()).strip("-")
        url = f"http://{host}/2025/12/{slug}"
        pages[url] = live
        for source, when in captures:
            archive.add_capture(url, html(host, title(ps[0]), ps), when_unix=when, source=source)
        links.append((url, rng.randint(3, 40)))
        planted[kind].append(url)

    for k in KINDS:
        planted[k] = []
    gone = b"<html><body>Not found</body></html>"
    dead("recovered_cc", hosts[1], page_type(404, gone), [("commoncrawl", cc_time), ("wayback", wb_time)])
    dead("recovered_cc", hosts[2], page_type(410, b"<html><body>Gone</body></html>"), [("commoncrawl", cc_time)])
    dead("recovered_wayback", hosts[3], page_type(404, gone), [("wayback", wb_time)])
    dead("recovered_wayback", hosts[4], page_type(503, b"<html><body>Service unavailable</body></html>"),
         [("wayback", wb_time)])
    dead("parked", PARKED_HOST, page_type(200, parking_page(PARKED_HOST)), [("commoncrawl", cc_time)])
    home = f"http://{hosts[5]}/"
    pages[home] = page_type(200, html(hosts[5], "Home", ["Latest stories, tutorials and releases."]))
    dead("soft_404", hosts[5], page_type(301, b"", headers={"Location": home}), [("wayback", wb_time)])
    dead("archive_miss", hosts[6], page_type(404, gone), [("wayback", _unix("2023-06-14T10:00:00"))])
    return archive


KINDS = ("recovered_cc", "recovered_wayback", "parked", "soft_404", "archive_miss")

"""Main text and metadata of one page: the work of the extraction process.

``extract_page(html, url, extractor, dates, fallback_share, fallback_gain)`` -> an
``Extraction`` (text, title, which extractor, publication date, agreement). It runs in
the extraction process (``stages.isolate``), so this module imports only what that needs
(trafilatura, htmldate, newspaper3k when it falls back), not pyarrow or the pipeline:
the forkserver preloads it. ``stages.extract`` reads the WARCs, decodes, prefilters,
normalizes, filters and writes the documents around it.
"""

from __future__ import annotations

import html as htmllib
import re
from collections import Counter
from typing import NamedTuple

import trafilatura
from trafilatura.utils import load_html


_TITLE = re.compile(r"<title[^>]*>(.*?)</title>|<meta[^>]+property=[\"']og:title[\"'][^>]+content=[\"']([^\"']*)",
                    re.I | re.S)


def page_title(html: str | bytes) -> str | None:
    """The <title> (or og:title) of a page: cheap, unlike trafilatura's metadata pass."""
    head = html[:65536].decode("utf-8", "replace") if isinstance(html, bytes) else html[:65536]
    m = _TITLE.search(head)
    if not m:
        return None
    title = " ".join(htmllib.unescape(m.group(1) or m.group(2) or "").split())
    return title or None


def fast_element_lookup() -> None:
    """Make the parser that trafilatura's load_html uses build element proxies with lxml's
    C-level default class lookup (every element an ``HtmlElement``) instead of lxml.html's
    Python callback, which picks form and input classes by tag and ran about 850,000
    times on 348 pages. trafilatura, and htmldate on the same tree, use none of those
    classes: the same text and dates on all 1,032 evaluation pages, with trafilatura 7%
    faster. It changes a parser shared by the whole process, so only the extraction process
    calls it (``stages.isolate``); newspaper3k parses with its own parser."""
    from lxml import etree
    from lxml import html as lxml_html
    from trafilatura import utils

    utils.HTML_PARSER.set_element_class_lookup(etree.ElementDefaultClassLookup(
        element=lxml_html.HtmlElement, comment=lxml_html.HtmlComment, pi=lxml_html.HtmlProcessingInstruction,
        entity=lxml_html.HtmlEntity))


def _trafilatura(html: str | bytes, url: str, tree=None) -> tuple[str | None, str | None]:
    # with_metadata=False: the metadata pass (dates above all) halves the speed, measured
    # on trafilatura's evaluation set (26 vs 48 docs/s); the title comes from page_title.
    # ``tree``: the page already parsed by load_html; trafilatura works on a copy of it and
    # gives the same text as from the markup (checked on 258 evaluation pages).
    text = trafilatura.extract(html if tree is None else tree, url=url, fast=True, include_comments=False)
    return (text or None), (page_title(html) if text else None)


def _newspaper(html: str | bytes, url: str) -> tuple[str | None, str | None]:
    """newspaper3k's text and title: the steps of ``Article.parse`` that make them (parse,
    title, document cleaning, best node, post-cleanup, formatting), without the ones whose
    results we drop (authors, meta tags, publishing date, videos, images, and a deep copy
    of the whole document for them). The same text and title as ``Article.parse`` on 148
    evaluation pages, in 66 instead of 97 ms per page. newspaper3k 0.2.8 is the last
    release, so these steps do not move."""
    from newspaper import Article   # needs lxml_html_clean beside lxml >= 5.2
    from newspaper.cleaners import DocumentCleaner
    from newspaper.outputformatters import OutputFormatter

    if isinstance(html, bytes):
        html = html.decode("utf-8", errors="replace")
    a = Article(url, language="en", fetch_images=False)
    doc = a.config.get_parser().fromstring(html)
    if doc is None:
        return None, None
    title = a.extractor.get_title(doc) or None
    top = a.extractor.calculate_best_node(DocumentCleaner(a.config).clean(doc))
    if top is None:
        return None, title
    text, _ = OutputFormatter(a.config).get_formatted(a.extractor.post_cleanup(top))
    return (text or None), title


class Extraction(NamedTuple):
    text: str | None
    title: str | None
    extractor: str                  # which extractor produced ``text``
    published: str | None = None    # publication date, YYYY-MM-DD (htmldate)
    agreement: float | None = None  # token F1 of trafilatura vs newspaper3k (extractor "both")


def token_agreement(a: str | None, b: str | None) -> float:
    """Bag-of-words F1 between two extractions: 1.0 for the same words, 0.0 for none shared."""
    ca, cb = Counter((a or "").split()), Counter((b or "").split())
    common = sum((ca & cb).values())
    if not common:
        return 0.0
    p, r = common / sum(cb.values()), common / sum(ca.values())
    return 2 * p * r / (p + r)


def publication_date(html) -> str | None:
    """The page's original publication date (htmldate's fast search: markup and URL-free
    heuristics, no extensive text scan), or None. ``html``: markup, or the page parsed by
    load_html (htmldate leaves it as it is and finds the same dates)."""
    from htmldate import find_date

    try:
        return find_date(html, extensive_search=False, original_date=True, outputformat="%Y-%m-%d")
    except (ValueError, TypeError):
        return None


# Tag names are ASCII case-insensitive; matched in place, because lowering the page to
# search it can change its length ("İ" lowers to two characters), and so the offsets.
_HIDDEN_START = re.compile(r"<(script|style|noscript|template)\b", re.I | re.A)
_HIDDEN_STOP = {t: re.compile(rf"</{t}", re.I | re.A) for t in ("script", "style", "noscript", "template")}
_TAG = re.compile(r"<[^>]*>")


def visible_chars(html: str | bytes) -> int:
    """Non-space characters of the page's visible text: tags, scripts and styles removed.

    Linear in the page size (no backtracking regex), so hostile markup cannot stall it.
    """
    if isinstance(html, bytes):
        html = html.decode("utf-8", errors="replace")
    parts, pos = [], 0
    while m := _HIDDEN_START.search(html, pos):
        parts.append(html[pos:m.start()])
        end = _HIDDEN_STOP[m.group(1).lower()].search(html, m.end())
        pos = len(html) if end is None else end.start()
    parts.append(html[pos:])
    return _chars(_TAG.sub(" ", " ".join(parts)))


def _chars(text: str | None) -> int:
    """Non-space characters."""
    return len("".join(text.split())) if text else 0


def extract_page(html: str | bytes, url: str, extractor: str = "auto", dates: bool = False,
                 fallback_share: float = 0.1, fallback_gain: float = 4.0) -> Extraction:
    """Main text and metadata of one page.

    The markup is parsed once (trafilatura's load_html) for htmldate and trafilatura.

    ``auto``: trafilatura, with newspaper3k taking over when trafilatura finds nothing, or
    when trafilatura's text is implausibly short (under ``fallback_share`` of the page's
    visible text) and newspaper3k's is more than ``fallback_gain`` times longer. Both
    conditions matter: newspaper3k's recall is only 0.60 on trafilatura's evaluation set,
    and falling back on every short text lowered F1 there from 0.918 to 0.903
    (``benchmarks/extract_quality.py``). ``trafilatura`` or ``newspaper3k``: that one
    alone. ``both``: runs the two on every page, keeps ``auto``'s choice, and records
    their ``agreement``.
    """
    tree = load_html(html) if (extractor != "newspaper3k" or dates) else None
    published = publication_date(html if tree is None else tree) if dates else None
    if extractor == "newspaper3k":
        return Extraction(*_newspaper(html, url), "newspaper3k", published)
    text, title = _trafilatura(html, url, tree)
    if extractor == "trafilatura":
        return Extraction(text, title, "trafilatura", published)
    # The page's visible text is at most its length: a text that is not short against the
    # length is not short against the visible text, which then need not be counted.
    n = _chars(text)
    short = not text or (n < fallback_share * len(html) and n < fallback_share * visible_chars(html))
    if extractor == "auto" and not short:
        return Extraction(text, title, "trafilatura", published)
    np_text, np_title = _newspaper(html, url)
    agreement = token_agreement(text, np_text) if extractor == "both" and (text or np_text) else None
    if np_text and (not text or (short and _chars(np_text) > fallback_gain * _chars(text))):
        return Extraction(np_text, np_title, "newspaper3k", published, agreement)
    return Extraction(text, title if text else None, "trafilatura", published, agreement)

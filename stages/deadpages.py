"""Dead pages that answer 200: soft 404s and parked domains (issue #22).

A live fetch can end in a page that is no page: the link's article is gone and the site
sends every old URL to its home page, or the domain lapsed and a parking service or a
domain marketplace now answers for it. In ``fallback`` mode fetch treats both like a 404
and looks the URL up in web archives. Two pure functions decide; no I/O, no parsing
beyond a few precompiled regular expressions.

``is_soft_404(requested_url, final_url, status) -> bool``
    True when a fetch that answered 2xx (or whose status is unknown, ``None``) ended,
    after redirects, where a missing page ends:

    - a **deep** request (a path other than a root form, or a query with a parameter that
      is not a tracker) that ended at the **root of the same site**. Root forms: ``/``,
      ``/index.html``, ``/index.php``, ``/default.aspx``, ``/home``, ``/main`` (any
      extension), each also under a locale prefix (``/en/``, ``/de-de/index.html``); with
      no query but trackers (``utm_*``, ``fbclid`` ...) and no client route in the fragment
      (``#/story``, ``#!story``). Same site: the host less a ``www.`` prefix is equal, or
      both hosts have the same ICANN registrable domain (``news.example.co.uk`` and
      ``www.example.co.uk``); the scheme and port do not matter (http <-> https).
    - any request redirected to a **not-found landing path** on any host: ``/404``,
      ``/404.html``, ``/not-found``, ``/notfound``, ``/page-not-found``, ``/error``,
      ``/errors/404``, ``/error404.aspx`` (optionally under a locale prefix), or a query
      ``error=404`` / ``status=404`` / ``code=404`` or ASP.NET's ``aspxerrorpath=``.

    Not soft 404s: a root requested as a root (``http://example.com/`` ->
    ``https://www.example.com/``); a deep URL redirected to another deep page (an article
    moved, ``/2019/a`` -> ``/news/a``, or up to its section ``/news/``); a deep URL
    redirected to the root of *another* site (a link shortener to a home page, or a
    rebrand: the link may have meant that home page); any other final status (a 404 or
    5xx is already dead by its status). Rule from w-shadow.com, "Detecting parked
    domains" (2009): wildcard sites answer every missing page with their front page.

``parking_signal(body, final_url, headers=None) -> str | None``
    The name of the first signature that says the page is a parked or for-sale domain
    (drop reason ``parked_domain``), or None. Checked in this order:

    1. **final URL** on a parking or marketplace lander (after redirects):
       ``sedo.com/search/details``, ``sedoparking.com``, ``dan.com/buy-domain``,
       ``afternic.com/forsale``, ``hugedomains.com/domain_profile.cfm``,
       ``forsale.godaddy.com`` or ``godaddy.com/forsale``, ``uniregistry.com/buy``,
       ``epik.com/domain-for-sale``, ``bodis.com``, ``parkingcrew.net``,
       ``park.above.com``, ``parkingpage.namecheap.com``: the service's name. A parking
       lander host ``ww1.`` .. ``ww99.<domain>`` or the path ``/lander``:
       ``lander_redirect``.
    2. **header** ``X-Adblock-Key`` (Adblock Plus's sitekey, which parking networks
       send to have their ads accepted): ``adblock_sitekey``.
    3. **code** that only parking templates carry, on a page of any size:
       GoDaddy's ``img1.wsimg.com/parking-lander`` and ``window.LANDER_SYSTEM``
       (``godaddy``); Sedo's ``sedoParkingUrl`` and ``FOOTER_DOMAIN_PARKING``
       (``sedo``); a resource *loaded* from, a frame of, or a redirect (JavaScript
       ``location``, ``<meta refresh>``) to a parking host (``src=``, ``url=``,
       ``location.href=``, ``location.replace(``: the service's name; links, ``<a
       href>``, do not count: an article may link sedo.com); the stub
       ``location.href="/lander"`` (``lander_redirect``); Google's AdSense for Domains
       script ``/adsense/domains/caf.js`` (``adsense_for_domains``); ``<html
       data-adblockkey=...>`` (``adblock_sitekey``).
    4. **phrases**, only on a *thin* page (at most ``THIN_CHARS`` characters of visible
       text: parking pages show a few lines; an article that discusses domain sales has
       paragraphs): template sentences of one service ("parked free, courtesy of
       GoDaddy" -> ``godaddy``, "Why purchase this domain with Epik" -> ``epik``,
       "millions of other domains available on DAN.COM" -> ``dan``, "this domain has
       been parked at your registrar" -> ``sedo``), the sponsored-listings disclaimer of
       the parking feeds (``parking_disclaimer``), then generic for-sale and parked
       wording in the ``<title>`` (``parked_title``: "example.com is for sale", "buy this
       domain", "domain parked") or the text (``parked_text``: "this domain may be for
       sale", "inquire about this domain", "diese Domain steht zum Verkauf").

    Only the first ``SCAN_BYTES`` (64 KiB) of the body are read and lowercased once.
    Every rule hangs on a literal anchor (``park``, ``lander``, ``domain``,
    ``data-adblockkey``, ``//host``) that ``bytes.find``/one ``findall`` locate at C
    speed; the rule's regexes run only at the anchor's first ``_MAX_ANCHORS``
    occurrences, with bounded quantifiers and no nested ones (``<[^<>]*>`` cannot run
    past the next ``<``), so a hostile body costs what a 64 KiB page costs.
    ``benchmarks/deadpages_eval.py`` measured 0 of 1,032 real pages of
    ``../shared/data/extraction/trafilatura-eval`` flagged, about 0.23 ms of CPU per
    page (57 KiB scanned on average), under 2 ms for 10 MB hostile bodies.

Signatures were grounded in public detectors and markup (learned from, not copied):
intrigue-ident's parked-service checks (``checks/http/sedo.rb``, ``parkingcrew.rb``,
``godaddy.rb``, the Epik and DAN.com checks); a registrar's holding page that frames
``sedoparking.com/search/registrar.php`` (technogav/git-testing1,
``wwwroot/compuhire.ie/index_original.php``); crawler notes and checks on GoDaddy's
lander (``window.location.href="/lander"``, ``window.LANDER_SYSTEM``,
``img1.wsimg.com/parking-lander``, AdSense for Domains); Adblock Plus's sitekey
handling (``data-adblockkey``, ``X-Adblock-Key``); the parking-service lists of
carrie0307/parking-domain-detection and "Domain Parking: Largely Present, Rarely
Considered!" (TMA 2022, parkingtma.github.io); w-shadow.com's "Detecting parked
domains" (redirects to a lander on another domain, and front-page answers for every
path).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from courlan.clean import TRACKERS_RE

from .politeness import site_of

DROP_SOFT_404 = "soft_404"
DROP_PARKED = "parked_domain"
SCAN_BYTES = 64 * 1024      # parking pages are small; their markers sit in the first KiB
THIN_CHARS = 3000           # visible characters (whitespace removed) of a "thin" page

# --- soft 404 -------------------------------------------------------------------------

_LOCALE = r"(?:/[a-z]{2}(?:[-_][a-z]{2})?)?"
_ROOT_PATH = re.compile(rf"{_LOCALE}(?:/(?:index|default|home|main)(?:\.[a-z]{{2,6}})?)?/?")
_NOT_FOUND_PATH = re.compile(
    rf"{_LOCALE}/(?:404|410|error|errors|error-?404|404-?error|not-?found|page-?not-?found"
    r"|errors?/(?:404|not-?found)|http-?404)(?:\.[a-z]{2,6})?/?")
_NOT_FOUND_QUERY = re.compile(
    r"(?:^|&)(?:(?:error|err|status|code|errorcode|error_code)=(?:404|410|not-?found)|aspxerrorpath=)(?:&|$)")


def _parts(url: str):
    """(host less "www.", path lowercased with "//" collapsed, query, fragment), or None."""
    try:
        p = urlsplit(url.strip())
        host = (p.hostname or "").rstrip(".")
    except ValueError:
        return None
    if p.scheme.lower() not in ("http", "https") or not host:
        return None
    path = re.sub(r"/{2,}", "/", p.path.lower()) or "/"
    return host.removeprefix("www."), path, p.query, p.fragment


def _real_query(query: str) -> bool:
    """Whether a query has a parameter that is not a tracker (utm_*, fbclid, gclid ...)."""
    keys = [kv.partition("=")[0].lower() for kv in query.split("&") if kv]
    return any(not TRACKERS_RE.search(k) for k in keys)


def _same_site(a: str, b: str) -> bool:
    return a == b or site_of(a) == site_of(b)


def is_soft_404(requested_url: str, final_url: str, status: int | None) -> bool:
    """Whether a fetch of ``requested_url`` that ended at ``final_url`` with ``status``
    (None: not known) is a missing page answered with a redirect (rules in the module
    docstring). Never raises."""
    if status is not None and not 200 <= status < 300:
        return False
    req, fin = _parts(requested_url), _parts(final_url)
    if req is None or fin is None or req == fin:
        return False
    fhost, fpath, fquery, ffrag = fin
    if _NOT_FOUND_PATH.fullmatch(fpath) or _NOT_FOUND_QUERY.search(fquery.lower()):
        return True
    rhost, rpath, rquery, _ = req
    deep = not _ROOT_PATH.fullmatch(rpath) or _real_query(rquery)
    at_root = (_ROOT_PATH.fullmatch(fpath) is not None and not _real_query(fquery)
               and not ffrag.startswith(("/", "!")))
    return deep and at_root and _same_site(rhost, fhost)


# --- parked domains -------------------------------------------------------------------

# Final URLs that are landers (host suffix, path prefix): on these the answer is the sale.
_LANDER_URLS = (
    ("sedo.com", "/search/details", "sedo"), ("sedoparking.com", "/", "sedo"),
    ("dan.com", "/buy-domain", "dan"), ("afternic.com", "/forsale", "afternic"),
    ("hugedomains.com", "/domain_profile.cfm", "hugedomains"),
    ("forsale.godaddy.com", "/", "godaddy"), ("godaddy.com", "/forsale", "godaddy"),
    ("uniregistry.com", "/buy", "uniregistry"), ("epik.com", "/domain-for-sale", "epik"),
    ("bodis.com", "/", "bodis"), ("parkingcrew.net", "/", "parkingcrew"),
    ("park.above.com", "/", "above"), ("parkingpage.namecheap.com", "/", "namecheap"),
)
_WW_LANDER_HOST = re.compile(r"ww\d{1,2}\.")

# Everything below runs on the lowercased prefix. Python's re tries every alternative of
# a pattern at every offset (about 70 ns a byte for a dozen), but finds a pattern's leading
# literal at bytes.find speed. So every rule hangs on a literal anchor: the anchor is
# found first, and the rule's regexes run only at its occurrences (anchored ``match``
# after it, ``endswith`` or a short search before it).
# Hosts of parking services and marketplaces -> the signal's name. Only hosts that serve
# nothing but landers: never godaddy.com or wsimg.com (GoDaddy's site builder loads from
# there) nor namecheap.com.
_PARKING_HOSTS = {
    "sedoparking.com": "sedo", "sedo.com": "sedo", "bodis.com": "bodis",
    "parkingcrew.net": "parkingcrew", "above.com": "above", "dan.com": "dan",
    "afternic.com": "afternic", "hugedomains.com": "hugedomains",
    "parkingpage.namecheap.com": "namecheap", "uniregistry.com": "uniregistry",
    "epik.com": "epik", "parklogic.com": "parklogic",
}
_HOST_SUFFIXES = tuple(h.encode() for h in _PARKING_HOSTS)
_URL_HOST = re.compile(rb"//([a-z0-9.-]{1,253})")
# Another host counts when the page loads from it or goes there: src=, url= (meta
# refresh), JavaScript location; never <a href> (an article may cite sedo.com).
_LOAD_CONTEXT = re.compile(
    rb"(?:(?:\bsrc|\burl|location(?:\.href)?)\s{0,5}=\s{0,5}[\"']?|location\.(?:replace|assign)\(\s{0,5}[\"'])"
    rb"\s{0,5}(?:https?:)?$")
_CONTEXT_BYTES = 48


@dataclass(frozen=True, slots=True)
class _Rule:
    """At an occurrence of ``anchor`` at offset i: ``after`` must match at i, and the
    bytes before i must end with one of ``before`` (a tuple) or in a match of ``before``
    (a regex ending in ``$``, searched in the 200 bytes before i). ``thin``: counts only
    on a thin page (a sentence, which an article could quote)."""
    anchor: bytes
    after: re.Pattern
    name: str
    before: tuple[bytes, ...] | re.Pattern = (b"",)
    thin: bool = False


def _r(anchor: bytes, after: bytes, name: str, before=(b"",), thin: bool = False) -> _Rule:
    return _Rule(anchor, re.compile(after), name, before, thin)


_FOR_SALE_BEFORE = (b"buy this ", b"purchase this ", b"inquire about this ", b"make an offer on this ")
_RULES = (
    _r(b"park", rb"parkingurl", "sedo", (b"sedo",)),                 # sedoParkingUrl
    _r(b"park", rb"parking\b", "sedo", (b"footer_domain_",)),         # FOOTER_DOMAIN_PARKING
    _r(b"park", rb"parking-lander/", "godaddy", (b"wsimg.com/",)),    # img1.wsimg.com/parking-lander/
    _r(b"lander", rb"lander_system\b", "godaddy", (b"window.",)),     # window.LANDER_SYSTEM
    _r(b"lander", rb"lander[\"']", "lander_redirect", re.compile(rb"location(?:\.href)?\s{0,5}=\s{0,5}[\"']/$")),
    _r(b"domain", rb"domains/caf\.js", "adsense_for_domains", (b"/adsense/",)),
    _r(b"data-adblockkey", rb"data-adblockkey\s{0,5}=", "adblock_sitekey", re.compile(rb"<html\b[^<>]{0,190}$")),
    _r(b"park", rb"parked (?:for )?free,? courtesy of", "godaddy", thin=True),
    _r(b"park", rb"parked at your registrar", "sedo", (b"this domain has been ",), thin=True),
    _r(b"domain", rb"domain with epik", "epik", (b"why purchase this ",), thin=True),
    _r(b"domain", rb"domains\s+available\s+on\s+dan\.com", "dan", (b"other ",), thin=True),
    _r(b"domain", rb"domain\s+owner\s+maintain", "parking_disclaimer", re.compile(
        rb"sponsored\s+listings\s+displayed\s+above\s+are\s+served\s+automatically\s+by\s+a\s+third"
        rb"\s+party\.\s+neither\s+the\s+service\s+provider\s+nor\s+the\s+$"), thin=True),
    _r(b"domain", rb"domain(?: name)?\s+(?:is|may be|might be|could be)\s+for sale", "parked_text",
       (b"this ", b"the "), thin=True),
    _r(b"domain", rb"domain\b", "parked_text", _FOR_SALE_BEFORE, thin=True),
    _r(b"domain", rb"domain(?: name)?\s+is parked", "parked_text", (b"this ",), thin=True),
    _r(b"domain", rb"domain\s+(?:steht|ist)\s+zum verkauf", "parked_text", (b"diese ",), thin=True),
    _r(b"park", rb"parked\b", "parked_text", (b"this page is ", b"this web page is ", b"this webpage is "), thin=True),
)
_ANCHORS = tuple((a, tuple(r for r in _RULES if r.anchor == a)) for a in dict.fromkeys(r.anchor for r in _RULES))
_MAX_ANCHORS = 256          # occurrences looked at per anchor ("domain" is common in scripts)
_TITLE = re.compile(rb"<title[^<>]{0,200}>([^<]{0,500})")
_TITLE_FOR_SALE = re.compile(
    rb"(?:this|the) domain(?: name)? (?:is|may be|might be|could be) for sale|buy this domain"
    rb"|(?:purchase|inquire about|make an offer on) this domain|this domain is parked"
    rb"|^\s*(?:www\.)?[a-z0-9-]{1,63}(?:\.[a-z0-9-]{1,63}){1,3}\s+(?:is|may be) for sale"
    rb"|\bdomain (?:name )?for sale\b|\b(?:domain parked|parked domain)\b|diese domain (?:steht|ist) zum verkauf")
_TAG = re.compile(rb"<[^<>]*>")


def _host_signal(html: bytes) -> str | None:
    """The service whose host the page loads from or redirects to. Every //host is
    listed (one C-speed findall); the rare one ending like a parking host is checked
    label by label (jordan.com is not dan.com) and in its context."""
    for host in {h for h in _URL_HOST.findall(html) if h.endswith(_HOST_SUFFIXES)}:
        labels = host.decode("ascii").strip(".").split(".")
        name = _PARKING_HOSTS.get(".".join(labels[-2:])) or _PARKING_HOSTS.get(".".join(labels[-3:]))
        if name and any(_LOAD_CONTEXT.search(html, max(0, m.start() - _CONTEXT_BYTES), m.start())
                        for m in re.finditer(rb"//" + re.escape(host) + rb"(?![a-z0-9.-])", html)):
            return name
    return None


def _rule_hits(html: bytes) -> tuple[str | None, str | None]:
    """(the first code rule that matched, the first thin-only rule that matched: a
    service's sentence before generic wording)."""
    thin = None
    for anchor, rules in _ANCHORS:
        i, seen = html.find(anchor), 0
        while i >= 0 and seen < _MAX_ANCHORS:
            for r in rules:
                if (r.thin and thin not in (None, "parked_text")) or not r.after.match(html, i):
                    continue
                if isinstance(r.before, tuple):
                    ok = html.endswith(r.before, 0, i)
                else:
                    ok = r.before.search(html, max(0, i - 200), i) is not None
                if ok and not r.thin:
                    return r.name, thin
                if ok and thin in (None, "parked_text"):
                    thin = r.name
            i, seen = html.find(anchor, i + 1), seen + 1
    return None, thin


def _url_signal(final_url: str) -> str | None:
    try:
        p = urlsplit(final_url)
        host = (p.hostname or "").rstrip(".")
    except ValueError:
        return None
    path = p.path.lower() or "/"
    for suffix, prefix, name in _LANDER_URLS:
        if (host == suffix or host.endswith("." + suffix)) and path.startswith(prefix):
            return name
    if _WW_LANDER_HOST.match(host) or path.rstrip("/") == "/lander":
        return "lander_redirect"
    return None


def _strip_blocks(html: bytes, tag: bytes) -> bytes:
    """``html`` without ``<tag ...> ... </tag>`` blocks (an unclosed one runs to the end).
    One pass with find, so linear on any input."""
    out, i, open_, close = [], 0, b"<" + tag, b"</" + tag
    while (j := html.find(open_, i)) >= 0:
        out.append(html[i:j])
        k = html.find(close, j)
        if k < 0:
            return b"".join(out)
        i = k + len(close)
    out.append(html[i:])
    return b"".join(out)


def visible_chars(html: bytes) -> int:
    """Characters of text a reader sees (scripts, styles and tags removed, whitespace not
    counted), for lowercased HTML bytes. Linear."""
    text = _TAG.sub(b" ", _strip_blocks(_strip_blocks(html, b"script"), b"style"))
    return len(text) - sum(text.count(c) for c in (b" ", b"\n", b"\t", b"\r", b"\xa0"))


def _header(headers: Mapping[str, str] | Iterable[tuple[str, str]] | None, name: str) -> str | None:
    items = headers.items() if isinstance(headers, Mapping) else (headers or ())
    return next((v for k, v in items if k.lower() == name), None)


def parking_signal(body: bytes, final_url: str,
                   headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> str | None:
    """The name of the parking or for-sale signature that ``body`` (the HTML as fetched),
    served at ``final_url`` (after redirects) with ``headers`` (a mapping or the
    ``Outcome.headers`` pairs), matches; None for a page that is not parked. Rules and
    names in the module docstring. Reads at most ``SCAN_BYTES`` of the body."""
    if name := _url_signal(final_url or ""):
        return name
    if _header(headers, "x-adblock-key"):
        return "adblock_sitekey"
    html = body[:SCAN_BYTES].lower()
    if name := _host_signal(html):
        return name
    code, sentence = _rule_hits(html)
    if code:
        return code
    title = _TITLE.search(html)
    in_title = title is not None and _TITLE_FOR_SALE.search(title.group(1)) is not None
    if not (sentence or in_title) or visible_chars(html) > THIN_CHARS:
        return None
    if sentence and sentence != "parked_text":
        return sentence
    return "parked_title" if in_title else "parked_text"


def is_parked(body: bytes, final_url: str, headers=None) -> bool:
    return parking_signal(body, final_url, headers) is not None

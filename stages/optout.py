"""Publishers' AI opt-outs, read from what fetch already has: pure functions, no I/O.

In: a host's parsed robots.txt (protego), a page's HTTP headers and HTML, and a host's
``/.well-known/tdmrep.json``. Out: which signals say "do not use this page for AI".

- ``robots_verdicts``: the AI crawlers (``AI_AGENTS``) that robots.txt disallows for a URL.
- ``page_optout``: ``noai`` / ``noimageai`` in ``X-Robots-Tag`` or ``<meta name="robots">``,
  TDMRep's ``tdm-reservation`` / ``tdm-policy`` (header or meta tag) and ``rel="license"``
  links.
- ``parse_tdmrep`` and ``tdmrep_lookup``: the TDMRep file on the origin server (W3C TDM
  Reservation Protocol, final report of 2024-05-10): a JSON array of rules
  ``{"location": pattern, "tdm-reservation": 0|1, "tdm-policy": URL}``; the first rule whose
  pattern matches the path decides.

TDMRep's precedence (spec, "Processing priority"): the well-known file, then the HTTP
header, then the HTML meta tag, each later one overriding an earlier value; a missing
value never resets one. ``page_optout`` applies header < meta; ``combine`` puts the file
underneath.

``stages.fetchoptout`` calls the robots and file functions during fetch (no extra request
for robots.txt, one per host for tdmrep.json); extract calls ``page_optout`` on the
archived headers and HTML and ``combine`` for each document.
"""

from __future__ import annotations

import html as htmllib
import json
import re
from urllib.parse import urljoin, urlsplit

import pyarrow as pa
import pyarrow.compute as pc

AI_AGENTS = ("GPTBot", "CCBot", "Google-Extended", "ClaudeBot", "anthropic-ai")
_AI_LOWER = frozenset(a.lower() for a in AI_AGENTS)
OPTOUT_KINDS = ("robots", "noai", "tdm")   # the signals that make ai_optout true (noimageai does not: text is kept)

# A document's opt-out record (``combine``), stored among its signals (``stages.decide.SIGNALS``);
# all null for a page extracted before this record existed.
_STRINGS = pa.list_(pa.field("element", pa.string()))   # a list as Parquet reads it back
FIELDS = [
    pa.field("ai_optout", pa.bool_()),                  # robots, noai or tdm says opt-out
    pa.field("ai_robots", _STRINGS),                    # AI agents robots.txt disallows; null: not consulted
    pa.field("noai", pa.bool_()),                       # X-Robots-Tag or robots meta tag
    pa.field("noimageai", pa.bool_()),                  # recorded only: it does not reserve the text
    pa.field("tdm_reserved", pa.bool_()),               # TDMRep: meta tag > header > tdmrep.json; null: unset
    pa.field("tdm_policy", pa.string()),
    pa.field("licenses", _STRINGS),                     # rel="license" links, absolute
]
# extract's counts (stats info) over pages with a text, kept or rejected: every page
# checked, those opted out, by kind (a page may have several), and those kept in docs/.
STATS = ("ai_optout_checked", "ai_optout_pages", *(f"ai_optout_{k}" for k in OPTOUT_KINDS), "ai_optout_kept")

SCAN_CHARS = 1 << 20        # HTML characters looked at for meta and link tags (1 MiB)
MAX_LICENSES = 8            # rel="license" links kept per page
MAX_RULES = 10_000          # tdmrep.json rules looked at
MAX_PATTERN = 2048          # characters of one tdmrep location pattern

MAX_TAG = 8192             # characters of one tag's attributes; a longer tag is skipped
# A tag whose name is meta, link or a. Its attributes stop at the next "<" and are read
# possessively up to MAX_TAG characters, so a page full of unclosed tags costs linear time.
_TAG = re.compile(r"<(meta|link|a)(?=[\s/>])([^<>]{0,%d}+)>" % MAX_TAG, re.I)
# An attribute name starts where no name character precedes it: each run of name
# characters is tried once, not once per character (which is quadratic on a long word).
_ATTR = re.compile(r"""(?<![-\w:.])([A-Za-z_:][-\w:.]*+)\s*+=\s*+("[^"]*+"|'[^']*+'|[^\s"'=<>`]++)""")
# X-Robots-Tag parameters that carry a value after ":" (so the part before it is no user agent).
_VALUED = frozenset({"unavailable_after", "max-snippet", "max-image-preview", "max-video-preview"})


def robots_verdicts(robots, url: str) -> list[str]:
    """The ``AI_AGENTS`` that ``robots`` (a ``protego.Protego``; None: no robots.txt, so
    nothing is disallowed) disallows for ``url``, in ``AI_AGENTS`` order.

    protego picks the group whose User-agent token occurs in the agent's name at a word
    start, the longest one, else ``*`` (RFC 9309 2.2.1). So ``User-agent: *`` applies to
    every AI agent without its own group, ``Google-Extended`` (a product token with no
    crawler of its own) is matched as written, a ``Googlebot`` group does not apply to it,
    and a group written as a prefix of a token (``User-agent: GPT``) applies to GPTBot."""
    if robots is None:
        return []
    return [agent for agent in AI_AGENTS if not robots.can_fetch(url, agent)]


def _directives(value: str) -> tuple[set[str], set[str]]:
    """(directives for every agent, directives for an AI agent) in one robots value:
    ``noai, noimageai`` or, in X-Robots-Tag, ``GPTBot: noai`` (the agent applies to the
    directives after it in the same header)."""
    every, ai = set(), set()
    agent = None
    for part in value.split(","):
        part = part.strip().lower()
        if ":" in part:
            key, rest = (s.strip() for s in part.split(":", 1))
            if key not in _VALUED:
                agent, part = key, rest
        for token in part.split():
            if agent is None:
                every.add(token)
            elif agent in _AI_LOWER:
                ai.add(token)
    return every, ai


def _tdm_value(value) -> int | None:
    """A tdm-reservation value as 0 or 1; None for anything else."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value if value in (0, 1) else None
    if isinstance(value, str) and value.strip() in ("0", "1"):
        return int(value.strip())
    return None


def _uncommented(html: str):
    """The parts of ``html`` outside ``<!-- -->`` comments (an unclosed one ends the page)."""
    pos = 0
    while True:
        start = html.find("<!--", pos)
        if start < 0:
            yield html[pos:]
            return
        yield html[pos:start]
        end = html.find("-->", start + 4)
        if end < 0:
            return
        pos = end + 3


def page_optout(headers, html: str | bytes | None, url: str | None = None) -> dict:
    """The opt-out signals of one page.

    ``headers``: the HTTP response headers, (name, value) pairs or a mapping (every
    X-Robots-Tag value counts); ``html``: the page (its first ``SCAN_CHARS`` characters
    are scanned, comments skipped); ``url``: the page's URL, to resolve license links.

    Returns ``noai`` / ``noimageai`` (bool: in X-Robots-Tag or a robots meta tag, for every
    agent or for one of ``AI_AGENTS``, as ``GPTBot: noai`` or ``<meta name="GPTBot">``),
    ``tdm_reservation`` (0, 1 or None: the meta tag over the header), ``tdm_policy`` (the
    URL that goes with it) and ``licenses`` (rel="license" hrefs of link and a elements,
    absolute, at most ``MAX_LICENSES``)."""
    out = {"noai": False, "noimageai": False, "tdm_reservation": None, "tdm_policy": None, "licenses": []}
    seen: set[str] = set()

    def robots_value(value: str) -> None:
        every, ai = _directives(value)
        found = every | ai
        for flag in ("noai", "noimageai"):
            out[flag] = out[flag] or flag in found

    pairs = headers.items() if hasattr(headers, "items") else (headers or ())
    header_tdm = header_policy = None
    for name, value in pairs:
        name = name.strip().lower()
        if name == "x-robots-tag":
            robots_value(value)
        elif name == "tdm-reservation" and _tdm_value(value) is not None:
            header_tdm = _tdm_value(value)
        elif name == "tdm-policy" and value.strip():
            header_policy = value.strip()
    meta_tdm = meta_policy = None
    if isinstance(html, bytes):
        html = html[:SCAN_CHARS].decode("utf-8", errors="replace")
    for part in _uncommented((html or "")[:SCAN_CHARS]):
        for m in _TAG.finditer(part):
            tag, body = m.group(1).lower(), m.group(2)
            if tag == "meta" and "name" not in body.lower() or tag != "meta" and "license" not in body.lower():
                continue                    # most tags: no attribute parse
            attrs = {}
            for a in _ATTR.finditer(body):
                attrs.setdefault(a.group(1).lower(), htmllib.unescape(a.group(2).strip("\"'")))
            if tag == "meta":
                name, content = attrs.get("name", "").strip().lower(), attrs.get("content", "")
                if name == "robots" or name in _AI_LOWER:     # <meta name="GPTBot">: all for that agent
                    robots_value(content)
                elif name == "tdm-reservation" and _tdm_value(content) is not None:
                    meta_tdm = _tdm_value(content)
                elif name == "tdm-policy" and content.strip():
                    meta_policy = content.strip()
            elif "license" in attrs.get("rel", "").lower().split() and attrs.get("href", "").strip():
                link = urljoin(url or "", attrs["href"].strip())
                if urlsplit(link).scheme in ("http", "https") and link not in seen \
                        and len(out["licenses"]) < MAX_LICENSES:
                    seen.add(link)
                    out["licenses"].append(link)
    # Each later technique overrides the earlier (file < header < meta); policy with its reservation.
    if meta_tdm is not None:
        out["tdm_reservation"], out["tdm_policy"] = meta_tdm, meta_policy
    elif header_tdm is not None:
        out["tdm_reservation"], out["tdm_policy"] = header_tdm, header_policy
    return out


def parse_tdmrep(body: bytes | str):
    """A tdmrep.json body as parsed JSON when it is an array (or a single rule object),
    else None: the caller counts it as invalid and treats the host as having no file."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if isinstance(doc, dict):
        doc = [doc]
    return doc if isinstance(doc, list) else None


_UNRESERVED = re.compile(r"%(2[dDeE]|3[0-9]|[46][1-9a-fA-F]|[57][0-9aA]|5[fF]|7[eE])")


def _unquote_unreserved(path: str) -> str:
    """Decode %XX of unreserved characters (letters, digits, - . _ ~), as the spec asks
    before comparing; other escapes stay as written."""
    return _UNRESERVED.sub(lambda m: chr(int(m.group(1), 16)), path) if "%" in path else path


def _matches(pattern: str, path: str) -> bool:
    """robots.txt-style matching (the spec borrows it): a prefix match where ``*`` is any
    run of characters and a final ``$`` anchors the end. Leftmost-first search for each
    literal piece: linear in ``len(path)`` per piece, never exponential."""
    anchored = pattern.endswith("$")
    pieces = (pattern[:-1] if anchored else pattern).split("*")
    first, rest = pieces[0], pieces[1:]
    if not path.startswith(first):
        return False
    if not rest:
        return not anchored or path == first
    pos, end = len(first), len(path)
    if anchored:
        last = rest.pop()
        if not path.endswith(last) or end - len(last) < pos:
            return False
        end -= len(last)
    for piece in rest:
        at = path.find(piece, pos, end)
        if at < 0:
            return False
        pos = at + len(piece)
    return True


def tdmrep_lookup(doc, path: str) -> tuple[bool | None, str | None]:
    """(reserved, policy) for ``path`` (path and query of a URL) under the parsed tdmrep.json
    ``doc``: the first rule whose ``location`` matches decides (reserved True for
    ``"tdm-reservation": 1``, False for 0). (None, None) when no rule matches or ``doc``
    is no list. Rules without a location or a 0/1 reservation are skipped."""
    if isinstance(doc, dict):
        doc = [doc]
    if not isinstance(doc, list):
        return None, None
    path = _unquote_unreserved(path or "/")
    for rule in doc[:MAX_RULES]:
        if not isinstance(rule, dict):
            continue
        location, value = rule.get("location"), _tdm_value(rule.get("tdm-reservation"))
        if not isinstance(location, str) or not location or len(location) > MAX_PATTERN or value is None:
            continue
        if _matches(_unquote_unreserved(location), path):
            policy = rule.get("tdm-policy")
            return bool(value), policy if isinstance(policy, str) and policy else None
    return None, None


def url_path(url: str) -> str:
    """The path and query of ``url``, as robots.txt and tdmrep.json patterns see it."""
    parts = urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def combine(ai_robots: list[str] | None, tdmrep_reserved: bool | None, tdmrep_policy: str | None,
            page: dict) -> dict:
    """A document's opt-out record: fetch's robots verdicts and well-known file with the
    page's own signals (``page_optout``). ``tdm_reserved`` follows TDMRep's precedence
    (the page's header or meta tag over the file); ``ai_optout`` is true when any of
    robots (an AI agent disallowed), noai or tdm (reserved) says so."""
    if page["tdm_reservation"] is not None:
        reserved, policy = bool(page["tdm_reservation"]), page["tdm_policy"]
    else:
        reserved, policy = tdmrep_reserved, tdmrep_policy
    kinds = {"robots": bool(ai_robots), "noai": page["noai"], "tdm": bool(reserved)}
    return {"ai_optout": any(kinds.values()), "ai_optout_kinds": [k for k in OPTOUT_KINDS if kinds[k]],
            "ai_robots": ai_robots, "noai": page["noai"], "noimageai": page["noimageai"],
            "tdm_reserved": reserved, "tdm_policy": policy, "licenses": page["licenses"]}


def count(kept: pa.Array, rejected: pa.Array) -> dict[str, int]:
    """``STATS`` from the ``signals`` structs of kept and rejected pages (null structs and
    records without ``ai_optout`` are not counted)."""
    out = dict.fromkeys(STATS, 0)
    for signals, is_kept in ((kept, True), (rejected, False)):
        if not len(signals) or "ai_optout" not in [f.name for f in signals.type]:
            continue
        flag = pc.struct_field(signals, "ai_optout")
        checked = int(pc.sum(pc.is_valid(flag)).as_py() or 0)
        opted = int(pc.sum(pc.fill_null(flag, False)).as_py() or 0)
        out["ai_optout_checked"] += checked
        out["ai_optout_pages"] += opted
        out["ai_optout_kept"] += opted if is_kept else 0
        robots = pc.greater(pc.fill_null(pc.list_value_length(pc.struct_field(signals, "ai_robots")), 0), 0)
        noai = pc.fill_null(pc.struct_field(signals, "noai"), False)
        tdm = pc.fill_null(pc.struct_field(signals, "tdm_reserved"), False)
        for kind, hit in zip(OPTOUT_KINDS, (robots, noai, tdm)):
            out[f"ai_optout_{kind}"] += int(pc.sum(hit).as_py() or 0)
    return out

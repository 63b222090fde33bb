"""URL normalization and identity.

``normalize`` lowercases scheme and host, removes the default port, the fragment and
tracking parameters (utm_*, fbclid, gclid, mc_*, ref, ...), sorts the query and makes
percent-encoding consistent, through courlan's ``normalize_url``.
``url_id`` is the xxh3_64 hex digest of the normalized URL: the document id everywhere.
``fetch_form`` is the URL as submitted, less its fragment and tracking parameters: what a
crawler should request. ``raw_authority`` and ``valid_host`` tell a fetchable host (and
port) from one no client can use.
"""

from __future__ import annotations

import functools
import re
from urllib.parse import unquote_plus, urlsplit, urlunsplit

import tld
import xxhash
from courlan import normalize_url
from courlan.clean import TRACKERS_RE

from .hosts import parse_host

REDDIT_DOMAINS = ("reddit.com", "redd.it", "redditmedia.com", "redditstatic.com")


# URLs that courlan would only lowercase: ASCII host, plain path, no port, query,
# fragment, escapes, "//" or dot segments. A test checks this fast path against courlan.
_SEG = r"[A-Za-z0-9_~-]+(?:\.[A-Za-z0-9_~-]+)*"    # unambiguous: no nested optional parts (no ReDoS)
_SIMPLE = re.compile(rf"(?i)(https?)://([a-z0-9-]+(?:\.[a-z0-9-]+)+)((?:/{_SEG})*/?)")
# A plain query: key=value pairs of unreserved characters, which courlan's parse_qs and
# urlencode leave as they are; it only drops trackers and sorts by key.
_PAIR = r"[A-Za-z0-9_.~-]+=[A-Za-z0-9_.~-]+"
_SIMPLE_QUERY = re.compile(rf"{_SIMPLE.pattern}\?({_PAIR}(?:&{_PAIR})*)")


_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_HOST_CHARS, _PATH_CHARS, _QUERY_CHARS = _ALNUM + "-.", _ALNUM + "_~-./", _ALNUM + "_.~-=&"


def _plain(url: str) -> tuple[str, str, str, str | None] | None:
    """(scheme, host, both lowercased, path, query or None) of an ASCII URL that ``_SIMPLE``
    (query None) or ``_SIMPLE_QUERY`` matches whole, else None: the same test by string
    methods, 2-3x faster than the regexes (a test checks both on generated strings).
    ``not s.strip(chars)`` is "every character of s is in chars"."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or (scheme != "http" and scheme != "https"):
        return None
    head, q, query = rest.partition("?")
    host, slash, path = head.partition("/")
    if (not host or host.strip(_HOST_CHARS) or "." not in host or host[0] == "." or host[-1] == "."
            or ".." in host):
        return None
    if slash:
        path = "/" + path
        if (path.strip(_PATH_CHARS) or "//" in path or "/." in path or "./" in path or ".." in path
                or path[-1] == "."):
            return None
    if not q:
        return scheme, host.lower(), path, None
    if not query or query.strip(_QUERY_CHARS):
        return None
    for kv in query.split("&"):
        if kv.count("=") != 1 or kv[0] == "=" or kv[-1] == "=":
            return None
    return scheme, host.lower(), path, query


def normalize(url: str) -> str | None:
    """Normalized http(s) URL, or None when it has no usable scheme and host."""
    url = url.strip()
    if url.isascii():
        parts = _plain(url)
        if parts is None:
            return _normalize_slow(url)
        scheme, host, path, query = parts
        return f"{scheme}://{host}{path}" if query is None else _with_query(scheme, host, path, query)
    m = _SIMPLE.fullmatch(url)   # (?i) in Unicode mode: "K" (Kelvin) matches as k
    if m:   # segments never start with "." here, so there are no dot segments to resolve
        return f"{m.group(1).lower()}://{m.group(2).lower()}{m.group(3)}"
    m = _SIMPLE_QUERY.fullmatch(url)
    if m:
        return _with_query(m.group(1).lower(), m.group(2).lower(), m.group(3), m.group(4))
    return _normalize_slow(url)


def harvest_forms(url: str) -> tuple[str, str, str] | None:
    """(``normalize(url)``, its host as ``raw_host`` gives it, ``fetch_form(url)``), or None
    where ``normalize`` gives None: what harvest keeps of each URL, in one pass.

    A plain ASCII URL (either fast path of ``normalize``) is split once (``_plain``) and
    the three are built from the parts: for a plain path, the fetch form *is* the
    normalized URL. Anything else takes the three functions one after the other. A test
    checks this against them on every real dump URL and the generated queries.
    """
    parts = _plain(url) if url.isascii() else None   # (?i) in Unicode mode also takes "K" (Kelvin) for k
    if parts is not None:
        scheme, host, path, query = parts
        if query is None:
            norm = f"{scheme}://{host}{path}"
            return norm, host, norm
        params = query.split("&")
        kept = [kv for kv in params if not _tracker_key(kv.partition("=")[0])]
        fetch = f"{scheme}://{host}{path}" + (f"?{'&'.join(kept)}" if kept else "")
        if not kept:
            return fetch, host, fetch
        pairs = sorted((kv.split("=", 1) for kv in kept), key=lambda kv: kv[0])   # stable, as _with_query
        return f"{scheme}://{host}{path or '/'}?" + "&".join(f"{k}={v}" for k, v in pairs), host, fetch
    norm = normalize(url)
    if norm is None:
        return None
    return norm, raw_host(norm), fetch_form(url)


_TRACKER_KEYS: dict[str, bool] = {}


def _tracker_key(key: str) -> bool:
    """Whether a plain query key (no escapes) is a tracking parameter; cached, as keys repeat."""
    got = _TRACKER_KEYS.get(key)
    if got is None:
        if len(_TRACKER_KEYS) >= 1 << 16:
            _TRACKER_KEYS.clear()
        got = _TRACKER_KEYS[key] = TRACKERS_RE.search(key.lower()) is not None
    return got


def _with_query(scheme: str, host: str, path: str, query: str) -> str:
    """courlan's non-strict result for a plain query: trackers dropped, keys sorted (a
    repeated key keeps its values in order), "/" for an empty path when a query remains."""
    pairs = [kv.split("=", 1) for kv in query.split("&")]
    keep = [(k, v) for k, v in pairs if not _tracker_key(k)]
    if not keep:
        return f"{scheme}://{host}{path}"
    keep.sort(key=lambda kv: kv[0])        # stable: a repeated key keeps its order, as parse_qs does
    return f"{scheme}://{host}{path or '/'}?" + "&".join(f"{k}={v}" for k, v in keep)


def _normalize_slow(url: str) -> str | None:
    try:
        parts = urlsplit(url)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
        # Non-strict mode removes tracking parameters but keeps real ones (?id=, ?page=);
        # strict mode would drop every parameter outside a small allowlist.
        out = urlsplit(normalize_url(parts, strict=False))
    except (ValueError, UnicodeError):
        return None
    return urlunsplit(out._replace(fragment=""))


def url_id(url: str) -> str:
    return xxhash.xxh3_64_hexdigest(url.encode("utf-8", "surrogatepass"))


def url_hash(url: str) -> int:
    """``url_id`` as an integer (``f"{url_hash(u):016x}" == url_id(u)``)."""
    return xxhash.xxh3_64_intdigest(url.encode("utf-8", "surrogatepass"))


@functools.lru_cache(maxsize=1 << 16)
def registered_domain(hostname: str) -> str:
    """The registrable domain ("bbc.co.uk" for "news.bbc.co.uk") from the public suffix
    list bundled with ``tld`` (offline); the host itself when it has no known suffix."""
    return tld.get_fld(hostname, fix_protocol=True, fail_silently=True) or hostname


def _raw_netloc(url: str) -> str:
    """What stands between "://" and the first of "/?#\\", less any userinfo."""
    rest = url.partition("://")[2]
    end = len(rest)
    for sep in "/?#\\":
        i = rest.find(sep)
        if 0 <= i < end:
            end = i
    return rest[:end].rpartition("@")[2]


def raw_host(url: str) -> str:
    """The lowercase host of an http(s) URL by plain string splitting, without parsing.

    For filtering decisions on raw URLs; it agrees with ``urlsplit(url).hostname`` on
    well-formed URLs and never raises.
    """
    netloc = _raw_netloc(url)
    if netloc.startswith("["):
        return netloc[1:netloc.find("]")].lower()
    return netloc.partition(":")[0].lower().rstrip(".")


def raw_authority(url: str) -> tuple[str, bool]:
    """(``raw_host(url)``, whether the port is usable): empty or 0-65535 after the host, and
    nothing after an IPv6 literal's "]" but such a port. By string splitting; never raises."""
    netloc = _raw_netloc(url)
    if netloc.startswith("["):
        close = netloc.find("]")
        if close < 0:
            return "", False
        host, after = netloc[1:close], netloc[close + 1:]
        if after and not after.startswith(":"):
            return host.lower(), False
        port = after[1:]
    else:
        host, _, port = netloc.partition(":")
    ok = not port or (len(port) <= 5 and port.isascii() and port.isdigit() and int(port) <= 65535)
    return host.lower().rstrip("."), ok


def valid_host(hostname: str) -> bool:
    """Whether a lowercase host as ``raw_host`` returns it (IPv6 without brackets) is one a
    client can request: the WHATWG host parser accepts it (``hosts.parse_host``, as fetch
    reads hosts: no spaces, control characters or "<>^|", a valid IPv4 or IPv6 literal)
    and, for a domain, every label has 1-63 octets and the whole at most 253 after IDNA.
    """
    parsed = parse_host(f"[{hostname}]" if ":" in hostname else hostname)
    if not isinstance(parsed, str):
        return parsed is not None
    labels = parsed.removesuffix(".").split(".")
    return len(parsed) <= 253 and all(0 < len(label) <= 63 for label in labels)


_PLAIN_RAW = re.compile(r"https?://[a-z0-9.-]+(?:/[^?#\\\s]*)?")


def fetch_form(url: str) -> str:
    """The URL as submitted, for fetching: scheme and host lowercased, the fragment and the
    tracking parameters (``TRACKERS_RE``, as ``normalize`` drops them) removed; the order of
    the remaining parameters, empty ones ("&find=") and the path's case are kept.

    ``http://x.kr/v.html?idx=8&find=&utm_source=fb#top`` -> ``http://x.kr/v.html?idx=8&find=``
    """
    if _PLAIN_RAW.fullmatch(url):           # most URLs: nothing to lowercase or remove
        return url
    url = url.strip().partition("#")[0]
    scheme, sep, rest = url.partition("://")
    end = len(rest)
    for c in "/?\\":
        i = rest.find(c)
        if 0 <= i < end:
            end = i
    user, at, hostport = rest[:end].rpartition("@")
    head = f"{scheme.lower()}{sep}{user}{at}{hostport.lower()}"
    path, q, query = rest[end:].partition("?")
    if q:
        params = query.split("&")
        kept = [p for p in params if not _tracker(p.partition("=")[0])]
        if len(kept) < len(params):
            query = "&".join(kept)
            q = "?" if kept else ""
    return f"{head}{path}{q}{query}"


def _tracker(key: str) -> bool:
    key = unquote_plus(key) if "%" in key or "+" in key else key   # courlan's parse_qs decodes keys
    return TRACKERS_RE.search(key.lower()) is not None


def host(url: str) -> str:
    h = urlsplit(url).hostname or ""
    return h.lower().rstrip(".")


def domain_matches(hostname: str, domains) -> bool:
    """True if ``hostname`` is one of ``domains`` or a subdomain of one."""
    parts = hostname.split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts)))


def normalize_url_id(url: str) -> tuple[str, str]:
    """(url_id, normalized url) as harvest computes them: a document's doc_id is the
    url_id of the URL it was harvested under. A URL with no http(s) scheme and host is a
    ConfigError."""
    from webtext.pipeline.errors import ConfigError

    norm = normalize(url)
    if norm is None:
        raise ConfigError(f"{url[:200]!r} is not an http(s) URL")
    return url_id(norm), norm

"""URL normalization and identity.

``normalize`` lowercases scheme and host, removes the default port, the fragment and
tracking parameters (utm_*, fbclid, gclid, mc_*, ref, ...), sorts the query and makes
percent-encoding consistent, through courlan's ``normalize_url``.
``url_id`` is the xxh3_64 hex digest of the normalized URL: the document id everywhere.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

import xxhash
from courlan import normalize_url

REDDIT_DOMAINS = ("reddit.com", "redd.it", "redditmedia.com", "redditstatic.com")


def normalize(url: str) -> str | None:
    """Normalized http(s) URL, or None when it has no usable scheme and host."""
    url = url.strip()
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


def host(url: str) -> str:
    h = urlsplit(url).hostname or ""
    return h.lower().rstrip(".")


def domain_matches(hostname: str, domains) -> bool:
    """True if ``hostname`` is one of ``domains`` or a subdomain of one."""
    parts = hostname.split(".")
    return any(".".join(parts[i:]) in domains for i in range(len(parts)))

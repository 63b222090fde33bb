"""SURT keys as Common Crawl's columnar URL index writes ``url_surtkey``.

In: a URL string. Out: its SURT key (``http://www.Example.com/Path?b=2&a=1`` ->
``com,example)/path?a=1&b=2``), exactly as the ``surt`` package computes it, without the
package and without DNS. ``stages.columnar`` joins URL sets against the index on it.

Rules of the ``surt`` package (internetarchive/surt 0.3.1, ``surt.surt(url)`` with its
default DefaultIAURLCanonicalizer = GoogleURLCanonicalizer then IAURLCanonicalizer, a
port of archive-commons' Java classes), which pywb's ``canonicalize`` calls to write the
CDX ``urlkey`` that cc-index-table copies into ``url_surtkey``. Re-implemented from the
rules, the file each comes from in brackets; the package's own tests are among ours
(tests/test_columnar.py). Checked against the package on 20,207 generated URLs.
"""

from __future__ import annotations

import re
import socket
import struct
from urllib.parse import SplitResultBytes, quote_from_bytes, unquote_to_bytes

_NO_SCHEME = re.compile(rb"[a-zA-Z][a-zA-Z0-9+.-]*:")          # [handyurl] else http:// is added
_REPEATED_HTTP = re.compile(rb"^(https?://)+")                # [handyurl] http://https://x -> https://x
_PARTS = re.compile(rb"^(?:([a-zA-Z][a-zA-Z0-9+.-]*):)?(?:(?://([^/?#]*))?([^?#]*)(?:\?([^#]*))?)?(?:#.*)?$")
_WWW = re.compile(rb"www\d*\.")                                 # [IAURLCanonicalizer.massageHost]
_DOTTED = re.compile(rb"(?:[1-9][0-9]*|0[0-7]*)(?:\.[0-9]+){0,3}")  # [Google...attemptIPFormats]
# [IAURLCanonicalizer / URLRegexTransformer] session ids: ASP.NET ids in the path ...
_PATH_SESSION = [re.compile(rb"^(.*/)\((?:[a-z]\([0-9a-z]{24}\))+\)/([^?]+\.aspx.*)$", re.I),
                 re.compile(rb"^(.*/)\([0-9a-z]{24}\)/([^?]+\.aspx.*)$", re.I)]
# ... and these query parameters: removed with the "&" after them, each rule once.
_QUERY_SESSION = [re.compile(rb"^(.*)" + p + rb"(?:&(.*))?$", re.I) for p in (
    rb"jsessionid=[0-9a-zA-Z]{32}", rb"phpsessid=[0-9a-zA-Z]{32}", rb"sid=[0-9a-zA-Z]{32}",
    rb"ASPSESSIONID[a-zA-Z]{8}=[a-zA-Z]{24}", rb"cfid=[^&]+&cftoken=[^&]+")]
# [GoogleURLCanonicalizer.escapeOnce] what stays unescaped besides letters, digits and _.-~
_SAFE = b"!\"$&'()*+,-./:;<=>?@[\\]^_`{|}~"
_DEFAULT_PORT = {b"http": 80, b"https": 443}


def _unescape(s: bytes) -> bytes:
    """Percent-decode until nothing changes (``%2525`` -> ``%``); bad escapes stay."""
    while True:
        out = unquote_to_bytes(s)
        if out == s:
            return s
        s = out


def _escape(s: bytes) -> bytes:
    """Percent-encode (upper-case hex) space, ``%``, ``#``, controls and non-ASCII bytes."""
    return quote_from_bytes(s, safe=_SAFE).encode("ascii")


def _ip(host: bytes) -> bytes | None:
    """A numeric host as dotted quad: all digits -> the low 32 bits; 1-4 dotted decimal or
    octal parts -> inet_aton's reading (``017.0.0.1`` -> 15.0.0.1, ``10.0.258`` ->
    10.0.1.2). The package resolves the dotted forms with gethostbyname_ex (no lookup for
    numeric names); here inet_aton, so no DNS."""
    if host.isdigit():
        return socket.inet_ntoa(struct.pack(">L", int(host) & 0xFFFFFFFF)).encode()
    if _DOTTED.fullmatch(host):
        try:
            return socket.inet_ntoa(socket.inet_aton(host.decode("ascii"))).encode()
        except (OSError, UnicodeDecodeError):
            return None
    return None


def _normalize_path(path: bytes) -> bytes:
    """[GoogleURLCanonicalizer.normalizePath] ``.`` dropped, ``..`` pops (kept at the top),
    empty segments dropped except a trailing one; an empty path is ``/``."""
    if not path:
        return b"/"
    kept: list[bytes] = []
    for seg in path.split(b"/")[1:]:
        if seg == b".":
            continue
        if seg == b".." and kept:
            kept.pop()
        else:
            kept.append(seg)
    if not kept:
        return b"/"
    return b"/" + b"".join(s + b"/" for s in kept[:-1] if s) + kept[-1]


def _sort_query(query: bytes) -> bytes:
    """[IAURLCanonicalizer.alphaReorderQuery] split on ``&``, each on the first ``=``, sort
    as (name,) / (name, value) byte tuples (``a`` before ``a=``), join again."""
    if len(query) <= 1:
        return query
    return b"&".join(b"=".join(t) for t in sorted(tuple(a.split(b"=", 1)) for a in query.split(b"&")))


def surt(url: str) -> str:
    """The SURT key of ``url`` as Common Crawl's ``url_surtkey`` has it, e.g.
    ``http://www.Example.com/Path?b=2&a=1`` -> ``com,example)/path?a=1&b=2``.
    Raises ValueError for a port that is not 0-65535 (the package raises too).

    Parsing [handyurl.parse]: strip surrounding whitespace, delete tab/CR/LF; no scheme ->
    ``http://``; repeated ``http(s)://`` prefixes -> the last; RFC 2396 split; a ``:``
    closing the authority with no port is dropped; user info is dropped; ``http:////h/p``
    takes ``h`` as host. [GoogleURLCanonicalizer] fragment dropped; host percent-decoded
    repeatedly, a non-ASCII host IDNA-encoded (Python's IDNA 2003 codec, left as it is
    when that fails), ``..`` -> ``.``, dots stripped at both ends (trailing dot), numeric
    hosts as dotted quads, else lowercased; path decoded repeatedly, dot segments resolved
    and duplicate slashes merged, re-escaped once (``_escape``); query decoded and
    re-escaped the same way (so ``%26`` becomes a real ``&`` and splits a value, the
    package's known quirk, which the index keeps). [IAURLCanonicalizer] host lowercased
    and one leading ``www``/``www<digits>.`` label dropped; port 80 (http) / 443 (https)
    dropped; path lowercased, ASP.NET path session ids dropped, a trailing ``/`` dropped
    unless the path is ``/``; query session ids (jsessionid, phpsessid, sid,
    ASPSESSIONID, cfid+cftoken) dropped, lowercased (escapes too: ``%C3`` -> ``%c3``),
    parameters sorted, an empty query dropped. [handyurl.geturl_bytes with surt=True,
    with_scheme=False] host labels reversed and joined by ``,`` (IP addresses too), then
    ``:port``, ``)``, the path, ``?query``.
    """
    raw = url.encode("utf-8") if isinstance(url, str) else bytes(url)
    if not raw:
        return "-"
    raw = raw.strip().replace(b"\t", b"").replace(b"\r", b"").replace(b"\n", b"")
    if not _NO_SCHEME.match(raw):
        raw = b"http://" + raw
    raw = _REPEATED_HTTP.sub(lambda m: m.group(1), raw, count=1)
    scheme, netloc, path, query = _PARTS.match(raw).groups()
    netloc, path = netloc or b"", path or b""
    if netloc.endswith(b":"):
        netloc = netloc.rstrip(b":")
    parts = SplitResultBytes(scheme, netloc, path, b"", b"")
    host, port = parts.hostname, parts.port or None   # raises ValueError for a bad port
    if host is None and path and scheme.startswith(b"http"):
        host, _, rest = path.lstrip(b"/").partition(b"/")
        path = b"/" + rest
    query = query or None

    # GoogleURLCanonicalizer
    if host:
        host = _unescape(host)
        if not host.isascii():
            try:
                host = host.decode("utf-8", "ignore").encode("idna")
            except UnicodeError:
                pass
        host = host.replace(b"..", b".").strip(b".")
        host = _ip(host) or _escape(host.lower())
    path = _unescape(path)
    if host:
        path = _normalize_path(path)
    path = _escape(path)
    if query:
        query = _escape(_unescape(query))

    # IAURLCanonicalizer
    if host:
        host = host.lower()
        www = _WWW.match(host) if scheme != b"dns" else None
        host = host[www.end():] if www else host
    if port is not None and port == _DEFAULT_PORT.get(scheme.lower()):
        port = None
    if path:
        path = path.lower()
        for rule in _PATH_SESSION:
            m = rule.match(path)
            if m:
                path = m.group(1) + m.group(2)
        if len(path) > 1 and path.endswith(b"/"):
            path = path[:-1]
    if query:
        for rule in _QUERY_SESSION:
            m = rule.match(query)
            if m:
                query = m.group(1) + (m.group(2) or b"")
        query = _sort_query(query.lower()) or None

    if host:
        out = b",".join(reversed(host.split(b"."))) + (b":%d" % port if port is not None else b"") + b")"
    else:
        out = scheme + b":"
    out += path or (b"/" if query is not None else b"")
    if query is not None:
        out += b"?" + query
    return out.decode("ascii")         # every byte outside ASCII was escaped above


def surt_or_none(url: str | None) -> str | None:
    """``surt``, or None for a URL that has no key (empty, bad port)."""
    if not url:
        return None
    try:
        return surt(url)
    except ValueError:
        return None

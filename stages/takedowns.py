"""Takedown rules and matching them against URLs, set-based, for every stage that honours them.

In: the takedowns recorded by ``webtext remove`` (state.sqlite ``takedowns``: kind and
value). Out: a ``Matcher`` whose ``mask(urls, hosts)`` says, for Arrow columns of URLs
and their hosts, which rows a takedown covers. Used by harvest's reduce (drops matching
submissions as ``taken_down``), fetch's frontier planning (never schedules them) and
shard (drops matching documents from the next corpus version).

Kinds (``value`` is what is stored):
- ``url``: a normalized URL (``stages.urls.normalize``). Its http and https variants
  count as one; ``www.`` is not folded (``www.x.com`` is another host).
- ``domain``: a host in the pipeline's canonical form (lowercase, IDNA ASCII, no trailing
  dot): the host and every subdomain.
- ``prefix``: a normalized URL; every URL whose normalized form, under either scheme,
  starts with it. A prefix without a path (``https://x.com``) covers that host's URLs
  only, not ``x.com.evil.org``.

Matching, for millions of rows: the scheme is cut off every URL with one vectorized
regex; ``url`` rules are one ``is_in`` against a set, ``domain`` rules check each
distinct host's parent domains against a set (hosts are dictionary-encoded, so each
distinct host is canonicalized once), and ``prefix`` rules run ``starts_with`` only on
rows whose host is the host of some prefix.

A line of ``webtext remove --file``: ``domain:example.com``, ``prefix:https://x.com/y/``,
``url:https://x.com/a`` or a plain URL; blank lines and lines starting with ``#`` are skipped.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webtext.pipeline.errors import ConfigError

from . import urls as U
from .hosts import parse_host

KINDS = ("url", "domain", "prefix")
_SCHEME = r"^[hH][tT][tT][pP][sS]?://"


@dataclass(frozen=True, slots=True)
class Takedown:
    kind: str      # url | domain | prefix
    value: str     # normalized URL, canonical host, or normalized URL prefix

    @property
    def key(self) -> str:
        """The state table's ``doc_id``: the url_id of a URL (extract's doc_id), else ``kind:value``."""
        return U.url_id(self.value) if self.kind == "url" else f"{self.kind}:{self.value}"


def canonical_host(host: str) -> str | None:
    """A host as the pipeline compares hosts: lowercase, IDNA ASCII (``hosts.parse_host``),
    no trailing dot; an IP address as written by ``ipaddress``; None if no client could use it."""
    h = host.strip().lower().rstrip(".")
    parsed = parse_host(h) if h else None
    if parsed is None or not isinstance(parsed, str):
        return None if parsed is None else str(parsed)
    h = parsed.rstrip(".")
    return h if U.valid_host(h) else None


def parse(kind: str, text: str) -> Takedown:
    """A takedown from a ``--url``/``--domain``/``--prefix`` value; a bad value is a ConfigError."""
    text = text.strip()
    if kind == "domain":
        host = text
        if "://" in host:
            raise ConfigError(f"--domain {text[:200]!r} is a URL, not a domain",
                              "Give a host such as example.com, or use --prefix URL")
        got = canonical_host(host) if host and "/" not in host and not host.startswith(".") else None
        if got is None or "." not in got and not got.startswith("["):
            raise ConfigError(f"--domain {text[:200]!r} is not a valid domain", "Give a host such as example.com")
        return Takedown("domain", got)
    if kind not in ("url", "prefix"):
        raise ConfigError(f"unknown takedown kind {kind!r}", "Use url:, domain: or prefix:")
    norm = U.normalize(text)
    if norm is None:
        raise ConfigError(f"--{kind} {text[:200]!r} is not an http(s) URL", "Give a full URL such as https://example.com/a")
    return Takedown(kind, norm)


def parse_line(line: str) -> Takedown | None:
    """One line of a takedown file (syntax in the module docstring); None for blanks and comments."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    head, sep, rest = line.partition(":")
    if sep and head.lower() in KINDS and not rest.startswith("//"):
        return parse(head.lower(), rest)
    return parse("url", line)


def strip_scheme(urls: pa.Array | pa.ChunkedArray) -> pa.Array:
    """URLs without their ``http://``/``https://``: the form in which both schemes are one."""
    return pc.replace_substring_regex(urls, _SCHEME, "", max_replacements=1)


@functools.lru_cache(maxsize=1 << 16)
def _canon(host: str) -> str:
    h = host.lower().rstrip(".")
    if h.isascii() and "xn--" not in h:
        return h
    return canonical_host(h) or h


def _parents(host: str) -> list[str]:
    parts = host.split(".")
    return [".".join(parts[i:]) for i in range(len(parts))]


class Matcher:
    """Which URLs a set of takedowns covers (see the module docstring)."""

    def __init__(self, takedowns):
        self.takedowns = list(dict.fromkeys(takedowns))
        self.urls = {t.value.split("://", 1)[1] for t in self.takedowns if t.kind == "url"}
        self.domains = frozenset(t.value for t in self.takedowns if t.kind == "domain")
        prefixes = sorted({t.value.split("://", 1)[1] for t in self.takedowns if t.kind == "prefix"})
        self.prefixes: dict[str, list[str]] = {}      # prefix host -> the prefixes (no scheme) on it
        for p in prefixes:
            self.prefixes.setdefault(_canon(_host_part(p)), []).append(p)

    def __bool__(self) -> bool:
        return bool(self.takedowns)

    @classmethod
    def from_state(cls, state) -> "Matcher":
        return cls(Takedown(t["kind"], t["url"]) for t in state.takedowns())

    def params(self) -> list[list[str]]:
        """The rules as JSON (for a task's fingerprinted params)."""
        return sorted([t.kind, t.value] for t in self.takedowns)

    @classmethod
    def from_params(cls, rules) -> "Matcher":
        return cls(Takedown(k, v) for k, v in rules or [])

    def url_ids(self) -> set[str]:
        """url_ids of both scheme variants of every ``url`` takedown (doc_ids they remove)."""
        return {U.url_id(f"{s}://{u}") for u in self.urls for s in ("http", "https")}

    def mask(self, urls: pa.Array | pa.ChunkedArray, hosts: pa.Array | pa.ChunkedArray | None = None) -> np.ndarray:
        """Boolean per row: a takedown covers the (normalized) URL. ``hosts`` is each URL's
        host (a urls/ ``domain`` column); derived from the URLs when None."""
        n = len(urls)
        out = np.zeros(n, dtype=bool)
        if not self.takedowns or n == 0:
            return out
        bare = strip_scheme(urls)
        if self.urls:
            out |= pc.fill_null(pc.is_in(bare, value_set=pa.array(sorted(self.urls), pa.string())),
                                False).to_numpy(zero_copy_only=False)
        if not (self.domains or self.prefixes):
            return out
        if hosts is None:
            hosts = pc.replace_substring_regex(pc.replace_substring_regex(bare, r"[/?#\\].*$", ""), r"^.*@", "")
            hosts = pc.replace_substring_regex(hosts, r":[0-9]*$", "")
        enc = (hosts.combine_chunks() if isinstance(hosts, pa.ChunkedArray) else hosts).dictionary_encode()
        canon = [_canon(h or "") for h in enc.dictionary.to_pylist()]
        idx = pc.fill_null(enc.indices, 0).to_numpy(zero_copy_only=False) if len(canon) else None
        if idx is None:
            return out
        if self.domains:
            hit = np.array([any(p in self.domains for p in _parents(h)) for h in canon], dtype=bool)
            out |= hit[idx]
        if self.prefixes:
            on = np.array([h in self.prefixes for h in canon], dtype=bool)[idx] & ~out
            rows = np.flatnonzero(on)
            if len(rows):
                sub = bare.combine_chunks() if isinstance(bare, pa.ChunkedArray) else bare
                sub = sub.take(pa.array(rows))
                got = np.zeros(len(rows), dtype=bool)
                for plist in self.prefixes.values():
                    for p in plist:
                        got |= _starts(sub, p)
                out[rows[got]] = True
        return out

    def covering(self, url: str, host: str | None = None) -> list[Takedown]:
        """The takedowns that cover one URL (for reports; ``mask`` is the fast path)."""
        return [t for t in self.takedowns
                if Matcher([t]).mask(pa.array([url]), None if host is None else pa.array([host]))[0]]


def _host_part(bare: str) -> str:
    h = bare
    for sep in "/?#":
        h = h.partition(sep)[0]
    return h.rpartition("@")[2].partition(":")[0]


def _starts(bare: pa.Array, prefix: str) -> np.ndarray:
    """Rows of scheme-less URLs that start with a scheme-less prefix; a prefix without a
    path covers exactly its host (and port): the next character must end the authority."""
    if any(c in prefix for c in "/?#"):
        hit = pc.starts_with(bare, prefix)
    else:
        hit = pc.or_(pc.equal(bare, prefix), pc.or_(pc.starts_with(bare, prefix + "/"),
                                                    pc.starts_with(bare, prefix + "?")))
    return pc.fill_null(hit, False).to_numpy(zero_copy_only=False)


def matching_docs(paths, takedowns: list[Takedown]) -> tuple[list[str], list[list[str]]]:
    """(doc_ids, per takedown the doc_ids it covers) of the documents in Parquet files of
    schema DOCS/CLEAN that a takedown covers: by ``doc_id`` (both scheme variants of a
    ``url`` takedown), by ``url`` with the host of ``url``, or by ``final_url`` (normalized
    where it differs from ``url``) with ``domain``, the host of ``final_url``."""
    import pyarrow.parquet as pq

    m = Matcher(takedowns)
    if not m:
        return [], [[] for _ in takedowns]
    ids = pa.array(sorted(m.url_ids()), pa.string())
    hits: list[pa.Table] = []
    for p in paths:
        t = pq.read_table(p, columns=["doc_id", "url", "final_url", "domain"])
        final = t["final_url"].to_pylist()
        differs = [f != u for f, u in zip(final, t["url"].to_pylist())]
        final = pa.array([(U.normalize(f) or f) if d else f for f, d in zip(final, differs)], pa.string())
        t = t.set_column(2, "final_url", final)
        hit = (pc.is_in(t["doc_id"], value_set=ids).to_numpy(zero_copy_only=False) | m.mask(t["url"])
               | m.mask(t["final_url"], t["domain"]))
        if hit.any():
            hits.append(t.filter(pa.array(hit)))
    if not hits:
        return [], [[] for _ in takedowns]
    t = pa.concat_tables(hits)
    per = []
    for td in takedowns:
        one = Matcher([td])
        hit = (pc.is_in(t["doc_id"], value_set=pa.array(sorted(one.url_ids()), pa.string())).to_numpy(zero_copy_only=False)
               | one.mask(t["url"]) | one.mask(t["final_url"], t["domain"]))
        per.append(sorted(set(t["doc_id"].filter(pa.array(hit)).to_pylist())))
    return sorted(set(t["doc_id"].to_pylist())), per

"""A small offline "demo web": pages, a Pushshift-format dump that links to them, a demo
benchmark file, and a loopback HTTP forward proxy that serves the pages.

Article text comes from Python standard-library docstrings, so it exists on any machine.
The web is deterministic for a given Python version and seed. It plants what each stage
must handle: nav/footer boilerplate (extract), pages that are too short (extract), exact
and near-duplicate republications (dedup), Wikipedia pages (decontaminate, by URL), one
page quoting a benchmark passage (decontaminate, by content), dead links, server errors,
redirects, non-HTML responses and a robots.txt disallow (fetch), dead links, a parked
domain and a soft 404 whose pages Common Crawl or the Wayback Machine captured, and one
captured too long ago (fetch's archive recovery, ``pipeline.demoarchive``), and
self/NSFW/low-score/malformed submissions (harvest).

Usage::

    web = build_demo_web(out_dir, n_articles=200)
    with DemoProxy(web.pages, web.archive) as proxy:   # proxy.url == "http://127.0.0.1:<port>"
        ...fetch with --proxy proxy.url, and the archives' http:// endpoints...
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import random
import re
import threading
import warnings
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import zstandard

from .archiveweb import HOSTS as ARCHIVE_HOSTS, ArchiveWeb, send_whole
from .demoarchive import ARCHIVE_MODULES, DEMO_CRAWLS, N_PAGES, plant_archived, take_articles

_MODULES = (
    "argparse asyncio collections concurrent.futures contextlib csv dataclasses datetime decimal email "
    "enum fractions functools gzip heapq http.client http.server inspect io ipaddress itertools json "
    "logging mailbox multiprocessing os pathlib pickle pprint random re sched selectors shutil socket "
    "sqlite3 statistics string subprocess tarfile tempfile textwrap threading timeit typing unittest "
    "urllib.parse urllib.request uuid warnings zipfile zoneinfo difflib doctest pydoc smtplib imaplib "
    "ftplib calendar locale gettext optparse configparser numbers operator queue bisect copy weakref "
    "abc ast dis tokenize traceback trace pdb cProfile profile codecs unicodedata base64 binascii "
    "hashlib hmac secrets ssl email.message email.utils xml.etree.ElementTree html.parser wave cmd "
    "shlex glob fnmatch filecmp stat platform sysconfig site zipimport runpy importlib graphlib "
    "contextvars array struct mimetypes plistlib netrc quopri getopt signal mmap socketserver "
    "xmlrpc.client http.cookiejar http.cookies urllib.robotparser colorsys lzma bz2 zlib shelve dbm "
    "copyreg marshal symtable keyword linecache reprlib types collections.abc tracemalloc gc math"
).split()
_HOSTS = [
    "dailybyte.example", "thepythonpost.example", "codechronicle.example", "stackgazette.example",
    "devweekly.example", "moduletimes.example", "bytesandbits.example", "syntaxherald.example",
    "runtimejournal.example", "kernelnews.example", "loopobserver.example", "heapreview.example",
]


def docstring_paragraphs(modules: tuple[str, ...] | list[str] = _MODULES) -> list[str]:
    """Prose paragraphs (>= 25 words, no code) from standard-library docstrings, in a fixed order."""
    paras, seen = [], set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in modules:
            try:
                mod = importlib.import_module(name)
            except Exception:  # a module missing on this build of Python
                continue
            objs = [mod] + [v for k, v in sorted(vars(mod).items())
                            if not k.startswith("_") and (inspect.isclass(v) or inspect.isfunction(v))]
            for obj in objs:
                for p in re.split(r"\n\s*\n", inspect.getdoc(obj) or ""):
                    p = " ".join(p.split())
                    if len(p.split()) >= 25 and p not in seen and not re.search(r">>>|::|[{}=]", p):
                        seen.add(p)
                        paras.append(p)
    return paras


@dataclass
class Page:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    headers: dict = field(default_factory=dict)


@dataclass
class DemoWeb:
    pages: dict[str, Page]           # absolute URL -> response
    dump: Path                       # RS_YYYY-MM.zst (the first month's, with months = 2)
    benchmark: Path                  # jsonl with a "text" field
    planted: dict                    # what was planted, for tests and the demo summary
    dumps: list = field(default_factory=list)   # every month's dump
    archive: ArchiveWeb | None = None            # the captures of dead links, for DemoProxy


def _html(host: str, title: str, paragraphs: list[str]) -> bytes:
    nav = " | ".join(f'<a href="/section/{s}">{s.title()}</a>' for s in
                     ("news", "tutorials", "releases", "opinion", "jobs", "events", "about", "contact"))
    body = "\n".join(f"<p>{p}</p>" for p in paragraphs)
    related = "".join(f'<li><a href="/story/{i}">More from {host}: story {i}</a></li>' for i in range(6))
    return (
        f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} - {host}</title></head>"
        f"<body><header><div class=\"logo\">{host}</div><nav>{nav}</nav></header>"
        f"<main><article><h1>{title}</h1><p class=\"byline\">By Staff Writer</p>{body}</article>"
        f"<aside><h3>Related</h3><ul>{related}</ul></aside></main>"
        f"<footer><p>Copyright 2026 {host}. All rights reserved.</p><p>We use cookies to improve "
        f"your experience. <a href=\"/privacy\">Privacy policy</a> | <a href=\"/terms\">Terms</a></p>"
        f"</footer></body></html>"
    ).encode()


def _title(paragraph: str) -> str:
    return " ".join(paragraph.split()[:7]).rstrip(".,;:")


def _edit(paragraphs: list[str], rng: random.Random, n_words: int) -> list[str]:
    """A near-duplicate: replace ``n_words`` words with other words."""
    words = [p.split() for p in paragraphs]
    for _ in range(n_words):
        i = rng.randrange(len(words))
        j = rng.randrange(len(words[i]))
        words[i][j] = rng.choice(["really", "notably", "indeed", "widely", "newly", "often"])
    return [" ".join(w) for w in words]


def build_demo_web(out_dir: Path, n_articles: int = 200, seed: int = 0, months: int = 1) -> DemoWeb:
    """The demo web and its dump. With ``months = 2`` the submissions are split into
    RS_2026-01 and RS_2026-02 (``dumps``): the last quarter of the articles and every
    republication arrive in February, as a refresh would see them. A republication's
    karma never exceeds its source's, so a run over both months keeps the same copies
    as two refreshes do."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    paras = docstring_paragraphs()
    per_article = 4
    n_bench = 12
    need = n_articles * per_article + n_bench + 6 * 3
    if len(paras) < need:
        raise ValueError(f"only {len(paras)} docstring paragraphs; lower n_articles to {len(paras) // 5}")
    bench = paras[-n_bench:]
    wiki_paras = paras[-n_bench - 18:-n_bench]
    pages: dict[str, Page] = {}
    links: list[tuple[str, int]] = []    # (url as submitted, score)
    planted: dict[str, list[str]] = {k: [] for k in (
        "articles", "short", "exact_dup", "near_dup", "wikipedia", "contaminated", "dead", "error",
        "not_html", "redirect", "robots")}

    articles = []
    for i in range(n_articles):
        host = _HOSTS[i % len(_HOSTS)]
        ps = paras[i * per_article:(i + 1) * per_article]
        url = f"http://{host}/{2026}/{i:04d}/{re.sub(r'[^a-z0-9]+', '-', _title(ps[0]).lower()).strip('-')}"
        articles.append((url, host, ps))
    # One article quotes a benchmark passage inside its own text.
    contaminated = articles[len(articles) // 2]
    contaminated[2].insert(2, bench[0])
    planted["contaminated"].append(contaminated[0])
    karma = {}
    for url, host, ps in articles:
        pages[url] = Page(200, _html(host, _title(ps[0]), ps))
        karma[url] = rng.randint(3, 200)
        links.append((url, karma[url]))
        planted["articles"].append(url)

    def republish(kind: str, src: tuple, n: int, edit_words: int):
        url0, host0, ps = src
        host = _HOSTS[(_HOSTS.index(host0) + 5) % len(_HOSTS)]
        url = f"http://{host}/syndicated/{kind}/{n:03d}"
        text = _edit(ps, rng, edit_words) if edit_words else ps
        pages[url] = Page(200, _html(host, _title(ps[0]), text))
        links.append((url, min(rng.randint(3, 60), karma[url0])))
        planted[kind].append(url)

    for n, src in enumerate(articles[1:n_articles // 10:2]):
        republish("exact_dup", src, n, 0)
    for n, src in enumerate(articles[2:n_articles // 5:3]):
        republish("near_dup", src, n, 2)     # ~160 words, 2 changed: Jaccard of word 5-grams ~0.88
    for n in range(6):
        ps = wiki_paras[n * 3:(n + 1) * 3]
        url = f"http://en.wikipedia.org/wiki/Demo_article_{n}"   # http: the demo proxy has no CONNECT
        pages[url] = Page(200, _html("en.wikipedia.org", _title(ps[0]), ps))
        links.append((url, rng.randint(3, 90)))
        planted["wikipedia"].append(url)
    for n in range(max(3, n_articles // 20)):
        host = _HOSTS[n % len(_HOSTS)]
        url = f"http://{host}/brief/{n}"
        pages[url] = Page(200, _html(host, "Brief", [" ".join(paras[n].split()[:30])]))
        links.append((url, rng.randint(3, 40)))
        planted["short"].append(url)
        dead = f"http://{host}/gone/{n}"
        pages[dead] = Page(404, b"<html><body>Not found</body></html>")
        links.append((dead, rng.randint(3, 40)))
        planted["dead"].append(dead)
    for n in range(2):
        url = f"http://{_HOSTS[n]}/broken/{n}"
        pages[url] = Page(500, b"<html><body>Internal error</body></html>")
        links.append((url, 10))
        planted["error"].append(url)
        doc = f"http://{_HOSTS[n]}/files/report{n}"
        pages[doc] = Page(200, b"%PDF-1.4\n%binary", content_type="application/pdf")
        links.append((doc, 10))
        planted["not_html"].append(doc)
        moved = f"http://{_HOSTS[n]}/old-link/{n}"
        pages[moved] = Page(301, b"", headers={"Location": articles[n + 3][0]})
        links.append((moved, 10))
        planted["redirect"].append(moved)

    # Dead links that the archives hold, with text no live page carries.
    texts = take_articles(docstring_paragraphs(ARCHIVE_MODULES), N_PAGES, exclude=set(paras))
    archive = plant_archived(pages, links, planted, texts, rng, _HOSTS, _html, _title, Page)

    # One host keeps its members' area out of crawlers' reach.
    pages[f"http://{_HOSTS[0]}/robots.txt"] = Page(200, b"User-agent: *\nDisallow: /members/\n",
                                                   content_type="text/plain")
    for n in range(2):
        url = f"http://{_HOSTS[0]}/members/{n}"
        pages[url] = Page(200, _html(_HOSTS[0], "Members only", paras[n * 2:n * 2 + 4]))
        links.append((url, 25))
        planted["robots"].append(url)

    dump = out_dir / "RS_2026-01.zst"
    late = set(planted["exact_dup"] + planted["near_dup"] + [u for u, _, _ in articles[3 * n_articles // 4:]]) \
        if months == 2 else set()
    _write_dump(dump, links, rng, late)
    benchmark = out_dir / "demo_benchmark.jsonl"
    benchmark.write_text("".join(json.dumps({"text": t}) + "\n" for t in bench))
    return DemoWeb(pages, dump, benchmark, planted, [dump] + ([out_dir / "RS_2026-02.zst"] if months == 2 else []),
                   archive)


def _submission(i: int, url: str, score: int, **extra) -> dict:
    host = urlsplit(url).hostname or ""
    return {
        "id": f"demo{i:05d}", "url": url, "domain": host, "score": score, "created_utc": 1767225600 + i * 3600,
        "subreddit": ["programming", "python", "technology", "news"][i % 4], "title": f"Link {i}",
        "is_self": False, "over_18": False, "num_comments": i % 50, "author": f"user{i % 97}",
        "selftext": "", "permalink": f"/r/demo/comments/demo{i:05d}/", **extra,
    }


def _write_dump(path: Path, links: list[tuple[str, int]], rng: random.Random, late: set[str] = frozenset()) -> None:
    """``path``, and with ``late`` URLs the next month's dump beside it holding their
    submissions (a month later)."""
    lines, i = [], 0
    for url, score in links:
        lines.append(_submission(i, url, score)); i += 1
        if rng.random() < 0.15:     # the same URL again, with tracking parameters
            lines.append(_submission(i, url + "?utm_source=reddit&utm_medium=social", rng.randint(0, 5))); i += 1
    for n in range(8):
        lines.append(_submission(i, f"http://lowkarma.example/post/{n}", n % 3)); i += 1
        lines.append(_submission(i, f"https://www.reddit.com/r/demo/comments/x{n}/", 50,
                                 is_self=True, domain="self.demo")); i += 1
        lines.append(_submission(i, f"http://{_HOSTS[n]}/nsfw/{n}", 80, over_18=True)); i += 1
        lines.append(_submission(i, f"https://i.imgur.com/pic{n}.jpg", 300)); i += 1
    rng.shuffle(lines)
    month2 = [dict(x, created_utc=x["created_utc"] + 31 * 86400) for x in lines if x["url"].split("?")[0] in late]
    lines = [x for x in lines if x["url"].split("?")[0] not in late]
    raw = "".join(json.dumps(s) + "\n" for s in lines).encode()
    raw += b'{"id": "broken", "url": "http://trunc\n' + b"not json at all\n"
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31)
    path.write_bytes(zstandard.ZstdCompressor(compression_params=params).compress(raw))
    if late:
        raw2 = "".join(json.dumps(s) + "\n" for s in month2).encode()
        path.with_name("RS_2026-02.zst").write_bytes(zstandard.ZstdCompressor(compression_params=params).compress(raw2))


LAST_MODIFIED = "Thu, 01 Jan 2026 00:00:00 GMT"


class _Handler(BaseHTTPRequestHandler):
    pages: dict[str, Page] = {}
    archive: ArchiveWeb
    requests: list[str] = []
    archive_requests: list[tuple[str, str]] = []
    not_modified: list[str] = []
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's naming)
        url = self.path if self.path.startswith("http") else f"http://{self.headers.get('Host')}{self.path}"
        url = url.split("#", 1)[0]
        parts = urlsplit(url)
        if service := ARCHIVE_HOSTS.get(parts.hostname or ""):     # the archives: path and query as sent
            self.path = url[len(f"{parts.scheme}://{parts.netloc}"):] or "/"
            self.archive_requests.append((service, self.path))
            return self.archive.handle(service, self)
        self.requests.append(url)
        page = self.pages.get(url) or self.pages.get(url.split("?", 1)[0])
        if page is None:
            page = Page(404, b"<html><body>No such page</body></html>")
        if page.status == 200:     # validators, and conditional GET (RFC 9110 13.1.2)
            etag = f'"{hashlib.sha1(page.body).hexdigest()[:16]}"'
            if etag in (self.headers.get("If-None-Match") or ""):
                self.not_modified.append(url)
                self.send_response(304)
                self.send_header("ETag", etag)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            page = Page(page.status, page.body, page.content_type,
                        {"ETag": etag, "Last-Modified": LAST_MODIFIED, **page.headers})
        self.send_response(page.status)
        self.send_header("Content-Type", page.content_type)
        self.send_header("Content-Length", str(len(page.body)))
        for k, v in page.headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(page.body)

    def send(self, status: int, body: bytes, ctype: str, headers=()) -> None:
        """A whole response (``ArchiveWeb.handle`` answers through this)."""
        send_whole(self, status, body, ctype, headers)

    def do_CONNECT(self):  # noqa: N802 -- the demo web is plain http only
        self.send_error(501, "CONNECT not supported by the demo proxy")

    def log_message(self, *args):  # quiet
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):  # a client hanging up is not an error here
        pass


class DemoProxy:
    """A loopback HTTP forward proxy that answers for every demo host from memory, and for
    the web archives' hosts (``archiveweb.HOSTS``, plain http) from ``archive``: the demo
    web's captures, or without it archives that hold nothing."""

    def __init__(self, pages: dict[str, Page], archive: ArchiveWeb | None = None):
        self.requests: list[str] = []          # every demo-web URL requested through the proxy, in order
        self.archive_requests: list[tuple[str, str]] = []   # (archive service, path with query), in order
        self.not_modified: list[str] = []      # URLs answered 304 to a conditional GET
        self.archive = archive or ArchiveWeb(DEMO_CRAWLS, listen=False)
        handler = type("DemoHandler", (_Handler,), {"pages": pages, "requests": self.requests,
                                                    "not_modified": self.not_modified, "archive": self.archive,
                                                    "archive_requests": self.archive_requests})
        self.server = _Server(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "DemoProxy":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

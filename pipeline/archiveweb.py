"""A loopback simulation of the web archives that dead-link recovery asks: Common Crawl's
index server and data server, and the Wayback Machine, each a real threaded HTTP server
on 127.0.0.1 speaking the real formats (see ``stages.captures`` for them and their
sources). For tests and the demo: ``listen=False`` opens no ports, and a forward proxy
(``pipeline.demoweb.DemoProxy``) hands it the requests for the archives' real host names
(``HOSTS``) through ``handle``.

- CC index: ``/collinfo.json`` (the crawls, with ``from``/``to``), ``/{crawl}-index?url=U
  &output=json`` (NDJSON, exact URL match), a 404 with ``{"message": "No Captures found
  for: U"}`` on a miss.
- CC data: WARC files written here with FastWARC, one gzip member per record, served
  with ``Range: bytes=a-b`` (206 and Content-Range) or whole (200).
- Wayback: ``/cdx/search/cdx`` (url, output=json, filter=[!]field:regex, from, to,
  limit=N or -N; header row first, ``[]`` when empty) and ``/web/{ts}id_/{url}`` (the
  payload as archived, the original headers as ``X-Archive-Orig-*``; another timestamp
  of the same URL redirects with 302 to the nearest one, as the Wayback Machine does).

Every request is logged in ``log`` as (service, path with query). ``throttle(service, n,
retry_after)`` answers the next n requests of a service with 429 and Retry-After.

Usage::

    with ArchiveWeb() as web:
        web.add_capture("http://gone.example/a", html, when_unix=1487900000)
        client = ArchiveClient(session, **web.endpoints(), allow_private=True)
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import threading
import zlib
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from fastwarc.warc import WarcRecord, WarcRecordType

# Four crawls of 2017 with their real spans (index.commoncrawl.org/collinfo.json).
CRAWLS = [
    ("CC-MAIN-2017-17", "2017-04-22T20:21:50", "2017-04-30T23:26:23"),
    ("CC-MAIN-2017-13", "2017-03-22T10:12:34", "2017-03-30T23:01:03"),
    ("CC-MAIN-2017-09", "2017-02-19T02:08:36", "2017-03-01T10:17:15"),
    ("CC-MAIN-2017-04", "2017-01-16T12:47:48", "2017-01-24T18:04:43"),
]
SERVICES = ("cc_index", "cc_data", "wayback")
# The archives' host names; a proxy that answers for them speaks plain http (no CONNECT).
HOSTS = {"index.commoncrawl.org": "cc_index", "data.commoncrawl.org": "cc_data", "web.archive.org": "wayback"}


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso).replace(tzinfo=timezone.utc).timestamp()


def _ts14(unix: float) -> str:
    return datetime.fromtimestamp(int(unix), timezone.utc).strftime("%Y%m%d%H%M%S")


def urlkey(url: str) -> str:
    """A SURT-like key (``com,example)/path``): what the indexes sort by; shown, not used."""
    p = urlsplit(url)
    host = ",".join(reversed((p.hostname or "").removeprefix("www.").split(".")))
    return f"{host}){p.path or '/'}" + (f"?{p.query}" if p.query else "")


def _digest(body: bytes) -> str:
    return base64.b32encode(hashlib.sha1(body).digest()).decode()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):   # clients hanging up are expected
        pass


def send_whole(h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str, headers=()) -> None:
    """Answer the request ``h`` serves with one whole response (``ArchiveWeb.handle``
    answers through a handler's ``send``, which calls this)."""
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    for k, v in headers:
        h.send_header(k, v)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)


class ArchiveWeb:
    """The three archive services on loopback ports; ``endpoints()`` gives their bases."""

    def __init__(self, crawls: list[tuple[str, str, str]] = CRAWLS, listen: bool = True):
        self.crawls = [{"id": c, "name": f"{c} Index", "from": a, "to": b} for c, a, b in crawls]
        self.log: list[tuple[str, str]] = []
        self.cc_rows: dict[str, list[dict]] = {c["id"]: [] for c in self.crawls}
        self.files: dict[str, bytearray] = {}      # data server path -> WARC bytes
        self.wb_rows: list[list[str]] = []         # Wayback CDX rows (WAYBACK_FIELDS)
        self.wb_pages: dict[tuple[str, str], tuple[int, list[tuple[str, str]], bytes]] = {}
        self.throttles: dict[str, list] = {}       # service -> [answers left, Retry-After]
        self.lock = threading.Lock()
        self.servers = {name: _Server(("127.0.0.1", 0), self._handler(name)) for name in SERVICES} if listen else {}
        if listen:
            self.urls = {name: f"http://127.0.0.1:{s.server_address[1]}" for name, s in self.servers.items()}
        else:                                      # reached through a proxy, under the real names
            self.urls = {name: f"http://{host}" for host, name in HOSTS.items()}

    def endpoints(self) -> dict[str, str]:
        """Keyword arguments for ``ArchiveClient``."""
        return {"cc_index": self.urls["cc_index"], "cc_data": self.urls["cc_data"], "wayback": self.urls["wayback"]}

    def __enter__(self) -> "ArchiveWeb":
        for s in self.servers.values():
            threading.Thread(target=s.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        for s in self.servers.values():
            s.shutdown()
            s.server_close()

    def requests(self, service: str) -> list[str]:
        with self.lock:
            return [path for name, path in self.log if name == service]

    def throttle(self, service: str, times: int, retry_after: str = "1") -> None:
        self.throttles[service] = [times, retry_after]

    # --- captures -----------------------------------------------------------------------

    def crawl_at(self, when_unix: float) -> str:
        """The crawl running at ``when_unix``, else the nearest."""
        return min(self.crawls, key=lambda c: max(_unix(c["from"]) - when_unix, when_unix - _unix(c["to"]), 0))["id"]

    def add_capture(self, url: str, html: bytes, when_unix: float, source: str = "commoncrawl", status: int = 200,
                    mime: str = "text/html", crawl: str | None = None, headers: list[tuple[str, str]] | None = None,
                    content_encoding: str | None = None) -> dict:
        """Archive ``html`` as ``url``'s response at ``when_unix``; the index row it gets.
        ``content_encoding``: store the payload gzip-compressed under that header, as old
        crawls sometimes did."""
        ts = _ts14(when_unix)
        headers = list(headers or [("Content-Type", f"{mime}; charset=utf-8" if mime.startswith("text/") else mime)])
        if source == "wayback":
            self.wb_rows.append([urlkey(url), ts, url, mime, str(status), _digest(html), str(len(html))])
            self.wb_rows.sort(key=lambda r: (r[0], r[1]))
            self.wb_pages[(ts, url)] = (status, headers, html)
            return dict(zip(("urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length"),
                            self.wb_rows[-1]))
        crawl = crawl or self.crawl_at(when_unix)
        payload = html
        if content_encoding == "gzip":
            payload = zlib.compress(html, 9, wbits=16 + zlib.MAX_WBITS)
            headers.append(("Content-Encoding", "gzip"))
        block = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Status'}\r\n".encode()
        block += "".join(f"{k}: {v}\r\n" for k, v in headers + [("Content-Length", str(len(payload)))]).encode()
        block += b"\r\n" + payload
        rec = WarcRecord()
        rec.init_headers(record_type=WarcRecordType.response)
        rec.headers["WARC-Date"] = datetime.fromtimestamp(int(when_unix), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        rec.headers["WARC-Target-URI"] = url
        rec.headers["Content-Type"] = "application/http; msgtype=response"
        rec.set_bytes_content(block)
        buf = io.BytesIO()
        rec.write(buf, checksum_data=True)
        filename, offset, length = self.add_member(crawl, zlib.compress(buf.getvalue(), 6, wbits=16 + zlib.MAX_WBITS))
        row = {"urlkey": urlkey(url), "timestamp": ts, "url": url, "mime": mime, "mime-detected": mime,
               "status": str(status), "digest": _digest(html), "length": str(length), "offset": str(offset),
               "filename": filename, "languages": "eng", "encoding": "UTF-8"}
        self.add_cc_row(crawl, row)
        return row

    def add_member(self, crawl: str, member: bytes) -> tuple[str, int, int]:
        """Append raw bytes (one gzip member) to the crawl's WARC file: (filename, offset, length)."""
        filename = f"crawl-data/{crawl}/segments/1487501170000.0/warc/{crawl}-00000.warc.gz"
        with self.lock:
            data = self.files.setdefault(filename, bytearray())
            offset = len(data)
            data += member
        return filename, offset, len(member)

    def add_cc_row(self, crawl: str, row: dict) -> None:
        """An index row as given (to plant hostile filenames)."""
        with self.lock:
            self.cc_rows.setdefault(crawl, []).append(row)
            self.cc_rows[crawl].sort(key=lambda r: (r.get("urlkey", ""), r.get("timestamp", "")))

    # --- the servers --------------------------------------------------------------------

    def _handler(self, service: str):
        web = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 (http.server's naming)
                web.handle(service, self)

            def send(self, status: int, body: bytes, ctype: str, headers=()):
                send_whole(self, status, body, ctype, headers)

            def log_message(self, *args):  # quiet
                pass

        return Handler

    def handle(self, service: str, h) -> None:
        """Answer one GET to ``service``: ``h`` is a ``BaseHTTPRequestHandler`` whose
        ``path`` is the path with query (not the absolute form a proxy receives) and that
        has ``send(status, body, content_type, headers)``."""
        with self.lock:
            self.log.append((service, h.path))
            left = self.throttles.get(service)
            throttled = bool(left and left[0] > 0)
            if throttled:
                left[0] -= 1
        if throttled:
            return h.send(429, b"Too Many Requests", "text/plain", [("Retry-After", left[1])])
        getattr(self, f"_{service}")(h)

    def _cc_index(self, h) -> None:
        parts = urlsplit(h.path)
        if parts.path == "/collinfo.json":
            base = self.urls["cc_index"]
            rows = [{"id": c["id"], "name": c["name"], "timegate": f"{base}/{c['id']}/",
                     "cdx-api": f"{base}/{c['id']}-index", "from": c["from"], "to": c["to"]} for c in self.crawls]
            return h.send(200, json.dumps(rows, indent=2).encode(), "application/json")
        m = re.fullmatch(r"/(.+)-index", parts.path)
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        url = q.get("url", "")
        with self.lock:
            rows = [r for r in self.cc_rows.get(m.group(1) if m else "", []) if r.get("url") == url]
        if not rows:
            return h.send(404, json.dumps({"message": f"No Captures found for: {url}"}).encode(), "application/json")
        h.send(200, "".join(json.dumps(r) + "\n" for r in rows).encode(), "text/x-ndjson")

    def _cc_data(self, h) -> None:
        with self.lock:
            data = self.files.get(unquote(urlsplit(h.path).path).lstrip("/"))
            data = bytes(data) if data is not None else None
        if data is None:
            return h.send(404, b"<Error><Code>NoSuchKey</Code></Error>", "application/xml")
        m = re.fullmatch(r"bytes=(\d+)-(\d+)", h.headers.get("Range", ""))
        if not m:
            return h.send(200, data, "application/octet-stream")
        a, b = int(m.group(1)), min(int(m.group(2)), len(data) - 1)
        if a > b:
            return h.send(416, b"", "application/xml", [("Content-Range", f"bytes */{len(data)}")])
        h.send(206, data[a:b + 1], "application/octet-stream", [("Content-Range", f"bytes {a}-{b}/{len(data)}")])

    def _wayback(self, h) -> None:
        parts = urlsplit(h.path)
        if parts.path == "/cdx/search/cdx":
            return self._wayback_cdx(h, parse_qs(parts.query))
        m = re.fullmatch(r"/web/(\d{1,14})id_/(.+)", h.path, re.S)
        if not m:
            return h.send(404, b"not found", "text/plain")
        ts, url = m.groups()
        with self.lock:
            page = self.wb_pages.get((ts, url))
            others = sorted(t for (t, u) in self.wb_pages if u == url)
        if page is None and others:            # the nearest capture of the URL, as the Wayback does
            near = min(others, key=lambda t: abs(int(t) - int(ts.ljust(14, "0"))))
            return h.send(302, b"", "text/plain", [("Location", f"/web/{near}id_/{url}")])
        if page is None:
            return h.send(404, b"not archived", "text/html")
        status, headers, body = page
        ctype = next((v for k, v in headers if k.lower() == "content-type"), "text/html")
        orig = [(f"X-Archive-Orig-{k}", v) for k, v in headers if k.lower() != "content-type"]
        memento = datetime.strptime(ts, "%Y%m%d%H%M%S").strftime("%a, %d %b %Y %H:%M:%S GMT")
        h.send(status, body, ctype, orig + [("X-Archive-Orig-Content-Length", str(len(body))),
                                            ("Memento-Datetime", memento)])

    def _wayback_cdx(self, h, q: dict[str, list[str]]) -> None:
        fields = ("urlkey", "timestamp", "original", "mimetype", "statuscode", "digest", "length")
        url = q.get("url", [""])[-1]
        lo = q.get("from", [""])[-1].ljust(14, "0")
        hi = q.get("to", ["9"])[-1].ljust(14, "9")
        with self.lock:
            rows = [r for r in self.wb_rows if r[2] == url and lo <= r[1] <= hi]
        for f in q.get("filter", []):
            neg, f = f.startswith("!"), f.lstrip("!")
            name, _, rx = f.partition(":")
            if name in fields:
                rows = [r for r in rows if bool(re.fullmatch(rx, r[fields.index(name)])) != neg]
        limit = int(q.get("limit", ["0"])[-1] or 0)
        rows = rows[:limit] if limit > 0 else rows[limit:] if limit < 0 else rows
        if q.get("output", [""])[-1] == "json":
            body = json.dumps([list(fields)] + rows) if rows else "[]"
            return h.send(200, body.encode(), "application/json")
        h.send(200, "".join(" ".join(r) + "\n" for r in rows).encode(), "text/plain")

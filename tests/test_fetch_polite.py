"""fetch's politeness and correctness against a loopback server that records when each
request arrived and how many were in flight: Retry-After, oversized robots.txt, limits
per site and per address, the submitted URL form, and timing without waits."""

from __future__ import annotations

import math
import socket
import threading
import time
from email.utils import formatdate

import aiohttp
import pyarrow as pa
import pytest
from warcio.archiveiterator import ArchiveIterator

from webtext.stages import fetch
from webtext.stages import urls as U

from conftest import LoopbackHandler, LoopbackServer, run_fetch, url_table

PAGE = b"<html><head><title>T</title></head><body><p>" + b"word " * 200 + b"</p></body></html>"
HTML = {"Content-Type": "text/html; charset=utf-8"}
TEXT = {"Content-Type": "text/plain"}


class Web(LoopbackServer):
    """Answers ``pages[path]`` (path with its query; a list answers its items in turn, the
    last one for ever; anything else is a 404) after ``delay`` seconds. Logs (path, Host,
    wall-clock arrival) and counts the requests in flight, as of their arrival until their
    answer is sent."""

    def __init__(self, delay: float = 0.0):
        self.pages: dict[str, list | tuple] = {}
        self.log: list[tuple[str, str, float]] = []
        self.in_flight = self.max_in_flight = 0
        lock, web = threading.Lock(), self

        class Handler(LoopbackHandler):

            def do_GET(self):  # noqa: N802
                path = self.path
                if path.startswith("http"):   # absolute-form: we are the proxy
                    path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
                with lock:
                    web.log.append((path, self.headers.get("Host", ""), time.time()))
                    web.in_flight += 1
                    web.max_in_flight = max(web.max_in_flight, web.in_flight)
                    answers = web.pages.get(path, (404, {}, b"not found"))
                    status, headers, body = answers.pop(0) if isinstance(answers, list) and len(answers) > 1 \
                        else answers[0] if isinstance(answers, list) else answers
                time.sleep(delay)
                with lock:
                    web.in_flight -= 1    # before the answer: the client may send the next at once
                self.respond(status, headers() if callable(headers) else headers, body)

        self.start(Handler)

    def times(self, path: str) -> list[float]:
        return [t for p, _, t in self.log if p == path]


@pytest.fixture
def web_factory():
    webs = []

    def make(delay: float = 0.0) -> Web:
        webs.append(Web(delay))
        return webs[-1]

    yield make
    for w in webs:
        w.close()


_fetch = run_fetch


@pytest.mark.parametrize("form", ["seconds", "http-date"])
def test_retry_after_holds_the_whole_host(tmp_path, web_factory, form):
    """A 429 with Retry-After: the retry comes no sooner than asked, and no other URL of
    the host is requested before then either."""
    w = web_factory()
    due: list[float] = []

    def limited():                # the wall-clock time the server asks us to wait until
        now = time.time()
        if form == "seconds":
            due.append(now + 2)
            return {"Retry-After": "2"}
        due.append(math.ceil(now) + 1.0)     # an HTTP-date has whole seconds: 1-2 s ahead
        return {"Retry-After": formatdate(due[-1], usegmt=True)}

    w.pages.update({"/a": [(429, limited, b"slow down"), (200, HTML, PAGE)],
                    "/b": (200, HTML, PAGE), "/c": (200, HTML, PAGE)})
    urls = [f"{w.base}/{p}" for p in "abc"]
    stats, log, _ = _fetch(tmp_path, url_table(urls), retries=1, host_delay_s=0.2, concurrency=4)
    assert stats.records_out == 3 and log[urls[0]]["tries"] == 2
    first, second = w.times("/a")
    assert second >= due[0] - 0.01                       # at least what the server asked
    later = [t for p, _, t in w.log if p in ("/b", "/c") and t > first]
    assert later, "no other URL of the host was requested after the 429"
    assert min(later) >= due[0] - 0.01                   # the whole host waited


def test_oversized_robots_txt_is_read_up_to_500_kib(tmp_path, web_factory):
    """A 10 MB robots.txt (over max_bytes): its first 500 KiB are obeyed, the rest ignored."""
    w = web_factory()
    head = b"User-agent: *\nDisallow: /private/\n"
    filler = b"# " + b"x" * 60 + b"\n"
    tail = b"Disallow: /late/\n"                          # beyond 500 KiB: ignored
    robots = head + filler * (10_000_000 // len(filler)) + tail
    w.pages.update({"/robots.txt": (200, TEXT, robots), "/private/x": (200, HTML, PAGE),
                    "/public": (200, HTML, PAGE), "/late/y": (200, HTML, PAGE)})
    urls = [f"{w.base}{p}" for p in ("/private/x", "/public", "/late/y")]
    stats, log, _ = _fetch(tmp_path, url_table(urls), max_bytes=5 * 1024 * 1024)
    assert log[urls[0]]["error"] == "robots_disallowed"
    assert log[urls[1]]["error"] is None and log[urls[2]]["error"] is None
    assert "/private/x" not in [p for p, _, _ in w.log]


def test_per_domain_limit_spans_the_hosts_of_a_site(tmp_path, web_factory):
    """Many *.blogspot.com hosts (blogspot.com is a private-section suffix, so each blog is
    its own registered domain): they share one per_domain limit. Served through a proxy."""
    w = web_factory(delay=0.15)
    w.pages["/p1"] = w.pages["/p2"] = (200, HTML, PAGE)
    hosts = [f"blog{i}.blogspot.com" for i in range(8)]
    assert len({U.registered_domain(h) for h in hosts}) == 8
    urls = [f"http://{h}/p{j}" for h in hosts for j in (1, 2)]
    stats, _, _ = _fetch(tmp_path, url_table(urls), allow_private=False, proxy=w.base,
                         concurrency=16, per_host=2, per_domain=3, per_ip=1)
    assert stats.records_out == 16
    assert len({h for _, h, _ in w.log}) == 8 and len(w.log) == 32           # robots.txt and tdmrep.json too
    assert w.max_in_flight == 3                    # busy up to the limit, never above it


class _Names(aiohttp.abc.AbstractResolver):
    """DNS for the test: every name resolves to 127.0.0.1 (in place of SafeResolver, whose
    arguments it accepts and ignores)."""

    def __init__(self, *trusted):
        pass

    async def resolve(self, host, port=0, family=socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                 "proto": 0, "flags": socket.AI_NUMERICHOST}]

    async def close(self):
        pass


def test_per_ip_limit_spans_names_of_one_address(tmp_path, web_factory, monkeypatch):
    """Eight unrelated names (eight sites) on one address share one per_ip limit."""
    w = web_factory(delay=0.15)
    w.pages["/p1"] = w.pages["/p2"] = (200, HTML, PAGE)
    monkeypatch.setattr(fetch, "SafeResolver", _Names)
    port = w.base.rsplit(":", 1)[1]
    urls = [f"http://site{i}.test:{port}/p{j}" for i in range(8) for j in (1, 2)]
    stats, _, _ = _fetch(tmp_path, url_table(urls), allow_private=False,
                         concurrency=16, per_host=2, per_domain=16, per_ip=2)
    assert stats.records_out == 16 and len({h for _, h, _ in w.log}) == 8
    assert w.max_in_flight == 2


def _with_fetch_url(table: pa.Table, values: list[str | None]) -> pa.Table:
    """``table`` with the URLS column fetch_url set to ``values`` (added if the schema lacks it)."""
    col = pa.array(values, pa.string())
    if "fetch_url" in table.column_names:
        return table.set_column(table.column_names.index("fetch_url"), "fetch_url", col)
    return table.append_column("fetch_url", col)


def test_fetch_requests_the_submitted_url(tmp_path, web_factory):
    """The server answers only the query as submitted (order and empty parameters kept);
    the fetch log keeps the normalized url as its key, the WARC names what was requested."""
    w = web_factory()
    raw_path = "/board/list.php?idx=8576&page=1&bc=03&mc=08&find=&sch_date="
    w.pages[raw_path] = (200, HTML, PAGE)
    raw = f"{w.base}{raw_path}"
    url = U.normalize(raw)
    assert url != raw
    w.pages["/old"] = (200, HTML, PAGE)
    table = _with_fetch_url(url_table([url, f"{w.base}/old"]), [raw, None])    # None: as old frontiers
    stats, log, warcs = _fetch(tmp_path, table)
    assert stats.records_out == 2, log
    assert log[url]["url_id"] == U.url_id(url) and log[url]["final_url"] == raw
    with open(warcs[0], "rb") as f:
        uris = {r.rec_headers.get_header("WARC-Target-URI") for r in ArchiveIterator(f)}
    assert uris == {raw, f"{w.base}/old"}
    assert [p for p, _, _ in w.log if p.startswith("/board")] == [raw_path]


def test_elapsed_is_the_server_and_waits_are_apart(tmp_path, web_factory):
    """host_delay_s = 1 and three URLs on one host: each request is quick, the waits are not."""
    w = web_factory()
    for i in range(3):
        w.pages[f"/p{i}"] = (200, HTML, PAGE)
    urls = [f"{w.base}/p{i}" for i in range(3)]
    stats, log, _ = _fetch(tmp_path, url_table(urls), host_delay_s=1.0, concurrency=3)
    assert stats.records_out == 3
    assert [r["elapsed_ms"] < 500 for r in log.values()] == [True] * 3, log
    waits = sorted(r["wait_ms"] for r in log.values())
    assert waits[0] >= 900 and waits[1] >= 1900 and waits[2] >= 2900, waits   # after robots.txt, 1 s apart

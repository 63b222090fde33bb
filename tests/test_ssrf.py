"""SSRF (issue #21): hosts that a browser or a forward proxy reads as a non-public address
are refused before any request, directly and behind a proxy, also after a redirect.

The host parser (``stages.hosts``) is compared with the WHATWG URL Standard's outputs
(https://url.spec.whatwg.org/#host-parsing; each row was checked against Node's URL).
The fetch tests run a shard with ``allow_private=False`` against a loopback forward
proxy that logs the target of every request it receives, or directly against the
loopback web server with a public-looking name resolved to it."""

import ipaddress
import socket
from http.server import BaseHTTPRequestHandler
from urllib.parse import urlsplit

import pytest

from webtext.stages import fetch
from webtext.stages.http import SafeResolver, check_target

from conftest import LoopbackServer, Route, run_fetch, url_table

try:
    from webtext.stages import hosts
except ImportError:        # before the fix: the parser tests fail, the fetch tests still run
    hosts = None

PAGE = b"<html><head><title>T</title></head><body><p>" + b"word " * 50 + b"</p></body></html>"

# Hosts a proxy or browser reads as a non-public address: 169.254.169.254 (cloud
# metadata), 127.0.0.1, 0.0.0.0 and localhost, in the forms of the fault injection.
PRIVATE = ["2852039166", "0xa9.0xfe.0xa9.0xfe", "0251.0376.0251.0376", "169.254.43518", "localhost.",
           "0x7f.1", "127.1", "017700000001", "%31%32%37.0.0.1", "0XA9.0XFE.0XA9.0XFE",
           "１２７.０.０.１", "LOCALHOST", "foo.localhost.", "0", "[::1]", "[::ffff:127.0.0.1]",
           "[::ffff:7f00:1]", "[::ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]"]
# Hosts the WHATWG parser rejects: an IPv4-looking host with a part out of range.
BAD = ["1.2.3.999", "4294967296", "0x100000000"]
# Public hosts, reached through the proxy.
PUBLIC = {"example.com": "example.com", "8.8.8.8": "8.8.8.8", "134744072": "134744072",
          "xn--bcher-kva.example": "xn--bcher-kva.example", "bücher.example": "xn--bcher-kva.example"}


# --- the host parser -------------------------------------------------------------------

SPEC = [   # host as written -> the URL Standard's serialized host (None: failure)
    ("2852039166", "169.254.169.254"), ("0xa9.0xfe.0xa9.0xfe", "169.254.169.254"),
    ("0XA9.0XFE.0XA9.0XFE", "169.254.169.254"), ("0251.0376.0251.0376", "169.254.169.254"),
    ("169.254.43518", "169.254.169.254"), ("0x7f.1", "127.0.0.1"), ("127.1", "127.0.0.1"),
    ("017700000001", "127.0.0.1"), ("%31%32%37.0.0.1", "127.0.0.1"), ("１２７.０.０.１", "127.0.0.1"),
    ("１２７。０．０｡１", "127.0.0.1"), ("0x7f.0.0.0x1.", "127.0.0.1"), ("0", "0.0.0.0"), ("0x", "0.0.0.0"),
    ("1.2.3.4.", "1.2.3.4"), ("1.0xffffff", "1.255.255.255"), ("4294967295", "255.255.255.255"),
    ("8.8.8.8", "8.8.8.8"), ("134744072", "8.8.8.8"),
    ("localhost.", "localhost."), ("LOCALHOST", "localhost"), ("ＬＯＣＡＬＨＯＳＴ", "localhost"),
    ("example.com", "example.com"), ("a_b.example", "a_b.example"), ("foo.0xg", "foo.0xg"),
    ("1.2.3.4..", "1.2.3.4.."), ("xn--bcher-kva.example", "xn--bcher-kva.example"),
    ("XN--BCHER-KVA.example", "xn--bcher-kva.example"), ("bücher.example", "xn--bcher-kva.example"),
    ("ß.de", "xn--zca.de"), ("%41", "a"),
    ("[::1]", "[::1]"), ("[::ffff:127.0.0.1]", "[::ffff:7f00:1]"), ("[::ffff:7f00:1]", "[::ffff:7f00:1]"),
    ("[0:0:0:0:0:ffff:169.254.169.254]", "[::ffff:a9fe:a9fe]"), ("[::1.2.3.4]", "[::102:304]"),
    ("[1:2:3:4:5:6:7:8]", "[1:2:3:4:5:6:7:8]"),
    # failures: out-of-range or non-numeric parts, too many parts, bad IPv6, forbidden code points
    ("1.2.3.999", None), ("4294967296", None), ("0x100000000", None), ("1.0x1000000", None),
    ("256.1", None), ("1.2.3.4.5", None), ("1..2", None), ("09", None), ("1.2.3.08", None),
    ("foo.09", None), ("foo.0x", None), ("[::1", None), ("[1::2::3]", None), ("[:1]", None),
    ("[::1.2.3.04]", None), ("[::1.2.3]", None), ("[1:2:3:4:5:6:7:8:9]", None),
    ("a^b", None), ("a|b", None), ("a<b", None), ("exa%mple", None), ("%00", None), ("%zz", None),
    ("xn--zz.com", None), ("xn--", None), ("%e2%80%8d", None),
]


def _serialize(parsed) -> str | None:
    if isinstance(parsed, ipaddress.IPv6Address):
        return f"[{parsed.compressed}]"
    return None if parsed is None else str(parsed)


@pytest.mark.parametrize("host,expected", SPEC)
def test_parse_host_as_the_url_standard(host, expected):
    assert hosts is not None, "stages.hosts is missing"
    assert _serialize(hosts.parse_host(host)) == expected


@pytest.mark.parametrize("host,verdict", [*((h, "private_address") for h in PRIVATE),
                                          *((h, "bad_url") for h in BAD),
                                          *((h, None) for h in PUBLIC),
                                          ("0.0.0.0", "private_address"), ("localhost", "private_address"),
                                          ("a.b.localhost", "private_address"), ("10.1.2.3", "private_address"),
                                          ("100.64.0.1", "private_address"), ("224.0.0.1", "private_address"),
                                          ("240.0.0.1", "private_address"), ("[fe80::1]", "private_address"),
                                          ("[64:ff9b::a9fe:a9fe]", "private_address"),
                                          ("[2002:7f00:1::]", "private_address"), ("[::ffff:8.8.8.8]", None),
                                          ("[2606:4700::1111]", None), ("localhost.example", None)])
def test_host_verdict(host, verdict):
    assert hosts is not None, "stages.hosts is missing"
    assert hosts.host_verdict(host) == verdict


def test_domain_to_ascii_without_the_idna_package(monkeypatch):
    """The fallback to the standard library's IDNA codec maps the same hosts."""
    assert hosts is not None, "stages.hosts is missing"
    import encodings.idna

    monkeypatch.setattr(hosts, "idna", None)
    monkeypatch.setattr(hosts, "_idna2003", encodings.idna, raising=False)
    for host, expected in [("１２７.０.０.１", "127.0.0.1"), ("ＬＯＣＡＬＨＯＳＴ。", "localhost."),
                           ("bücher.example", "xn--bcher-kva.example"), ("xn--zz.com", None), ("\ufffd", None)]:
        assert _serialize(hosts.parse_host(host)) == expected, host


def test_check_target_reads_the_host_of_a_url():
    for h in PRIVATE:
        for url in (f"http://{h}/x", f"https://{h}:8443/x", f"http://user:pw@{h}:80/x"):
            assert check_target(url, allow_private=False) == "private_address", url
            assert check_target(url, allow_private=True) is None, url
    for h in BAD:
        assert check_target(f"http://{h}/", allow_private=False) == "bad_url"
        assert check_target(f"http://{h}/", allow_private=True) == "bad_url"
    for h in PUBLIC:
        assert check_target(f"http://{h}/x", allow_private=False) is None
    assert check_target("http://127.0.0.1@example.com/", allow_private=False) is None   # userinfo
    assert check_target("http://example.com@127.0.0.1/", allow_private=False) == "private_address"
    assert check_target("http://[::1/", allow_private=False) == "bad_url"
    assert check_target("ftp://example.com/", allow_private=False) == "bad_scheme"


# --- fetch through a logging forward proxy, and directly ---------------------------------

class LoggingProxy(LoopbackServer):
    """A forward proxy on 127.0.0.1 that answers every request itself, from ``routes`` by
    path, and logs (method, target) of each: ``GET http://host/path``, ``CONNECT host:443``.
    Headers are sent as UTF-8, so a Location may hold any host."""

    def __init__(self):
        self.routes: dict[str, Route] = {}
        self.log: list[tuple[str, str]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802
                proxy.log.append(("GET", self.path))
                route = proxy.routes.get(urlsplit(self.path).path or "/", Route(404, b"not found"))
                head = [f"HTTP/1.1 {route.status} X", f"Content-Length: {len(route.body)}",
                        *(f"{k}: {v}" for k, v in route.headers.items())]
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode("utf-8") + route.body)

            def do_CONNECT(self):  # noqa: N802
                proxy.log.append(("CONNECT", self.path))
                self.wfile.write(b"HTTP/1.1 502 No\r\nContent-Length: 0\r\n\r\n")

            def log_message(self, *a):
                pass

        self.start(Handler)

    def hosts(self) -> set[str]:
        return {urlsplit(t).netloc if m == "GET" else t for m, t in self.log}


@pytest.fixture
def proxy():
    p = LoggingProxy()
    p.routes["/x"] = Route(body=PAGE)
    yield p
    p.close()


def _fetch(tmp_path, urls, **cfg) -> dict[str, dict]:
    base = {"allow_private": False, "retries": 0, "timeout_s": 5, "connect_timeout_s": 2}
    return run_fetch(tmp_path, url_table(urls), **{**base, **cfg})[1]


def _errors(log: dict[str, dict]) -> dict[str, str | None]:
    return {u: r["error"] for u, r in log.items()}


def test_proxy_is_never_asked_for_a_private_host(tmp_path, proxy):
    private = [f"http://{h}/x" for h in PRIVATE] + [f"https://{h}/x" for h in PRIVATE[:5]]
    bad = [f"http://{h}/x" for h in BAD]
    public = [f"http://{h}/x" for h in PUBLIC]
    log = _fetch(tmp_path, private + bad + public, proxy=proxy.base)
    assert _errors(log) == {**dict.fromkeys(private, "private_address"), **dict.fromkeys(bad, "bad_url"),
                            **dict.fromkeys(public, None)}
    # The proxy (itself on 127.0.0.1) served the public hosts and saw nothing else.
    assert proxy.hosts() == set(PUBLIC.values())


def test_proxy_given_by_a_private_name_is_usable(tmp_path, proxy):
    """The proxy's own host is the operator's choice: a proxy named ``localhost`` (a
    private address) is reached, while the targets are still judged."""
    named = proxy.base.replace("127.0.0.1", "localhost")
    public = [f"http://{h}/x" for h in PUBLIC]
    log = _fetch(tmp_path, public + ["http://2852039166/x", "http://localhost./x"], proxy=named)
    assert _errors(log) == {**dict.fromkeys(public, None), "http://2852039166/x": "private_address",
                            "http://localhost./x": "private_address"}
    assert proxy.hosts() == set(PUBLIC.values())


def test_proxy_is_never_asked_for_a_private_redirect_target(tmp_path, proxy):
    targets = [f"http://{h}/x" for h in PRIVATE + BAD] + ["https://2852039166/x", "http://localhost.:8080/x"]
    for i, t in enumerate(targets):
        proxy.routes[f"/to/{i}"] = Route(302, b"", {"Location": t})
    urls = [f"http://news.example/to/{i}" for i in range(len(targets))]
    log = _fetch(tmp_path, urls, proxy=proxy.base)
    assert _errors(log) == {u: "bad_url" if urlsplit(t).hostname in BAD else "private_address"
                            for u, t in zip(urls, targets)}
    assert proxy.hosts() == {"news.example"}                 # robots.txt and the redirecting pages


def test_robots_txt_redirect_to_a_private_host(tmp_path, proxy):
    """robots.txt's own fetch is checked like a page's; its refusal is the URL's reason."""
    proxy.routes["/robots.txt"] = Route(302, b"", {"Location": "http://0xa9.0xfe.0xa9.0xfe/latest/meta-data"})
    log = _fetch(tmp_path, ["http://news.example/x"], proxy=proxy.base)
    assert _errors(log) == {"http://news.example/x": "private_address"}
    assert proxy.log == [("GET", "http://news.example/robots.txt")]


def test_direct_private_hosts_are_private_address(tmp_path, loopback_web):
    """Without a proxy the same hosts are refused by check_target before robots.txt is
    asked for (so they are not robots_unavailable), and nothing connects."""
    w = loopback_web
    w.routes["/x"] = Route(body=PAGE)
    port = int(w.base.rsplit(":", 1)[1])
    private = [f"http://{h}:{port}/x" for h in PRIVATE]
    bad = [f"http://{h}:{port}/x" for h in BAD]
    log = _fetch(tmp_path, private + bad)
    assert _errors(log) == {**dict.fromkeys(private, "private_address"), **dict.fromkeys(bad, "bad_url")}
    assert w.log == []


class NewsExampleIsLoopback(SafeResolver):
    """A public name, news.example, that resolves to the loopback test server; every other
    name is resolved and checked as SafeResolver does."""

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET):
        if host == "news.example":
            return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET,
                     "proto": 0, "flags": socket.AI_NUMERICHOST}]
        return await super().resolve(host, port, family)


def test_direct_redirects_to_private_hosts(tmp_path, loopback_web, monkeypatch):
    monkeypatch.setattr(fetch, "SafeResolver", NewsExampleIsLoopback)
    w = loopback_web
    port = int(w.base.rsplit(":", 1)[1])
    w.routes["/x"] = Route(body=PAGE)
    w.routes["/ok"] = Route(302, b"", {"Location": "/x"})
    targets = [f"http://{h}:{port}/x" for h in PRIVATE + BAD]
    for i, t in enumerate(targets):   # http.server sends headers as Latin-1: percent-encode the host
        w.routes[f"/to/{i}"] = Route(302, b"", {"Location": t if t.isascii() else _pct_host(t)})
    urls = [f"http://news.example:{port}/to/{i}" for i in range(len(targets))]
    log = _fetch(tmp_path, urls + [f"http://news.example:{port}/ok"])
    assert log.pop(f"http://news.example:{port}/ok")["error"] is None      # the name itself is fine
    assert _errors(log) == {u: "bad_url" if urlsplit(t).hostname in BAD else "private_address"
                            for u, t in zip(urls, targets)}
    assert {h for _, h in w.log} == {f"news.example:{port}"}


def _pct_host(url: str) -> str:
    """``url`` with its non-ASCII host percent-encoded as UTF-8 (the host parser decodes it)."""
    from urllib.parse import quote

    p = urlsplit(url)
    host, _, port = p.netloc.rpartition(":")
    return p._replace(netloc=f"{quote(host, safe='.')}:{port}").geturl()

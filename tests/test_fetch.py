"""fetch against a real loopback HTTP server: what the crawler asked for, and what it archived."""


import pyarrow.parquet as pq
from warcio.archiveiterator import ArchiveIterator

from pipeline.config import FetchConfig, to_dict
from pipeline.executor import Task
from pipeline.schemas import FETCHLOG
from stages import fetch

from conftest import Route, url_table

PAGE = b"<html><head><title>T</title></head><body><p>" + b"word " * 200 + b"</p></body></html>"


def _fetch(tmp_path, urls, **cfg):
    src = tmp_path / "urls-00000.parquet"
    pq.write_table(url_table(urls), src)
    warc, log = tmp_path / "warc-00000.warc.gz", tmp_path / "fetchlog-00000.parquet"
    options = {"fetch": to_dict(FetchConfig(**{"allow_private": True, "backoff_s": 0.01, **cfg}))}
    stats = fetch.fetch_shard(Task("fetch", "00000", fetch.fetch_shard, [src], [warc, log], options=options))
    table = pq.read_table(log)
    assert table.schema.equals(FETCHLOG)
    return stats, {r["url"]: r for r in table.to_pylist()}, warc


def _records(warc):
    with open(warc, "rb") as f:
        return [(r.rec_type, r.rec_headers.get_header("WARC-Target-URI"), r.content_stream().read())
                for r in ArchiveIterator(f, check_digests="raise")]


def test_statuses_retries_and_warc(tmp_path, loopback_web):
    w = loopback_web
    w.routes.update({
        "/ok": Route(body=PAGE),
        "/missing": Route(404, b"nope"),
        "/gone": Route(410, b"gone"),
        "/flaky": Route(body=PAGE, fail_times=2),
        "/down": Route(500, b"err"),
        "/pdf": Route(body=b"%PDF-1.4 binary", headers={"Content-Type": "application/pdf"}),
        "/liar": Route(body=b"\x89PNG\r\n\x1a\n\x00\x00binary", headers={"Content-Type": "text/html"}),
        "/gz": Route(body=PAGE, gzip=True),
    })
    urls = [f"{w.base}{p}" for p in ("/ok", "/missing", "/gone", "/flaky", "/down", "/pdf", "/liar", "/gz")]
    stats, log, warc = _fetch(tmp_path, urls, retries=2)
    assert stats.records_in == 8 and stats.records_out == 3
    assert dict(stats.dropped) == {"http_4xx": 2, "http_5xx": 1, "not_html": 2}
    hits = [p for p, _ in w.log]
    assert hits.count("/missing") == 1 and hits.count("/gone") == 1      # never retried
    assert hits.count("/flaky") == 3 and log[f"{w.base}/flaky"]["tries"] == 3
    assert hits.count("/down") == 3 and log[f"{w.base}/down"]["error"] == "http_5xx"
    recs = _records(warc)
    assert [t for t, _, _ in recs] == ["request", "response", "metadata"] * 3
    bodies = {u: body for t, u, body in recs if t == "response"}
    assert bodies[f"{w.base}/gz"] == PAGE                                  # stored decoded
    assert log[f"{w.base}/ok"]["warc_offset"] is not None and log[f"{w.base}/ok"]["warc_file"] == warc.name


def test_redirects_loops_and_limits(tmp_path, loopback_web):
    w = loopback_web
    w.routes.update({
        "/r1": Route(301, b"", {"Location": "/r2"}),
        "/r2": Route(302, b"", {"Location": f"{w.base}/r3"}),
        "/r3": Route(307, b"", {"Location": "/final"}),
        "/final": Route(body=PAGE),
        "/loopa": Route(302, b"", {"Location": "/loopb"}),
        "/loopb": Route(302, b"", {"Location": "/loopa"}),
        "/big": Route(body=b"<html>" + b"x" * 200_000 + b"</html>"),
        "/bomb": Route(body=b"<html>" + b"\0" * 20_000_000, gzip=True),   # ~20 KB on the wire
        "/slow": Route(body=PAGE, delay=2.0),
    })
    urls = [f"{w.base}{p}" for p in ("/r1", "/loopa", "/big", "/bomb", "/slow")]
    stats, log, _ = _fetch(tmp_path, urls, max_bytes=100_000, timeout_s=0.5, retries=0)
    assert log[f"{w.base}/r1"]["final_url"] == f"{w.base}/final" and log[f"{w.base}/r1"]["error"] is None
    assert log[f"{w.base}/loopa"]["error"] == "redirect_loop"
    assert log[f"{w.base}/big"]["error"] == "too_large"
    assert log[f"{w.base}/bomb"]["error"] == "too_large"
    assert log[f"{w.base}/slow"]["error"] == "timeout"
    assert [p for p, _ in w.log if p.startswith("/r") or p == "/final"] == ["/r1", "/r2", "/r3", "/final"]


def test_private_addresses_refused_also_after_redirect(tmp_path, loopback_web):
    w = loopback_web
    w.routes["/page"] = Route(body=PAGE)
    w.routes["/to-private"] = Route(302, b"", {"Location": f"{w.base}/page"})
    stats, log, _ = _fetch(tmp_path, [f"{w.base}/page", "http://localhost/x", "http://[::1]/y",
                                      "http://10.1.2.3/z", "http://169.254.169.254/latest/meta-data"],
                           allow_private=False)
    assert dict(stats.dropped) == {"private_address": 5}
    assert w.log == []                                   # nothing was requested at all
    # Through a proxy, a public-looking name that redirects to a private address is refused at the hop.
    stats, log, _ = _fetch(tmp_path, ["http://news.example/to-private"], allow_private=False, proxy=w.base)
    assert log["http://news.example/to-private"]["error"] == "private_address"
    assert w.log == [("/to-private", "news.example")]


def test_proxy_serves_many_hosts(tmp_path, loopback_web):
    w = loopback_web
    w.routes["/a"] = Route(body=PAGE)
    urls = [f"http://host{i}.example/a" for i in range(5)]
    stats, log, warc = _fetch(tmp_path, urls, allow_private=False, proxy=w.base)
    assert stats.records_out == 5
    assert sorted(h for _, h in w.log) == [f"host{i}.example" for i in range(5)]
    assert {u for t, u, _ in _records(warc) if t == "response"} == set(urls)


def test_interleave_by_host():
    rows = [{"domain": d, "i": i} for i, d in enumerate("aaaabbc")]
    assert [r["domain"] for r in fetch.interleave_by_host(rows)] == list("abcabaa")

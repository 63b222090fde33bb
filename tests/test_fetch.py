"""fetch against a real loopback HTTP server: what the crawler asked for, and what it archived."""


import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from webtext.pipeline.config import FetchConfig
from webtext.stages import fetch

from conftest import Route, kill_fetch_after, run_fetch, url_table

PAGE = b"<html><head><title>T</title></head><body><p>" + b"word " * 200 + b"</p></body></html>"
SITE_FILES = ("/robots.txt", "/.well-known/tdmrep.json")      # asked once per host and task, beside pages


def _fetch(tmp_path, urls, **cfg):
    return run_fetch(tmp_path, url_table(urls), **cfg)


def _records(warcs):
    out = []
    for warc in warcs:
        with open(warc, "rb") as f:
            out += [(r.rec_type, r.rec_headers.get_header("WARC-Target-URI"), r.content_stream().read())
                    for r in ArchiveIterator(f, check_digests="raise")]
    return out


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
    assert log[f"{w.base}/ok"]["warc_offset"] is not None and log[f"{w.base}/ok"]["warc_file"] == warc[0].name


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
    assert [p for p, _ in w.log if p.startswith("/r") and p != "/robots.txt" or p == "/final"] == \
        ["/r1", "/r2", "/r3", "/final"]


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
    assert w.log == [("/robots.txt", "news.example"), ("/to-private", "news.example")]


def test_proxy_serves_many_hosts(tmp_path, loopback_web):
    w = loopback_web
    w.routes["/a"] = Route(body=PAGE)
    urls = [f"http://host{i}.example/a" for i in range(5)]
    stats, log, warc = _fetch(tmp_path, urls, allow_private=False, proxy=w.base)
    assert stats.records_out == 5
    assert sorted(h for p, h in w.log if p == "/a") == [f"host{i}.example" for i in range(5)]
    assert sorted(h for p, h in w.log if p == "/robots.txt") == [f"host{i}.example" for i in range(5)]
    assert {u for t, u, _ in _records(warc) if t == "response"} == set(urls)


def test_interleave_by_host():
    rows = [{"domain": d, "i": i} for i, d in enumerate("aaaabbc")]
    assert [r["domain"] for r in fetch.interleave_by_host(rows)] == list("abcabaa")


def test_robots_txt(tmp_path, loopback_web):
    w = loopback_web
    w.routes.update({
        "/robots.txt": Route(body=b"User-agent: *\nDisallow: /private/\nCrawl-delay: 0.3\n",
                             headers={"Content-Type": "text/plain"}),
        "/public/1": Route(body=PAGE), "/public/2": Route(body=PAGE), "/public/3": Route(body=PAGE),
        "/private/secret": Route(body=PAGE),
    })
    urls = [f"{w.base}{p}" for p in ("/public/1", "/private/secret", "/public/2", "/public/3")]
    stats, log, _ = _fetch(tmp_path, urls)
    assert dict(stats.dropped) == {"robots_disallowed": 1}
    paths = [p for p, _ in w.log]
    assert paths.count("/robots.txt") == 1 and "/private/secret" not in paths   # fetched once, obeyed
    assert paths[0] == "/robots.txt"
    stats2, _, _ = _fetch(tmp_path, urls, obey_robots=False)
    assert stats2.records_out == 4


def test_crawl_delay_spaces_requests(tmp_path, loopback_web):
    import time as _time

    w = loopback_web
    w.routes["/robots.txt"] = Route(body=b"User-agent: *\nCrawl-delay: 0.4\n", headers={"Content-Type": "text/plain"})
    for i in range(4):
        w.routes[f"/p{i}"] = Route(body=PAGE)
    t0 = _time.monotonic()
    stats, _, _ = _fetch(tmp_path, [f"{w.base}/p{i}" for i in range(4)], concurrency=8, per_host=4)
    assert stats.records_out == 4
    assert _time.monotonic() - t0 >= 4 * 0.4 - 0.05     # robots.txt + 4 pages, 0.4 s apart
    w.routes["/robots.txt"] = Route(body=b"User-agent: *\nCrawl-delay: 600\n", headers={"Content-Type": "text/plain"})
    (tmp_path / "b").mkdir()
    stats, _, _ = _fetch(tmp_path / "b", [f"{w.base}/p0"])
    assert dict(stats.dropped) == {"crawl_delay_too_long": 1}


@pytest.mark.parametrize("robots, reason", [(Route(503, b"down"), "robots_unavailable"),
                                            (Route(404, b"none"), None),
                                            (Route(body=b"x", delay=2.0), "robots_unavailable")])
def test_robots_errors(tmp_path, loopback_web, robots, reason):
    w = loopback_web
    w.routes.update({"/robots.txt": robots, "/page": Route(body=PAGE)})
    stats, log, _ = _fetch(tmp_path, [f"{w.base}/page"], retries=0, timeout_s=0.5)
    assert log[f"{w.base}/page"]["error"] == reason
    assert ("/page" in [p for p, _ in w.log]) == (reason is None)   # a deferred host is not crawled


def test_hostile_servers(tmp_path, loopback_web):
    w = loopback_web
    w.routes.update({
        "/trickle": Route(body=PAGE, trickle=0.05),          # ~1,000 bytes at 20 B/s: never finishes
        "/reset": Route(reset=True),
        "/busy": Route(body=PAGE, fail_times=1, headers={"Content-Type": "text/html"}),
    })
    w.routes["/busy"].fail_times = 1
    stats, log, _ = _fetch(tmp_path, [f"{w.base}/trickle", f"{w.base}/reset", f"{w.base}/busy"],
                           timeout_s=1.0, retries=1)
    assert log[f"{w.base}/trickle"]["error"] == "timeout"
    assert log[f"{w.base}/reset"]["error"] == "connection_error" and log[f"{w.base}/reset"]["tries"] == 2
    assert log[f"{w.base}/busy"]["error"] is None and log[f"{w.base}/busy"]["tries"] == 2


def test_429_with_retry_after_then_success(tmp_path, loopback_web):
    w = loopback_web
    w.routes["/limited"] = Route(body=PAGE, fail_times=2)   # 503 + Retry-After: 0, twice
    stats, log, _ = _fetch(tmp_path, [f"{w.base}/limited"], retries=3)
    assert log[f"{w.base}/limited"]["tries"] == 3 and stats.records_out == 1


def test_charsets_detected_and_recorded(tmp_path, loopback_web):
    w = loopback_web
    text = "Café crème – naïve résumé. " * 20
    jp = "日本語のテキストです。これは文字コードのテストです。" * 10
    w.routes.update({
        "/cp1252-meta": Route(body=f'<html><head><meta charset="windows-1252"></head><body><p>{text}</p></body></html>'
                              .encode("cp1252"), headers={"Content-Type": "text/html"}),
        "/sjis-header": Route(body=f"<html><body><p>{jp}</p></body></html>".encode("shift_jis"),
                              headers={"Content-Type": "text/html; charset=Shift_JIS"}),
        "/sjis-sniffed": Route(body=f"<html><body><p>{jp}</p></body></html>".encode("shift_jis"),
                               headers={"Content-Type": "text/html"}),
        "/utf8": Route(body=f"<html><body><p>{text}</p></body></html>".encode(), headers={"Content-Type": "text/html"}),
        # Labelled ISO-8859-1 but with cp1252's curly quotes, as on many old pages.
        "/latin1-label": Route(body=f"<html><body><p>\u201c{text}\u201d</p></body></html>".encode("cp1252"),
                               headers={"Content-Type": "text/html; charset=ISO-8859-1"}),
        # A label that no browser honours, and whose codec makes lone surrogates of "+2AA-".
        "/utf7-label": Route(body=f"<html><body><p>+2AA- {text}</p></body></html>".encode(),
                             headers={"Content-Type": "text/html; charset=utf-7"}),
    })
    paths = ("/cp1252-meta", "/sjis-header", "/sjis-sniffed", "/utf8", "/latin1-label", "/utf7-label")
    stats, log, warc = _fetch(tmp_path, [f"{w.base}{p}" for p in paths])
    got = {u.rsplit("/", 1)[1]: r["charset"] for u, r in log.items()}
    sniffed = got.pop("sjis-sniffed")
    assert sniffed in ("shift_jis", "cp932")                        # cp932: the Windows superset
    # Labels read as a browser reads them (WHATWG): Shift_JIS is cp932, ISO-8859-1 is
    # windows-1252; utf-7 is no web encoding, so the body is sniffed (UTF-8).
    assert got == {"cp1252-meta": "cp1252", "sjis-header": "cp932", "utf8": "utf-8", "latin1-label": "cp1252",
                   "utf7-label": "utf-8"}
    bodies = {u.rsplit("/", 1)[1]: b for t, u, b in _records(warc) if t == "response"}
    assert text in bodies["cp1252-meta"].decode(got["cp1252-meta"])
    assert jp in bodies["sjis-sniffed"].decode(sniffed)
    assert f"\u201c{text}\u201d" in bodies["latin1-label"].decode(got["latin1-label"])


def test_warc_rotation(tmp_path, loopback_web):
    w = loopback_web
    for i in range(12):
        w.routes[f"/p{i}"] = Route(body=PAGE)
    stats, log, warcs = _fetch(tmp_path, [f"{w.base}/p{i}" for i in range(12)], warc_max_bytes=2000)
    assert stats.records_out == 12 and len(warcs) >= 3
    assert {r["warc_file"] for r in log.values()} == {p.name for p in warcs}
    # Each logged offset points at that URL's response record.
    for url, r in log.items():
        with open(warcs[0].parent / r["warc_file"], "rb") as f:
            f.seek(r["warc_offset"])
            rec = next(iter(ArchiveIterator(f)))
            assert rec.rec_type == "response" and rec.rec_headers.get_header("WARC-Target-URI") == url


def test_resume_after_sigkill(tmp_path, loopback_web):
    """SIGKILL mid-shard: the rerun fetches only URLs without an outcome; WARC stays exact."""
    import subprocess
    import sys
    from pathlib import Path

    w = loopback_web
    n = 40
    for i in range(n):
        w.routes[f"/slow{i}"] = Route(body=PAGE, delay=0.1)
    work = tmp_path / "w"
    (work / "urls").mkdir(parents=True)
    pq.write_table(url_table([f"{w.base}/slow{i}" for i in range(n)]), work / "urls" / "urls-00000.parquet")
    root = Path(__file__).resolve().parent.parent
    args = [sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(work), "fetch", "--allow-private",
            "--concurrency", "2", "--retries", "0", "--host-delay", "0"]
    done_before = kill_fetch_after(args, work, 10, root).count("\n")
    assert 10 <= done_before < n
    r = subprocess.run(args, cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    hits = [p for p, _ in w.log if p.startswith("/slow")]
    assert set(hits) == {f"/slow{i}" for i in range(n)}
    assert len(hits) - n <= 2                 # at most the two requests in flight at the kill
    warcs = sorted((work / "warc").glob("warc-00000-*.warc.gz"))
    responses = [u for t, u, _ in _records(warcs) if t == "response"]
    assert sorted(responses) == sorted(f"{w.base}/slow{i}" for i in range(n))   # each exactly once
    log = pq.read_table(work / "warc" / "fetchlog-00000.parquet")
    assert log.num_rows == n and log["error"].null_count == n


@pytest.mark.parametrize("engine,level", [("isal", 0), ("isal", 3), ("zlib", 1), ("zlib", 9)])
def test_warc_gzip_engines_read_back_identically(tmp_path, loopback_web, engine, level):
    """Each engine writes standard gzip members: warcio and Python's gzip read the same records."""
    import gzip

    w = loopback_web
    for i in range(3):
        w.routes[f"/g{i}"] = Route(body=PAGE + str(i).encode())
    stats, log, warcs = _fetch(tmp_path, [f"{w.base}/g{i}" for i in range(3)], warc_gzip=engine,
                               warc_gzip_level=level)
    assert stats.records_out == 3
    bodies = {uri: body for kind, uri, body in _records(warcs) if kind == "response"}
    assert bodies == {f"{w.base}/g{i}": PAGE + str(i).encode() for i in range(3)}
    assert gzip.decompress(warcs[0].read_bytes()).count(b"WARC/1.1\r\n") == 9     # 3 pages x 3 records


def test_warc_gzip_level_out_of_range_is_a_config_error():
    from webtext.pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="out of range for isal"):
        FetchConfig(warc_gzip_level=6)
    with pytest.raises(ConfigError, match="'isal' or 'zlib'"):
        FetchConfig(warc_gzip="brotli")
    assert FetchConfig(warc_gzip="zlib", warc_gzip_level=9).warc_gzip_level == 9


def test_a_changed_harvest_fetches_only_new_urls(tmp_path, loopback_web):
    """A second harvest rewrites the urls shards (old URLs with new karma, plus new ones):
    fetch requests only the new URLs, and the first frontier's task stays done."""
    from conftest import make_context

    w = loopback_web
    w.routes.update({f"/p{i}": Route(body=PAGE) for i in range(6)})
    (tmp_path / "urls").mkdir()
    urls = [f"{w.base}/p{i}" for i in range(6)]
    pq.write_table(url_table(urls[:3]), tmp_path / "urls" / "urls-00000.parquet")
    pq.write_table(url_table(urls[3:4]), tmp_path / "urls" / "urls-00001.parquet")
    ctx = make_context(tmp_path, fetch={"allow_private": True, "host_delay_s": 0.0})
    first = fetch.run(ctx)
    assert first["info"]["new_urls"] == 4 and sorted(p for p, _ in w.log if p not in SITE_FILES) == \
        ["/p0", "/p1", "/p2", "/p3"]
    w.log.clear()
    again = fetch.run(ctx)                                         # nothing changed: nothing to do
    assert again["tasks_run"] == 0 and w.log == []
    pq.write_table(url_table(urls[:3] + urls[4:5], score=50), tmp_path / "urls" / "urls-00000.parquet")
    pq.write_table(url_table(urls[3:4] + urls[5:6], score=50), tmp_path / "urls" / "urls-00001.parquet")
    second = fetch.run(ctx)
    assert sorted(p for p, _ in w.log if p not in SITE_FILES) == ["/p4", "/p5"]     # only the new URLs
    assert second["tasks_run"] == 2 and second["tasks_skipped"] == 2 and second["info"]["new_urls"] == 2
    assert second["out"] == 6 and second["info"]["frontier_files"] == 4
    assert sorted(p.name for p in (tmp_path / "warc").glob("fetchlog-*.parquet")) == \
        [f"fetchlog-0000{i}.parquet" for i in range(4)]

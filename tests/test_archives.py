"""Dead-link recovery: the archive index parsers on real answers, and ArchiveClient against
the loopback archives (pipeline/archiveweb.py): hits, capture choice, crawl order, misses,
throttling, refused addresses and size caps."""

from __future__ import annotations

import asyncio
import base64
import gzip
import time
import zlib

import aiohttp
import pytest
from conftest import shared_path

from webtext.pipeline.archiveweb import ArchiveWeb
from webtext.stages.archives import ArchiveClient, ArchiveUnavailable
from webtext.stages.captures import (
    Capture,
    Crawl,
    choose_capture,
    decode_payload,
    inflate_member,
    order_crawls,
    parse_cc_cdx,
    parse_collinfo,
    parse_warc_response,
    parse_wayback_cdx,
    safe_filename,
    unix_of,
)

DAY = 86400

# --- real answers --------------------------------------------------------------------------
# index.commoncrawl.org/collinfo.json, first entry, as recorded on 2025-09-15 in cdx_toolkit's
# tests/data/mock_responses/cc_collinfo.jsonl (github.com/cocrawler/cdx_toolkit).
COLLINFO = b"""[
  {
    "id": "CC-MAIN-2025-33",
    "name": "August 2025 Index",
    "timegate": "https://index.commoncrawl.org/CC-MAIN-2025-33/",
    "cdx-api": "https://index.commoncrawl.org/CC-MAIN-2025-33-index",
    "from": "2025-08-02T22:09:07",
    "to": "2025-08-15T23:42:38"
  },
  {"id": "CC-MAIN-2008-2009", "name": "2008 - 2009 ARC Files Index",
   "timegate": "https://index.commoncrawl.org/CC-MAIN-2008-2009/",
   "cdx-api": "https://index.commoncrawl.org/CC-MAIN-2008-2009-index",
   "from": "2008-05-09T05:37:12", "to": "2009-01-09T20:58:29"}
]"""
# index.commoncrawl.org/CC-MAIN-2025-33-index?url=example.com&output=json, and the data server's
# 206 answer for its byte range (base64), from cdx_toolkit's
# tests/data/mock_responses/test_capture_object/test_capture_object.jsonl.
CC_LINE = (b'{"urlkey": "com,example)/", "timestamp": "20250802232428", "url": "http://www.example.com/", '
           b'"mime": "text/html", "mime-detected": "text/html", "status": "200", '
           b'"digest": "JI6OR3QR4CI526JD6TMMNZNV4QPMPQCH", "length": "1219", "offset": "34323482", '
           b'"filename": "crawl-data/CC-MAIN-2025-33/segments/1754151279521.11/warc/'
           b'CC-MAIN-20250802220907-20250803010907-00970.warc.gz", "languages": "eng", "encoding": "UTF-8"}\n')
CC_MEMBER_B64 = (
    "H4sIAAAAAAAAAH1VW3PaOBR+Z4b/oGVf2hmE72AcYDZN0g1pSAmhTbdvQjoGTWzLa8sQdqf/fY8vEJJ2FgYsnSN95ztXP54vLgyrZ7Zbj7iiy30KAckgT1WSQy"
    "O8ZBqFtml71PSpaS9tJ7DdwPa/NwcWwFUm6PQyIKMiS4KikCJwhA3D0GS03/dM6lrAKGOuRbltezAEe2Wv+KTdulCJhkTTW0jWehMQq2/7L9KaD0vTSHKmpUqM"
    "jdbpGYnztUbV+A3TR5ZxmYTqDRUL+v0huEPqeQOPutzq09UqHNABH6x8h/tWaIaTBgIt8yLLKuPqFGRl86HFB4IK1wmp2xcW+sNsCjBwHXsA4K6OINM5PRcCyeUY"
    "N6fnOT3L6tneMcosW4OmXxbTgJT+BIax2+168MziNIIeV7HRnJxnSiuuovocJso6KNg+UkzQS7mGXAck3zAruJn2Py+c+4V7MfXs/s1lfzmb3X2/++rez2fz+4vr"
    "5u6HSPGn1zc/fpp/u58Pbs9v3G/u1eLu+63jzK6ni8cH7/7eufh48EtgXGQoQRwJ1BnS8KwxNXHUbrVb18vlvKSKJWOSz5/arXPOIdV0wRI0GZDVXkP+NscnCFdL"
    "tg5Ix3dtxxch982hDZ4YclMw7kM4dJyBxcxBYA2c/mA4NH2zZ9mW5bidduuW5ZrOlKhIBmSmki6xHHLDkqqA8S+wrMA2yZ+zZbv1lWX7gDT0rhKO95J1u/WNXmRs"
    "F0FGDxwPuoCs/5Epcmd8A5U2K5MTs2fK1jC2bcdtt+p+eWC6S0ybnBfrxnTTNbXpn20cOqDv+r9oC9vrV9IEeNkHAXkCSCmL5BbKmI9+E4qXLUHKGE5ao8MDmJi0"
    "CH5GWuoIJld1kZFLFTOZjIxa2qqPxKAZ4RuW5aDHnUKH1O8QY3KiLMuQwt+F3I47B46l2Q7h9W7cOWby7Aj1K6SExTDubCXsUpXpk/s7KfRmLGArOdBq0yUykVqy"
    "iOacRTC2XqByvUdnqllQG+Z53ql1KyX25N9qWW0Zf1pnqkgExYZSWUB+x7Y3Q/vseCTGvpQYWvNFlDJR5/1EFiJTGrJYRlg8tBxOQPN9riHukvpJC9klHyKZPM0Y"
    "f6hEH/FSl3QeYK2AfJl2cP05hQTLJMnLzTVEW9A45cgdFICSo6BLzjP0HbHxKM0hk+ELl2rxo/oXcnvibhU4LCbTTJ9/9tCDmLBCq184akN89r9BE/g9YbDC0Y9V"
    "nDEhC2xus+e9AlDPFCeMUDtETp+Jg78B/sp1tl6xd2a3+vZM+/3ZiTMsKKPXxedW5lKDOHHtwMTxXd8/YVLmn4ryXcTqFklUAqegf8QgJCPvynZt4jMo4/P+BPx1"
    "FF9VxZuInUT5teLHicmRUVXopMrVyKjbsTUqaxO7E401dbyxfupMFNW6dLLcyJyISk5wFaqMFDmQchdFRa5Lh7dAmhdIXipwHBQx9lPeI3+pAp3YV1c0ItXV0qAl"
    "JMLwIkCRAbqjN6rQJM0kmuAKUyuTKpgE9yx/wgqprKeQxTLPUdEbGemR5wgHRAbhuFOOibx5rUmWsJ7K1kZtMjcamp3JTGWlEwgYV0Z6PURjkwpxZFTBGRlNqIx6"
    "oJWz7j+sn74+tAgAAA==")
# web.archive.org/cdx/search/cdx?url=archive.org&output=json&limit=3, from the Wayback CDX server
# README (github.com/internetarchive/wayback, wayback-cdx-server/README.md), with the resume-key
# rows its showResumeKey example adds.
WAYBACK_JSON = b"""[["urlkey","timestamp","original","mimetype","statuscode","digest","length"],
 ["org,archive)/", "19970126045828", "http://www.archive.org:80/", "text/html", "200", "Q4YULN754FHV2U6Q5JUT6Q2P57WEWNNY", "1415"],
 ["org,archive)/", "19971011050034", "http://www.archive.org:80/", "text/html", "200", "XAHDNHZ5P3GSSSNJ3DMEOJF7BMCCPZR3", "1402"],
 ["org,archive)/", "19971211122953", "http://www.archive.org:80/", "text/html", "200", "XAHDNHZ5P3GSSSNJ3DMEOJF7BMCCPZR3", "1405"],
 [],
 ["org%2Carchive%29%2F+19980109140106%21"]]"""

PAGE = b"<!doctype html><html><head><title>Gone</title></head><body><p>" + b"A page that died. " * 40 + b"</p></body></html>"
T0 = 1487900000                       # 2017-02-24, inside CC-MAIN-2017-09 of the loopback index


def test_parse_collinfo_real_entry():
    crawls = parse_collinfo(COLLINFO)
    assert [c.id for c in crawls] == ["CC-MAIN-2025-33", "CC-MAIN-2008-2009"]
    assert crawls[0].start == 1754172547 and crawls[0].end == 1755301358        # UTC
    assert parse_collinfo(b"<html>") == [] and parse_collinfo(b'[{"id": "../x", "from": "2020-01-01T00:00:00", "to": "2020-01-02T00:00:00"}]') == []


def test_parse_cc_cdx_real_line_and_bad_lines():
    hostile = [b'{"timestamp": "20250802232428", "url": "u", "status": "200", "offset": "1", "length": "9", '
               b'"filename": "%s"}' % f for f in (b"../../etc/passwd", b"http://evil.example/x.warc.gz",
                                                    b"/abs/x.warc.gz", b"a/%2e%2e/b", b"a//b")]
    caps = parse_cc_cdx(CC_LINE + b"not json\n[1,2]\n{}\n" + b"\n".join(hostile), "CC-MAIN-2025-33")
    assert len(caps) == 1
    c = caps[0]
    assert (c.source, c.collection, c.timestamp, c.url, c.status, c.mime) == \
        ("commoncrawl", "CC-MAIN-2025-33", "20250802232428", "http://www.example.com/", 200, "text/html")
    assert c.captured_at == unix_of("20250802232428") and (c.offset, c.length) == (34323482, 1219)
    url, rng = c.record_address("https://data.commoncrawl.org/")
    assert url == "https://data.commoncrawl.org/" + c.filename and rng == "bytes=34323482-34324700"


def test_real_cc_record_unpacks():
    record, error = inflate_member(base64.b64decode(CC_MEMBER_B64), 1 << 20)
    assert error is None
    status, reason, headers, payload, uri = parse_warc_response(record)
    assert (status, reason, uri) == (200, "OK", "http://www.example.com/")
    assert ("X-Crawler-Content-Encoding", "gzip") in headers          # stored decoded
    body, error = decode_payload(headers, payload, 1 << 20)
    assert error is None and body.startswith(b"<!doctype html>") and b"<title>Example Domain</title>" in body
    assert inflate_member(base64.b64decode(CC_MEMBER_B64)[:600], 1 << 20) == (None, "bad_record")
    assert inflate_member(base64.b64decode(CC_MEMBER_B64), 100) == (None, "too_large")


def test_parse_wayback_cdx_real_array():
    caps = parse_wayback_cdx(WAYBACK_JSON)
    assert [c.timestamp for c in caps] == ["19970126045828", "19971011050034", "19971211122953"]
    assert caps[0].url == "http://www.archive.org:80/" and caps[0].status == 200 and caps[0].source == "wayback"
    assert caps[0].record_address("https://web.archive.org") == \
        ("https://web.archive.org/web/19970126045828id_/http://www.archive.org:80/", None)
    assert parse_wayback_cdx(b"[]") == parse_wayback_cdx(b"") == parse_wayback_cdx(b"oops") == []
    revisit = b'[["urlkey","timestamp","original","mimetype","statuscode","digest","length"],' \
              b'["k","20200101000000","http://a.example/","warc/revisit","-","D","1"]]'
    assert parse_wayback_cdx(revisit) == []


def test_parsers_survive_hostile_json():
    for junk in (b'{"timestamp": 20170224000000, "status": [], "offset": {}, "length": null}', b'"x"', b"[[[1]], [2]]",
                 b'[[["a"], "timestamp"], ["x", "y"]]', b'[{"id": 5, "from": 1, "to": []}]', b"\xff\xfe", b"null"):
        assert parse_cc_cdx(junk, "c") == [] and parse_wayback_cdx(junk) == [] and parse_collinfo(junk) == []


def _cap(days: float, status=200, mime="text/html") -> Capture:
    when = T0 + int(days * DAY)
    return Capture("wayback", "wayback", str(when), when, "http://a.example/", status, mime)


def test_choose_capture_prefers_nearest_after_within_drift():
    before, after, far_after, late = _cap(-2), _cap(5), _cap(20), _cap(400)
    assert choose_capture([before, far_after, after, late], T0, 30) is after
    assert choose_capture([before, far_after], T0, 10) is before          # nothing after within drift
    assert choose_capture([late, _cap(-400)], T0, 30) is None
    assert choose_capture([_cap(1, status=404), _cap(2, mime="application/pdf"), _cap(3, mime="text/html; charset=x")],
                          T0, 30).captured_at == T0 + 3 * DAY


def test_order_crawls_nearest_span_first():
    crawls = [Crawl("A", T0 - 40 * DAY, T0 - 30 * DAY), Crawl("B", T0 - 5 * DAY, T0 + 5 * DAY),
              Crawl("C", T0 + 20 * DAY, T0 + 30 * DAY), Crawl("D", T0 + 200 * DAY, T0 + 210 * DAY),
              Crawl("E", T0 - 3 * DAY, T0 - 1 * DAY)]
    assert [c.id for c in order_crawls(crawls, T0)] == ["B", "C", "D", "E", "A"]
    assert [c.id for c in order_crawls(crawls, T0, max_drift_days=35)] == ["B", "C", "E", "A"]


def test_safe_filename():
    assert safe_filename("crawl-data/CC-MAIN-2017-09/segments/1487501170253.67/warc/CC-MAIN-x-00000.warc.gz")
    for bad in ("../x", "a/../b", "/x", "http://e.example/x", "https:x", "a\\b", "a b", "", None, "a/./b", "x?y"):
        assert not safe_filename(bad), bad


# --- the client against the loopback archives ---------------------------------------------

def run(web: ArchiveWeb, coro_fn, **kw):
    async def main():
        async with aiohttp.ClientSession() as session:
            opts = {"delay_s": 0.0, "backoff_s": 0.01, "retries": 2, "allow_private": True, **kw}
            return await coro_fn(ArchiveClient(session, **web.endpoints(), **opts))
    return asyncio.run(main())


@pytest.fixture
def web():
    with ArchiveWeb() as w:
        yield w


def test_commoncrawl_hit_returns_the_archived_page(web):
    web.add_capture("http://gone.example/story", PAGE, T0 + 3600)

    async def go(client):
        cap = await client.lookup("http://gone.example/story", T0)
        return cap, await client.fetch(cap)
    cap, page = run(web, go)
    assert (cap.source, cap.collection) == ("commoncrawl", "CC-MAIN-2017-09")
    assert page.error is None and page.status == 200 and page.body == PAGE
    assert page.content_type == "text/html; charset=utf-8" and ("Content-Length", str(len(PAGE))) in page.headers
    assert web.requests("wayback") == []                                    # stopped at the first hit
    assert len(web.requests("cc_data")) == 1


def test_commoncrawl_hit_on_real_pages(web):
    folder = shared_path("extraction", "trafilatura-eval", "tests", "cache")
    pages = {f"http://dead{i}.example/{p.name}": gzip.decompress(p.read_bytes())
             for i, p in enumerate(sorted(folder.glob("*.html.gz"))[:3])}
    for i, (url, html) in enumerate(pages.items()):
        web.add_capture(url, html, T0 + i * DAY)

    async def go(client):
        return {url: (await client.fetch(await client.lookup(url, T0))).body for url in pages}
    assert run(web, go) == pages


def test_wayback_hit_and_original_headers(web):
    web.add_capture("http://gone.example/w?id=1", PAGE, T0 + DAY, source="wayback",
                    headers=[("Content-Type", "text/html; charset=utf-8"), ("Last-Modified", "Fri, 24 Feb 2017 00:00:00 GMT")])

    async def go(client):
        cap = await client.lookup("http://gone.example/w?id=1", T0)
        return cap, await client.fetch(cap)
    cap, page = run(web, go)
    assert cap.source == "wayback" and cap.timestamp == "20170225013320"
    assert page.error is None and page.body == PAGE and page.content_type == "text/html; charset=utf-8"
    assert ("Last-Modified", "Fri, 24 Feb 2017 00:00:00 GMT") in page.headers
    assert any(p.startswith("/web/20170225013320id_/http://gone.example/w?id=1") for p in web.requests("wayback"))


def test_wayback_redirect_to_nearest_timestamp_is_followed(web):
    web.add_capture("http://gone.example/r", PAGE, T0 + DAY, source="wayback")
    stale = Capture("wayback", "wayback", "20170224000000", T0, "http://gone.example/r", 200, "text/html")
    page = run(web, lambda c: c.fetch(stale))
    assert page.error is None and page.body == PAGE


def test_nearest_capture_wins_and_crawls_are_asked_nearest_first(web):
    url = "http://gone.example/n"
    web.add_capture(url, b"<html>before</html>", T0 - 2 * DAY, crawl="CC-MAIN-2017-09")
    web.add_capture(url, b"<html>after</html>", T0 + 3 * DAY, crawl="CC-MAIN-2017-09")
    web.add_capture(url, b"<html>later crawl</html>", T0 + 30 * DAY, crawl="CC-MAIN-2017-13")
    web.add_capture(url, b"<html>earlier crawl</html>", T0 - 33 * DAY, crawl="CC-MAIN-2017-04")

    async def go(client):
        return (await client.fetch(await client.lookup(url, T0, max_drift_days=60))).body
    assert run(web, go) == b"<html>after</html>"
    asked = web.requests("cc_index")
    assert asked[0] == "/collinfo.json" and len(asked) == 2 and asked[1].startswith("/CC-MAIN-2017-09-index?")

    # nothing in the submission's crawl: the next crawl after it, then the earlier one (the
    # April crawl, 57 days on, is beyond the drift)
    web.log.clear()
    url2 = "http://gone.example/n2"
    web.add_capture(url2, b"<html>earlier crawl</html>", T0 - 33 * DAY, crawl="CC-MAIN-2017-04")

    async def go2(client):
        return (await client.fetch(await client.lookup(url2, T0, max_drift_days=40))).body
    assert run(web, go2) == b"<html>earlier crawl</html>"
    assert [p.split("-index")[0] for p in web.requests("cc_index")[1:]] == \
        ["/CC-MAIN-2017-09", "/CC-MAIN-2017-13", "/CC-MAIN-2017-04"]


def test_miss_in_both_archives_is_none(web):
    web.add_capture("http://other.example/", PAGE, T0, source="wayback")
    web.add_capture("http://gone.example/old", PAGE, T0 - 300 * DAY, source="wayback")   # beyond the drift
    assert run(web, lambda c: c.lookup("http://gone.example/old", T0, max_drift_days=30)) is None
    assert len(web.requests("wayback")) == 2                             # after, then before
    assert web.requests("cc_data") == []


def test_retry_after_from_the_index_is_waited_out(web):
    web.add_capture("http://gone.example/t", PAGE, T0)
    web.throttle("cc_index", 1, retry_after="1")

    async def go(client):
        start = time.monotonic()
        cap = await client.lookup("http://gone.example/t", T0, sources=("commoncrawl",))
        return cap, time.monotonic() - start, client.stats
    cap, waited, stats = run(web, go)
    assert cap is not None and waited >= 1.0 and stats["held"] == 1
    assert web.requests("cc_index")[:2] == ["/collinfo.json", "/collinfo.json"]


def test_throttling_past_the_retries_is_an_error_not_a_miss(web):
    web.throttle("wayback", 10, retry_after="0")
    with pytest.raises(ArchiveUnavailable) as err:
        run(web, lambda c: c.lookup("http://gone.example/x", T0, sources=("wayback",)), retries=2)
    assert err.value.reason == "http_429" and len(web.requests("wayback")) == 3


def test_hostile_filenames_are_refused_without_a_request(web):
    for i, name in enumerate(("../../etc/passwd", "http://169.254.169.254/latest/meta-data", "/etc/passwd")):
        web.add_cc_row("CC-MAIN-2017-09", {"urlkey": "x", "timestamp": f"2017022400000{i}", "url": "http://gone.example/h",
                                           "mime": "text/html", "status": "200", "offset": "0", "length": "100",
                                           "filename": name})
    assert run(web, lambda c: c.lookup("http://gone.example/h", T0, sources=("commoncrawl",))) is None
    forged = Capture("commoncrawl", "CC-MAIN-2017-09", "20170224000000", T0, "http://gone.example/h", 200,
                     "text/html", filename="../../etc/passwd", offset=0, length=100)
    assert run(web, lambda c: c.fetch(forged)).error == "unsafe_filename"
    absolute = Capture("commoncrawl", "CC-MAIN-2017-09", "20170224000000", T0, "http://gone.example/h", 200,
                       "text/html", filename="http://evil.example/x.warc.gz", offset=0, length=100)
    assert run(web, lambda c: c.fetch(absolute)).error == "unsafe_filename"
    assert web.requests("cc_data") == []


def test_gzip_bomb_from_the_data_server_is_capped(web):
    bomb = zlib.compress(b"\0" * (64 << 20), 9, wbits=16 + zlib.MAX_WBITS)        # 64 MiB in ~65 KB
    filename, offset, length = web.add_member("CC-MAIN-2017-09", bomb)
    cap = Capture("commoncrawl", "CC-MAIN-2017-09", "20170224000000", T0, "http://gone.example/b", 200, "text/html",
                  filename=filename, offset=offset, length=length)
    page = run(web, lambda c: c.fetch(cap), max_bytes=1 << 20)
    assert page.error == "too_large" and page.body == b""


def test_content_encoded_payload_is_decoded_and_capped(web):
    web.add_capture("http://gone.example/gz", PAGE, T0, content_encoding="gzip")
    web.add_capture("http://gone.example/gzbomb", b"<html>" + b" " * (8 << 20), T0, content_encoding="gzip")

    async def go(client):
        out = []
        for url in ("http://gone.example/gz", "http://gone.example/gzbomb"):
            out.append(await client.fetch(await client.lookup(url, T0)))
        return out
    ok, bomb = run(web, go, max_bytes=1 << 20)
    assert ok.error is None and ok.body == PAGE
    assert bomb.error == "too_large"


def test_oversized_bodies_are_refused(web):
    big = b"<html>" + b"x" * (2 << 20) + b"</html>"
    web.add_capture("http://gone.example/big", big, T0, source="wayback")
    web.add_capture("http://gone.example/bigcc", big, T0)

    async def go(client):
        return [await client.fetch(await client.lookup(u, T0)) for u in ("http://gone.example/big", "http://gone.example/bigcc")]
    wb, cc = run(web, go, max_bytes=1 << 20)
    assert wb.error == "too_large" and cc.error == "too_large"


def test_endpoints_must_be_http_and_public_unless_allowed():
    async def go():
        async with aiohttp.ClientSession() as session:
            with pytest.raises(ValueError):
                ArchiveClient(session, cc_index="http://127.0.0.1:9")
            with pytest.raises(ValueError):
                ArchiveClient(session, wayback="file:///etc")
            ArchiveClient(session)                                      # the public defaults
    asyncio.run(go())

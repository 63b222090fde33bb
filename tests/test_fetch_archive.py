"""Dead-link recovery in fetch (issue #22): dead live fetches looked up in the loopback
archives (pipeline/archiveweb.py), prefer mode, the columnar plan, and the WARC records and
fetch-log columns a recovered page gets."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from conftest import Route, kill_fetch_after, run_fetch, url_table
from warcio.archiveiterator import ArchiveIterator

from webtext.pipeline.archiveweb import ArchiveWeb
from webtext.stages.surt import surt

DAY = 86400
T0 = 1487900000                       # 2017-02-24, inside CC-MAIN-2017-09 of the loopback index
PAGE = b"<!doctype html><html><head><title>Gone</title></head><body><p>" + b"A page that died. " * 40 + \
    b"</p></body></html>"
LIVE = b"<html><head><title>Live</title></head><body><p>" + b"alive and well " * 100 + b"</p></body></html>"
PARKED = (b'<html><head><title>example</title></head><body><div id="root"></div>'
          b'<script src="https://img1.wsimg.com/parking-lander/static/js/main.2de80224.chunk.js"></script>'
          b'</body></html>')


@pytest.fixture
def archives():
    with ArchiveWeb() as w:
        yield w


def _ts(s: int) -> datetime:
    """A fetch-log time as pyarrow reads it back (timestamp, UTC)."""
    return datetime.fromtimestamp(s, timezone.utc)


def table(urls: list[str], first_seen: int | list[int] = T0) -> pa.Table:
    t = url_table(urls)
    seen = first_seen if isinstance(first_seen, list) else [first_seen] * len(urls)
    i = t.schema.get_field_index("first_seen")
    return t.set_column(i, t.schema.field(i), pa.array(seen, pa.int64()).cast(t.schema.field(i).type))


def fetch(tmp_path, archives: ArchiveWeb, urls, first_seen=T0, **cfg):
    e = archives.endpoints()
    opts = {"archive": "fallback", "archive_commoncrawl_index": e["cc_index"],
            "archive_commoncrawl_data": e["cc_data"], "archive_wayback": e["wayback"],
            "archive_delay_s": 0.0, "archive_retries": 2, "retries": 0, **cfg}
    return run_fetch(tmp_path, table(urls, first_seen), **opts)


def records(warcs) -> dict[str, dict]:
    """Target URI -> {record type: (headers, content)}, read with warcio, digests checked."""
    out: dict[str, dict] = {}
    for warc in warcs:
        with open(warc, "rb") as f:
            for r in ArchiveIterator(f, check_digests="raise"):
                uri = r.rec_headers.get_header("WARC-Target-URI")
                out.setdefault(uri, {})[r.rec_type] = (r.rec_headers, r.http_headers, r.content_stream().read())
    return out


def test_dead_404_recovered_from_commoncrawl(tmp_path, loopback_web, archives):
    url = f"{loopback_web.base}/gone/story"
    archives.add_capture(url, PAGE, T0 + 3600)
    stats, log, warcs = fetch(tmp_path, archives, [url])
    row = log[url]
    assert (row["error"], row["status"], row["final_url"]) == (None, 200, url)
    assert (row["source"], row["captured_at"], row["archive"]) == ("commoncrawl", _ts(T0 + 3600), "recovered")
    assert row["bytes"] == len(PAGE) and row["charset"] == "utf-8"
    assert stats.info["recovered_commoncrawl"] == 1 and stats.records_out == 1
    # AI opt-outs: a recovered page's host was not asked (no tdmrep.json request, null columns)
    assert row["ai_robots"] is None and row["tdmrep_reserved"] is None
    assert "/.well-known/tdmrep.json" not in [p for p, _ in loopback_web.log]
    recs = records(warcs)[url]
    assert set(recs) == {"response", "metadata"}                  # no request webtext never sent
    headers, http, body = recs["response"]
    assert body == PAGE and http.get_statuscode() == "200"
    assert headers.get_header("WARC-Date") == "2017-02-24T02:33:20Z"
    meta = json.loads(recs["metadata"][2])
    assert meta["source"] == "commoncrawl" and meta["captured_at"] == T0 + 3600
    assert meta["collection"] == "CC-MAIN-2017-09" and meta["charset"] == "utf-8"
    assert meta["archive_record"].startswith(
        f"{archives.urls['cc_data']}/crawl-data/CC-MAIN-2017-09/") and " bytes=" in meta["archive_record"]
    assert archives.requests("wayback") == []


def test_dead_recovered_from_wayback_when_commoncrawl_misses(tmp_path, loopback_web, archives):
    url = f"{loopback_web.base}/gone/w"
    archives.add_capture(url, PAGE, T0 + DAY, source="wayback")
    stats, log, warcs = fetch(tmp_path, archives, [url])
    row = log[url]
    assert (row["error"], row["source"], row["archive"], row["captured_at"]) == (None, "wayback", "recovered", _ts(T0 + DAY))
    assert stats.info["recovered_wayback"] == 1
    meta = json.loads(records(warcs)[url]["metadata"][2])
    assert meta["collection"] == "wayback" and meta["archive_record"] == \
        f"{archives.urls['wayback']}/web/20170225013320id_/{url}"
    assert len(archives.requests("cc_index")) >= 2                 # asked first


def test_the_capture_nearest_the_submission_wins(tmp_path, loopback_web, archives):
    url = f"{loopback_web.base}/gone/n"
    archives.add_capture(url, b"<html><body>before</body></html>", T0 - 2 * DAY, crawl="CC-MAIN-2017-09")
    archives.add_capture(url, b"<html><body>after</body></html>", T0 + 3 * DAY, crawl="CC-MAIN-2017-09")
    archives.add_capture(url, b"<html><body>later</body></html>", T0 + 30 * DAY, crawl="CC-MAIN-2017-13")
    _, log, warcs = fetch(tmp_path, archives, [url])
    assert log[url]["captured_at"] == _ts(T0 + 3 * DAY)
    assert records(warcs)[url]["response"][2] == b"<html><body>after</body></html>"


def test_parked_domain_is_dead(tmp_path, loopback_web, archives):
    w = loopback_web
    w.routes["/parked"] = Route(body=PARKED)
    w.routes["/parked2"] = Route(body=PARKED)
    archives.add_capture(f"{w.base}/parked", PAGE, T0)
    stats, log, warcs = fetch(tmp_path, archives, [f"{w.base}/parked", f"{w.base}/parked2"])
    assert (log[f"{w.base}/parked"]["error"], log[f"{w.base}/parked"]["archive"]) == (None, "recovered")
    assert records(warcs)[f"{w.base}/parked"]["response"][2] == PAGE
    miss = log[f"{w.base}/parked2"]
    assert (miss["error"], miss["archive"], miss["source"], miss["warc_file"]) == ("parked_domain", "miss", None, None)
    assert stats.dropped["parked_domain"] == 1 and stats.info["archive_miss"] == 1
    assert f"{w.base}/parked2" not in records(warcs)                # never archived as the live page


def test_soft_404_is_dead(tmp_path, loopback_web, archives):
    w = loopback_web
    w.routes["/"] = Route(body=LIVE)
    w.routes["/2017/02/story.html"] = Route(302, b"", {"Location": "/", "Content-Type": "text/html"})
    w.routes["/2017/02/other.html"] = Route(302, b"", {"Location": "/", "Content-Type": "text/html"})
    archives.add_capture(f"{w.base}/2017/02/story.html", PAGE, T0 + DAY)
    stats, log, _ = fetch(tmp_path, archives, [f"{w.base}/2017/02/story.html", f"{w.base}/2017/02/other.html"])
    rec = log[f"{w.base}/2017/02/story.html"]
    assert (rec["error"], rec["final_url"], rec["source"]) == (None, f"{w.base}/2017/02/story.html", "commoncrawl")
    assert (log[f"{w.base}/2017/02/other.html"]["error"], log[f"{w.base}/2017/02/other.html"]["archive"]) == \
        ("soft_404", "miss")
    assert stats.dropped["soft_404"] == 1


def test_miss_in_both_keeps_the_live_reason(tmp_path, loopback_web, archives):
    url = f"{loopback_web.base}/gone/nowhere"
    stats, log, warcs = fetch(tmp_path, archives, [url])
    row = log[url]
    assert (row["error"], row["status"], row["archive"], row["source"], row["captured_at"]) == \
        ("http_4xx", 404, "miss", None, None)
    assert stats.info["archive_miss"] == 1 and stats.dropped["http_4xx"] == 1 and (not warcs or not records(warcs))
    assert archives.requests("cc_data") == [] and archives.requests("wayback")


def test_archive_unavailable_is_an_error(tmp_path, loopback_web, archives):
    archives.throttle("cc_index", 100, retry_after="0")
    archives.throttle("wayback", 100, retry_after="0")
    url = f"{loopback_web.base}/gone/e"
    stats, log, _ = fetch(tmp_path, archives, [url], archive_retries=1, backoff_s=0.0)
    assert (log[url]["error"], log[url]["archive"]) == ("http_4xx", "error")
    assert stats.info["archive_error"] == 1


def test_retry_after_from_the_index_is_waited_out(tmp_path, loopback_web, archives):
    url = f"{loopback_web.base}/gone/t"
    archives.add_capture(url, PAGE, T0)
    archives.throttle("cc_index", 1, retry_after="1")
    start = time.monotonic()
    _, log, _ = fetch(tmp_path, archives, [url])
    assert time.monotonic() - start >= 1.0
    assert log[url]["archive"] == "recovered"
    assert archives.requests("cc_index")[:2] == ["/collinfo.json", "/collinfo.json"]


def test_no_archive_request_for_live_pages_and_not_dead_reasons(tmp_path, loopback_web, archives):
    w = loopback_web
    w.routes["/ok"] = Route(body=LIVE)
    w.routes["/pdf"] = Route(body=b"%PDF-1.4", headers={"Content-Type": "application/pdf"})
    w.routes["/forbidden"] = Route(403, b"no")
    w.routes["/robots.txt"] = Route(body=b"User-agent: *\nDisallow: /private\n", headers={"Content-Type": "text/plain"})
    urls = [f"{w.base}/ok", f"{w.base}/pdf", f"{w.base}/forbidden", f"{w.base}/private/x"]
    _, log, warcs = fetch(tmp_path, archives, urls)
    assert archives.log == []
    assert [log[u]["error"] for u in urls] == [None, "not_html", "http_4xx", "robots_disallowed"]
    assert [log[u]["archive"] for u in urls] == [None] * 4
    assert (log[urls[0]]["source"], log[urls[1]]["source"]) == ("live", None)
    assert log[urls[0]]["captured_at"] is None          # a live page's time is fetched_at
    meta = json.loads(records(warcs)[urls[0]]["metadata"][2])
    assert (meta["source"], meta["collection"], meta["archive_record"]) == ("live", None, None)
    assert meta["captured_at"] == int(log[urls[0]]["fetched_at"].timestamp())   # the record says unix s


def test_archive_off_creates_nothing(tmp_path, loopback_web, archives):
    url = f"{loopback_web.base}/gone/off"
    archives.add_capture(url, PAGE, T0)
    _, log, _ = fetch(tmp_path, archives, [url], archive="off")
    assert (log[url]["error"], log[url]["archive"]) == ("http_4xx", None) and archives.log == []


def test_prefer_takes_the_archive_for_old_submissions_and_live_for_recent(tmp_path, loopback_web, archives):
    w = loopback_web
    w.routes["/old"] = Route(body=LIVE)
    w.routes["/new"] = Route(body=LIVE)
    w.routes["/old-uncaptured"] = Route(body=LIVE)
    archives.add_capture(f"{w.base}/old", PAGE, T0 + DAY)
    archives.add_capture(f"{w.base}/new", PAGE, T0 + DAY)
    recent = int(time.time()) - 10 * DAY
    urls = [f"{w.base}/old", f"{w.base}/new", f"{w.base}/old-uncaptured"]
    _, log, warcs = fetch(tmp_path, archives, urls, first_seen=[T0, recent, T0], archive="prefer")
    assert (log[urls[0]]["source"], log[urls[0]]["archive"]) == ("commoncrawl", "recovered")
    assert (log[urls[1]]["source"], log[urls[1]]["archive"]) == ("live", None)
    assert (log[urls[2]]["source"], log[urls[2]]["archive"], log[urls[2]]["error"]) == ("live", "miss", None)
    hits = [p for p, _ in w.log]
    assert "/old" not in hits and "/new" in hits and "/old-uncaptured" in hits
    recs = records(warcs)
    assert recs[urls[0]]["response"][2] == PAGE and recs[urls[1]]["response"][2] == LIVE


def index_table(rows: list[dict]) -> pa.Table:
    """Rows in Common Crawl's columnar index types (cc-index-schema-flat.json)."""
    return pa.table({
        "url_surtkey": pa.array([r["url_surtkey"] for r in rows], pa.string()),
        "url": pa.array([r["url"] for r in rows], pa.string()),
        "fetch_time": pa.array([r["fetch_time"] * 1000 for r in rows], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
        "fetch_status": pa.array([r["status"] for r in rows], pa.int16()),
        "content_mime_type": pa.array([r["mime"] for r in rows], pa.string()),
        "warc_filename": pa.array([r["filename"] for r in rows], pa.string()),
        "warc_record_offset": pa.array([r["offset"] for r in rows], pa.int32()),
        "warc_record_length": pa.array([r["length"] for r in rows], pa.int32()),
    })


def test_columnar_plan_makes_no_cdx_request(tmp_path, loopback_web, archives):
    base = loopback_web.base
    cc_url, wb_url = f"{base}/gone/col", f"{base}/gone/wb"
    row = archives.add_capture(cc_url, PAGE, T0 + DAY)
    archives.add_capture(wb_url, b"<html><body>from the wayback</body></html>", T0 + DAY, source="wayback")
    index = tmp_path / "index" / "crawl=CC-MAIN-2017-09" / "subset=warc"
    index.mkdir(parents=True)
    rows = [{"url_surtkey": surt(cc_url), "url": cc_url, "fetch_time": T0 + DAY, "status": 200, "mime": "text/html",
             "filename": row["filename"], "offset": int(row["offset"]), "length": int(row["length"])}]
    pq.write_table(index_table(rows), index / "part-00000.parquet")
    out = tmp_path / "out"
    out.mkdir()
    stats, log, warcs = fetch(out, archives, [cc_url, wb_url], archive_commoncrawl_columnar=str(tmp_path / "index"))
    assert archives.requests("cc_index") == []                       # no CDX request, no collinfo
    assert len(archives.requests("cc_data")) == 1
    assert (log[cc_url]["source"], log[cc_url]["archive"]) == ("commoncrawl", "recovered")
    assert (log[wb_url]["source"], log[wb_url]["archive"]) == ("wayback", "recovered")
    meta = json.loads(records(warcs)[cc_url]["metadata"][2])
    assert meta["collection"] == "CC-MAIN-2017-09" and stats.info["columnar_matched"] == 1


def test_old_fetch_logs_stay_readable(tmp_path, loopback_web, archives):
    """A version-3 log (no source, captured_at, archive) reads with nulls in the new columns."""
    from webtext.pipeline.schemas import FETCHLOG
    old = pa.schema([f for f in FETCHLOG if f.name not in ("source", "captured_at", "archive")])
    pq.write_table(pa.Table.from_pylist([{"url_id": "a", "url": "u", "bytes": 0, "elapsed_ms": 0, "tries": 1}],
                                        schema=old), tmp_path / "fetchlog-00000.parquet")
    t = pq.read_table(tmp_path / "fetchlog-00000.parquet")
    assert "archive" not in t.column_names
    got = pa.Table.from_pylist(t.to_pylist(), schema=FETCHLOG)
    assert pc.all(pc.is_null(got["archive"])).as_py()


def _fetch_cli(work, toml) -> list[str]:
    import sys
    return [sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(work), "--config", str(toml), "fetch"]


def _warc_bytes(work) -> bytes:
    """The shard's finalized WARC segments decompressed, record ids (random UUIDs, and the
    WARC-Concurrent-To naming them) blanked: all else is deterministic for recovered pages."""
    import gzip
    import re

    data = b"".join(gzip.decompress(p.read_bytes()) for p in sorted(work.glob("warc/warc-00000-*.warc.gz")))
    return re.sub(rb"<urn:uuid:[0-9a-f-]{36}>", b"<urn:uuid:*>", data)


def _log_rows(work) -> list[dict]:
    """The fetch log in journal order without its timings (no row here is live, so
    captured_at is the capture time and stays) and warc_offset (an offset into gzip
    members, whose length the random record ids change)."""
    t = pq.read_table(work / "warc" / "fetchlog-00000.parquet")
    return t.drop_columns(["elapsed_ms", "wait_ms", "fetched_at", "warc_offset"]).to_pylist()


def test_sigkill_during_lookups_then_rerun_equals_an_uninterrupted_run(tmp_path, loopback_web, archives):
    """SIGKILL a fetch (a subprocess) while it waits on slow archives: the rerun repeats no
    journaled lookup and ends with the same WARC bytes (record ids aside) and fetch log as a
    run never killed."""
    import subprocess
    from urllib.parse import parse_qs, unquote, urlsplit

    from conftest import ROOT

    n = 24
    urls = [f"{loopback_web.base}/gone/{i}" for i in range(n)]       # every one a 404 live
    for i, u in enumerate(urls):                                     # CC, Wayback, or no capture
        if i % 3 == 0:
            archives.add_capture(u, PAGE + str(i).encode(), T0 + i * 600)
        elif i % 3 == 1:
            archives.add_capture(u, PAGE + str(i).encode(), T0 + i * 600, source="wayback")
    e = archives.endpoints()
    toml = tmp_path / "webtext.toml"
    toml.write_text(
        "[fetch]\nallow_private = true\nconcurrency = 1\nretries = 0\nhost_delay_s = 0.0\n"
        f'archive = "fallback"\narchive_delay_s = 0.05\narchive_commoncrawl_index = "{e["cc_index"]}"\n'
        f'archive_commoncrawl_data = "{e["cc_data"]}"\narchive_wayback = "{e["wayback"]}"\n')
    works = {name: tmp_path / name for name in ("reference", "killed")}
    for work in works.values():
        (work / "urls").mkdir(parents=True)
        pq.write_table(table(urls), work / "urls" / "urls-00000.parquet")

    r = subprocess.run(_fetch_cli(works["reference"], toml), cwd=ROOT, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr
    work = works["killed"]
    left = kill_fetch_after(_fetch_cli(work, toml), work, 6, ROOT)
    killed_at = len(archives.log)
    journaled = [json.loads(line)["url"] for line in left.splitlines() if line.endswith("}")]
    assert 6 <= len(journaled) < n                                     # killed mid-shard, lookups pending
    r = subprocess.run(_fetch_cli(work, toml), cwd=ROOT, capture_output=True, text=True, timeout=120,
                       check=False)
    assert r.returncode == 0, r.stderr

    asked_after = set()                         # the page URLs the rerun asked the archives about
    for service, path in archives.log[killed_at:]:
        if service == "cc_data":
            continue                            # record fetches name WARC files, not pages
        if "id_/" in path:
            asked_after.add(unquote(path.split("id_/", 1)[1]))
        elif "url" in (q := parse_qs(urlsplit(path).query)):
            asked_after.add(q["url"][0])
    assert asked_after and not asked_after & set(journaled)           # no finished lookup repeated
    assert asked_after <= set(urls) - set(journaled)
    assert _warc_bytes(work) == _warc_bytes(works["reference"])
    assert _warc_bytes(work).count(b"WARC-Type: response") == 16      # 8 from each archive
    assert records(sorted(work.glob("warc/warc-00000-*.warc.gz")))    # digests check out
    assert _log_rows(work) == _log_rows(works["reference"])
    assert [r["archive"] for r in _log_rows(work)].count("recovered") == 16
    for row in pq.read_table(work / "warc" / "fetchlog-00000.parquet").to_pylist():
        if row["warc_file"]:                    # each offset still names the URL's response
            with open(work / "warc" / row["warc_file"], "rb") as f:
                f.seek(row["warc_offset"])
                rec = next(iter(ArchiveIterator(f)))
            assert (rec.rec_type, rec.rec_headers.get_header("WARC-Target-URI")) == ("response", row["url"])

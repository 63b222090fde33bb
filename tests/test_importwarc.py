"""fetch --from-warc: pages for frontier URLs from a Common Crawl–style WARC segment the
user already has, archived as webtext's own records (source "warc"), not fetched live,
and extracted like any page."""

import gzip
import io
import json
import subprocess
import sys
from datetime import UTC, datetime

import pyarrow.parquet as pq
from fastwarc.warc import ArchiveIterator, WarcRecord, WarcRecordType

from webtext.pipeline.config import ExtractConfig, to_dict
from webtext.pipeline.demoweb import _html, docstring_paragraphs
from webtext.pipeline.executor import Task
from webtext.stages import extract
from tests.conftest import Route, run_fetch, url_table

SUBMITTED = 1_700_000_000          # url_table's first_seen of row 0 (row i: + i)


def _iso(unix: int) -> str:
    return datetime.fromtimestamp(unix, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _member(rtype, uri: str | None, block: bytes, ctype: str, date: int = SUBMITTED) -> bytes:
    """One record as its own gzip member, as Common Crawl writes its segments."""
    rec = WarcRecord()
    rec.init_headers(record_type=rtype)
    rec.headers["WARC-Date"] = _iso(date)
    if uri:
        rec.headers["WARC-Target-URI"] = uri
    rec.headers["Content-Type"] = ctype
    rec.set_bytes_content(block)
    buf = io.BytesIO()
    rec.write(buf, checksum_data=True)
    return gzip.compress(buf.getvalue())


def _capture(uri: str, body: bytes, status: str = "200 OK", date: int = SUBMITTED,
             ctype: str = "text/html; charset=utf-8") -> bytes:
    """request + response + metadata, as Common Crawl writes a capture (no webtext metadata)."""
    req = b"GET / HTTP/1.1\r\nHost: x\r\nUser-Agent: CCBot/2.0\r\n\r\n"
    http = f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    meta = b"fetchTimeMs: 120\r\ncharset-detected: UTF-8\r\n"
    return (_member(WarcRecordType.request, uri, req, "application/http; msgtype=request", date)
            + _member(WarcRecordType.response, uri, http + body, "application/http; msgtype=response", date)
            + _member(WarcRecordType.metadata, uri, meta, "application/warc-fields", date))


def _article(i: int) -> bytes:
    paras = docstring_paragraphs()
    return _html("archived.example", f"Archived story {i}", paras[6 * i: 6 * i + 6])


def test_fetch_imports_pages_from_a_common_crawl_segment_and_extract_keeps_them(tmp_path, loopback_web):
    base = loopback_web.base
    urls = [f"{base}/gone/{i}" for i in range(3)] + [f"{base}/live"]
    loopback_web.routes["/live"] = Route(body=_article(9))
    table = url_table(urls)
    info = _member(WarcRecordType.warcinfo, None, b"software: Apache Nutch\r\nisPartOf: CC-MAIN-2023-50\r\n",
                   "application/warc-fields")
    seg = tmp_path / "cc" / "CC-MAIN-20231201-00000.warc.gz"
    seg.parent.mkdir()
    far, near = SUBMITTED + 1 + 300 * 86400, SUBMITTED + 1 + 86400
    seg.write_bytes(
        info
        + _capture(f"{base}/gone/0", _article(0))
        + _capture(f"{base}/gone/1", b"<html><body><p>an old copy</p></body></html>", date=far)
        + b"\x1f\x8b\x08\x00" + b"corrupt member " * 20                       # a damaged record
        + _capture(f"{base}/gone/1", _article(1), date=near)                  # nearer the submission
        + _capture(f"{base}/gone/2", b"<html>gone</html>", status="404 Not Found")
        + _member(WarcRecordType.revisit, f"{base}/gone/2", b"HTTP/1.1 200 OK\r\n\r\n",
                  "application/http; msgtype=response")
        + _capture("http://elsewhere.example/page", _article(5))            # no such URL in urls/
    )
    wdir = tmp_path / "warc"
    wdir.mkdir()
    stats, log, segments = run_fetch(wdir, table, from_warc=[str(seg.parent)], retries=0)

    requested = {path for path, _host in loopback_web.log}
    assert "/gone/0" not in requested and "/gone/1" not in requested     # imported: no live request
    assert {"/gone/2", "/live"} <= requested                              # a 404 capture is no page
    assert log[urls[0]]["source"] == log[urls[1]]["source"] == "warc"
    assert log[urls[0]]["error"] is None and log[urls[0]]["status"] == 200
    assert log[urls[0]]["archive"] is None and log[urls[0]]["tries"] == 0
    assert log[urls[1]]["captured_at"] == datetime.fromtimestamp(near, UTC)     # a timestamp column
    assert log[urls[2]]["error"] == "http_4xx" and log[urls[3]]["source"] == "live"
    assert stats.info["imported_warc"] == 2 and stats.info["import_matched"] == 2
    assert stats.info["import_bad_record"] == 1
    assert stats.info["import_unusable"] == 1                              # the 404

    metas = {}
    for path in segments:
        with open(path, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.metadata):
                m = json.loads(rec.reader.read())
                metas[m["url"]] = m
    m = metas[urls[1]]
    assert m["source"] == "warc" and m["collection"] == seg.name and m["captured_at"] == near
    assert m["archive_record"].startswith(f"{seg}#") and m["score"] == 10 and m["subreddits"] == ["test"]

    out = tmp_path / "docs-00000.parquet"
    xstats = extract.extract_shard(Task("extract", "00000", extract.extract_shard, segments, [out],
                                        {"extract": to_dict(ExtractConfig(dates=False))}))
    docs = {r["url"]: r for r in pq.read_table(out).to_pylist()}
    assert "no_metadata" not in xstats.dropped
    assert docs[urls[0]]["source"] == docs[urls[1]]["source"] == "warc"
    assert docs[urls[1]]["captured_at"] == datetime.fromtimestamp(near, UTC) and docs[urls[3]]["source"] == "live"
    assert docs[urls[1]]["num_words"] >= 100 and "old copy" not in docs[urls[1]]["text"]


def test_fetch_from_missing_warc_is_one_line_and_exit_2(tmp_path):
    r = subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(tmp_path / "w"), "fetch",
                        "--from-warc", str(tmp_path / "missing.warc.gz")], check=False, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "missing.warc.gz does not exist" in errors[0]
    assert "Traceback" not in r.stderr

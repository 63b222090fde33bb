"""The columnar-index planner: SURT keys as Common Crawl writes them, and the one-pass join
of a URL set against Parquet files in the index's schema, checked capture by capture
against stages.captures.choose_capture; a 2M-row index measured in a subprocess."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from webtext.stages.captures import Capture, choose_capture, safe_filename
from webtext.stages.columnar import PLAN, plan_from_columnar, safe_filenames, to_captures
from webtext.stages.surt import surt

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400

# --- SURT ----------------------------------------------------------------------------------
# Real (url, url_surtkey) pairs as the archives publish them.
REAL = [
    # cc-notebooks "Table Joins to Look Up Large Lists of URLs", CDX line of CC-MAIN-2021-10
    ("https://commoncrawl.org/2021/02/january-2021-crawl-archive-now-available/",
     "org,commoncrawl)/2021/02/january-2021-crawl-archive-now-available"),
    # a CC columnar-index row (fetch_month test data in a public cc-pyspark-style job)
    ("https://cbs.curtin.edu.au/index.cfm?objectId=32573652-B92A-DD42-3829C962C16E51D1",
     "au,edu,curtin,cbs)/index.cfm?objectid=32573652-b92a-dd42-3829c962c16e51d1"),
    # cc-index-table src/main/resources/schema/cc-index-schema-flat.json, field examples
    ("https://www.example.com/path/index.html", "com,example)/path/index.html"),
    # CC-MAIN-2025-33 index answer and Wayback CDX rows (tests/test_archives.py samples)
    ("http://www.example.com/", "com,example)/"),
    ("http://www.archive.org:80/", "org,archive)/"),
]
# The surt package's own expectations (internetarchive/surt tests/test_surt.py).
PACKAGE = [
    ("http://www.archive.org/", "org,archive)/"),
    ("http://archive.org/goo/", "org,archive)/goo"),
    ("http://archive.org/goo/?", "org,archive)/goo"),
    ("http://archive.org/goo/?b&a", "org,archive)/goo?a&b"),
    ("http://archive.org/goo/?a=2&b&a=1", "org,archive)/goo?a=1&a=2&b"),
    ("http://archive.org/index.php?PHPSESSID=0123456789abcdefghijklemopqrstuv&action=profile;u=4221",
     "org,archive)/index.php?action=profile;u=4221"),
    ("whois://whois.isoc.org.il/shaveh.co.il", "il,org,isoc,whois)/shaveh.co.il"),
    ("http://visit.webhosting.yahoo.com/visit.gif?&r=http%3A//web.archive.org/web/20090517140029/http%3A//"
     "anthonystewarthead.electric-chi.com/&b=Netscape%205.0%20%28Windows%3B%20en-US%29&s=1366x768&o=Win32&c=24"
     "&j=true&v=1.2",
     "com,yahoo,webhosting,visit)/visit.gif?&b=netscape%205.0%20(windows;%20en-us)&c=24&j=true&o=win32"
     "&r=http://web.archive.org/web/20090517140029/http://anthonystewarthead.electric-chi.com/&s=1366x768&v=1.2"),
    ("mailto:foo@example.com", "mailto:foo@example.com"),
    ("http://example.com/app?item=Wroc%C5%82aw", "com,example)/app?item=wroc%c5%82aw"),
    ("http://192.168.1.254/info/", "254,1,168,192)/info"),
    # the known quirk the index keeps: %26 decoded to "&" splits the value
    ("http://example.com/script?type=a+b+%26+c&grape=wine", "com,example)/script?+c&grape=wine&type=a+b+"),
]
# Edge cases; expected values checked against surt 0.3.1 itself.
EDGE = [
    ("http://www.Example.com/Path?b=2&a=1", "com,example)/path?a=1&b=2"),
    ("https://example.com:443/a", "com,example)/a"),                  # default port
    ("http://example.com:443/a", "com,example:443)/a"),               # not http's default
    ("http://example.com:8080/a/", "com,example:8080)/a"),
    ("http://user:pw@www.example.com/x", "com,example)/x"),           # userinfo dropped
    ("http://example.com./x", "com,example)/x"),                      # trailing dot
    ("http://Bücher.ch/", "ch,xn--bcher-kva)/"),                      # IDN host
    ("http://b%C3%BCcher.ch/", "ch,xn--bcher-kva)/"),
    ("http://example.com/a#frag", "com,example)/a"),                  # fragment
    ("http://www2.example.com/", "com,example)/"),                    # www\d*.
    ("http://www.www.example.com/", "com,example,www)/"),             # one label only
    ("http://wwwexample.com/", "com,wwwexample)/"),
    ("http://example.com/%7Efoo/%C3%A9", "com,example)/~foo/%c3%a9"), # escapes: decoded, re-escaped, lowercased
    ("http://example.com/caf%c3%a9?q=%C3%A9", "com,example)/caf%c3%a9?q=%c3%a9"),
    ("http://example.com/a%2Fb", "com,example)/a/b"),
    ("http://example.com/a b", "com,example)/a%20b"),
    ("http://example.com/a/./b/../c//d", "com,example)/a/c/d"),
    ("example.com/x", "com,example)/x"),                              # no scheme
    ("http://https://example.com/x", "com,example)/x"),
    ("http://3279880203/blah", "11,0,127,195)/blah"),                 # numeric host
    ("http://[::1]:8080/", "::1:8080)/"),
    ("http://example.com/?a=&a", "com,example)/?a&a="),
    ("  http://example.com/x\t ", "com,example)/x"),
]


@pytest.mark.parametrize("url,key", REAL + PACKAGE + EDGE)
def test_surt(url, key):
    assert surt(url) == key


def test_surt_bad_port():
    with pytest.raises(ValueError):
        surt("http://example.com:99999/")


def test_safe_filenames_agree():
    names = ["crawl-data/CC-MAIN-2025-33/segments/1754151279521.11/warc/CC-MAIN-20250802220907-00970.warc.gz",
             "/etc/passwd", "../x", "a/../b", "a/./b", "http://evil/x", "a//b", "a b", "a%2e", "a?x", ".", "..",
             "a/..", "...", "a/...", "", "a\n", "a/b/", None]
    got = safe_filenames(pa.array(names, pa.string())).to_pylist()
    assert got == [safe_filename(n) for n in names]


# --- the join ------------------------------------------------------------------------------

def index_table(rows: list[dict], time_type=pa.timestamp("ms", tz="UTC"), crawl: bool = False) -> pa.Table:
    """Rows in the columnar index's types (cc-index-schema-flat.json: string, timestamp,
    short, integer)."""
    cols = {
        "url_surtkey": pa.array([r["url_surtkey"] for r in rows], pa.string()),
        "url": pa.array([r["url"] for r in rows], pa.string()),
        "url_host_name": pa.array(["h"] * len(rows), pa.string()),   # a column the planner does not read
        "fetch_time": pa.array([r["fetch_time"] * 1000 for r in rows], pa.int64()).cast(pa.timestamp("ms", tz="UTC")).cast(time_type),
        "fetch_status": pa.array([r["status"] for r in rows], pa.int16()),
        "content_mime_type": pa.array([r["mime"] for r in rows], pa.string()),
        "warc_filename": pa.array([r["filename"] for r in rows], pa.string()),
        "warc_record_offset": pa.array([r["offset"] for r in rows], pa.int32()),
        "warc_record_length": pa.array([r["length"] for r in rows], pa.int32()),
    }
    if crawl:
        cols["crawl"] = pa.array([r["crawl"] for r in rows], pa.string())
    return pa.table(cols)


def warc(crawl: str, n: int) -> str:
    return f"crawl-data/{crawl}/segments/1614178365186.46/warc/{crawl.replace('MAIN-', 'MAIN-2021')}-{n:05d}.warc.gz"


def expected(urls: pa.Table, rows: list[dict], drift: float) -> dict[str, Capture]:
    """choose_capture on each URL's rows (key of url or fetch_url) that parse_cc_cdx keeps
    (safe filename, offset >= 0, length > 0), in (filename, offset) order."""
    out = {}
    for u in urls.to_pylist():
        keys = {surt(u["url"]), surt(u.get("fetch_url") or u["url"])}
        caps = [Capture("commoncrawl", r["crawl"], "", r["fetch_time"], r["url"], r["status"], r["mime"] or "", "",
                        r["filename"], r["offset"], r["length"])
                for r in rows if r["url_surtkey"] in keys and safe_filename(r["filename"]) and r["offset"] >= 0 and r["length"] > 0]
        caps.sort(key=lambda c: (c.filename, c.offset))
        best = choose_capture(caps, u["first_seen"], drift)
        if best:
            out[u["url_id"]] = best
    return out


def as_tuple(c: Capture) -> tuple:
    return (c.collection, c.captured_at, c.url, c.status, c.mime, c.filename, c.offset, c.length)


T0 = 1_614_000_000   # 2021-02-22


def small_world(tmp_path: Path):
    urls = pa.table({
        "url_id": ["a", "b", "c", "d", "e", "f"],
        "url": ["https://commoncrawl.org/2021/02/january-2021-crawl-archive-now-available/",
                "http://example.com/page?a=1&b=2", "http://absent.example/", "http://unsafe.example/",
                "http://before.example/", "http://tie.example/"],
        "fetch_url": [None, "http://www.example.com/page?b=2&a=1", None, None, None, None],
        "first_seen": [T0, T0, T0, T0, T0, T0],
    })
    A, B = "CC-MAIN-2021-04", "CC-MAIN-2021-10"
    key_a, key_b = surt(urls["url"][0].as_py()), "com,example)/page?a=1&b=2"
    rows = [
        # a: one after (nearest wins), one further after, one before, a 404 nearer, a PDF nearer
        dict(url_surtkey=key_a, url=urls["url"][0].as_py(), fetch_time=T0 + 9 * DAY, status=200, mime="text/html", crawl=B, filename=warc(B, 1), offset=250975924, length=6922),
        dict(url_surtkey=key_a, url=urls["url"][0].as_py(), fetch_time=T0 + 30 * DAY, status=200, mime="text/html", crawl=B, filename=warc(B, 2), offset=10, length=100),
        dict(url_surtkey=key_a, url=urls["url"][0].as_py(), fetch_time=T0 - 2 * DAY, status=200, mime="text/html", crawl=A, filename=warc(A, 1), offset=0, length=100),
        dict(url_surtkey=key_a, url=urls["url"][0].as_py(), fetch_time=T0 + 1 * DAY, status=404, mime="text/html", crawl=B, filename=warc(B, 3), offset=0, length=100),
        dict(url_surtkey=key_a, url=urls["url"][0].as_py(), fetch_time=T0 + 2 * DAY, status=200, mime="application/pdf", crawl=B, filename=warc(B, 3), offset=5, length=100),
        # b: found through fetch_url's key too (same key here); XHTML with parameters counts as HTML
        dict(url_surtkey=key_b, url="https://www.example.com/page?b=2&a=1", fetch_time=T0 + 3 * DAY, status=200, mime="Application/XHTML+XML; charset=utf-8", crawl=B, filename=warc(B, 4), offset=1, length=2),
        dict(url_surtkey=key_b, url="https://www.example.com/page?b=2&a=1", fetch_time=T0 + 400 * DAY, status=200, mime="text/html", crawl=B, filename=warc(B, 4), offset=3, length=2),
        # d: only an unsafe filename, and a negative offset
        dict(url_surtkey="example,unsafe)/", url="http://unsafe.example/", fetch_time=T0 + DAY, status=200, mime="text/html", crawl=B, filename="../../etc/passwd", offset=0, length=10),
        dict(url_surtkey="example,unsafe)/", url="http://unsafe.example/", fetch_time=T0 + DAY, status=200, mime="text/html", crawl=B, filename=warc(B, 9), offset=-5, length=10),
        # e: captures before only; the nearest before wins, one is beyond the drift
        dict(url_surtkey="example,before)/", url="http://before.example/", fetch_time=T0 - 5 * DAY, status=200, mime="text/html", crawl=A, filename=warc(A, 2), offset=0, length=10),
        dict(url_surtkey="example,before)/", url="http://before.example/", fetch_time=T0 - 1 * DAY, status=200, mime="text/html", crawl=A, filename=warc(A, 3), offset=0, length=10),
        dict(url_surtkey="example,before)/", url="http://before.example/", fetch_time=T0 + 500 * DAY, status=200, mime="text/html", crawl=B, filename=warc(B, 5), offset=0, length=10),
        # f: two captures in the same second: the smaller (filename, offset)
        dict(url_surtkey="example,tie)/", url="http://tie.example/", fetch_time=T0 + DAY, status=200, mime="text/html", crawl=B, filename=warc(B, 7), offset=50, length=10),
        dict(url_surtkey="example,tie)/", url="http://tie.example/", fetch_time=T0 + DAY, status=200, mime="text/html", crawl=B, filename=warc(B, 7), offset=20, length=10),
        # rows for no URL of the set
        dict(url_surtkey="org,other)/", url="http://other.org/", fetch_time=T0, status=200, mime="text/html", crawl=A, filename=warc(A, 4), offset=0, length=10),
    ]
    return urls, rows


def write_hive(tmp_path: Path, rows: list[dict]) -> Path:
    """One file per crawl in the published layout (crawl=/subset=warc/, crawl not a column),
    the older crawl's fetch_time as Spark's INT96, the other as timestamp[ms, UTC]."""
    root = tmp_path / "warc"
    for crawl in sorted({r["crawl"] for r in rows}):
        part = sorted((r for r in rows if r["crawl"] == crawl), key=lambda r: r["url_surtkey"])
        folder = root / f"crawl={crawl}" / "subset=warc"
        folder.mkdir(parents=True)
        int96 = crawl.endswith("04")
        pq.write_table(index_table(part, pa.timestamp("ns") if int96 else pa.timestamp("ms", tz="UTC")),
                       folder / "part-00000.parquet", use_deprecated_int96_timestamps=int96)
    return root


def test_plan_matches_choose_capture(tmp_path):
    urls, rows = small_world(tmp_path)
    root = write_hive(tmp_path, rows)
    plan = plan_from_columnar(urls, root, max_drift_days=365)
    assert plan.table.schema == PLAN
    got = {k: as_tuple(c) for k, c in to_captures(plan.table).items()}
    want = {k: as_tuple(c) for k, c in expected(urls, rows, 365).items()}
    assert got == want
    assert set(got) == {"a", "b", "e", "f"}
    assert got["a"][1] == T0 + 9 * DAY and got["a"][0] == "CC-MAIN-2021-10"
    assert got["e"][1] == T0 - DAY and got["f"][6] == 20
    c = plan.counts
    assert (c["urls"], c["matched"], c["no_capture"], c["unsafe_filename"], c["bad_record"]) == (6, 4, 2, 1, 1)
    assert c["index_rows"] == len(rows) and c["key_rows"] == len(rows) - 1


def test_crawl_from_column_or_filename(tmp_path):
    urls, rows = small_world(tmp_path)
    pq.write_table(index_table(rows, crawl=True), tmp_path / "with_crawl.parquet")
    pq.write_table(index_table(rows), tmp_path / "flat.parquet")
    for name in ("with_crawl.parquet", "flat.parquet"):
        plan = plan_from_columnar(urls, tmp_path / name, max_drift_days=365)
        got = {k: as_tuple(c) for k, c in to_captures(plan.table).items()}
        assert got == {k: as_tuple(c) for k, c in expected(urls, rows, 365).items()}


def test_random_agreement_pruning_and_compaction(tmp_path):
    rng = random.Random(5)
    n = 300
    urls = pa.table({"url_id": [f"u{i}" for i in range(n)], "url": [f"http://h{i % 37}.example/p/{i}" for i in range(n)],
                     "first_seen": [T0 + rng.randint(-50, 50) * DAY for _ in range(n)]})
    rows = []
    for i in range(n + 100):                       # URLs n..n+99 are in the index only
        for _ in range(rng.randint(0, 6)):
            crawl = rng.choice(["CC-MAIN-2020-50", "CC-MAIN-2021-04", "CC-MAIN-2021-10"])
            rows.append(dict(url_surtkey=surt(f"http://h{i % 37}.example/p/{i}"), url=f"https://h{i % 37}.example/p/{i}",
                             fetch_time=T0 + rng.randint(-120, 120) * DAY // rng.choice([1, 2, 3]),
                             status=rng.choice([200, 200, 200, 301, 404]),
                             mime=rng.choice(["text/html", "text/html; charset=UTF-8", "application/pdf", None]),
                             crawl=crawl, filename=warc(crawl, rng.randint(0, 3)), offset=rng.randint(0, 10**9), length=rng.randint(1, 10**5)))
    rows.sort(key=lambda r: r["url_surtkey"])
    pq.write_table(index_table(rows), tmp_path / "idx.parquet", row_group_size=64)
    want = {k: as_tuple(c) for k, c in expected(urls, rows, 60).items()}
    plan = plan_from_columnar(urls, tmp_path / "idx.parquet", max_drift_days=60, batch_rows=50, compact_rows=10)
    assert {k: as_tuple(c) for k, c in to_captures(plan.table).items()} == want
    assert plan.counts["matched"] == len(want) > 100
    few = urls.slice(0, 3)                          # three keys: most row groups skipped
    plan = plan_from_columnar(few, tmp_path / "idx.parquet", max_drift_days=60)
    assert plan.counts["row_groups_skipped"] > plan.counts["row_groups"] // 2
    assert {k: as_tuple(c) for k, c in to_captures(plan.table).items()} == \
        {k: v for k, v in want.items() if k in {"u0", "u1", "u2"}}


# --- size: 2M index rows in several files, peak memory and throughput ---------------------

SIZE_SCRIPT = r"""
import json, sys, time
import pyarrow as pa, pyarrow.parquet as pq
from webtext.stages.columnar import plan_from_columnar

def hwm_kib():
    # this process's own peak RSS (VmHWM): unlike ru_maxrss, it does not carry over a
    # larger parent's peak across fork and exec (the test suite's, under pytest)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

folder, n_urls = sys.argv[1], int(sys.argv[2])
urls = pq.read_table(folder + "/urls.parquet")
base = hwm_kib()
t = time.perf_counter()
plan = plan_from_columnar(urls, folder + "/index", max_drift_days=365, batch_rows=65536)
dt = time.perf_counter() - t
peak = hwm_kib()
whole = pq.read_table(folder + "/index")          # the control: the index read whole
print(json.dumps({"seconds": dt, "base_kib": base, "peak_kib": peak, "counts": plan.counts,
                  "whole_kib": hwm_kib()}))
"""


def build_big(folder: Path, files: int, per_file: int, n_urls: int) -> int:
    """``files`` index files of ``per_file`` rows (keys sorted within a file, row groups of
    64k rows) and a URL set whose first half is in the index; returns the index's bytes
    in memory if read whole."""
    (folder / "index").mkdir(parents=True)
    whole = 0
    for f in range(files):
        i = np.arange(f * per_file, (f + 1) * per_file)
        host = pc.cast(pa.array(i % 5000), pa.string())
        num = pc.cast(pa.array(i), pa.string())
        t = pa.table({
            "url_surtkey": pc.binary_join_element_wise("com,site", host, ")/page/", num, ""),
            "url": pc.binary_join_element_wise("https://site", host, ".com/page/", num, ""),
            "fetch_time": pa.array((T0 + (i % 400 - 200) * DAY) * 1000, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "fetch_status": pa.array(np.where(i % 7 == 0, 404, 200), pa.int16()),
            "content_mime_type": pa.array(np.where(i % 11 == 0, "application/pdf", "text/html")),
            "warc_filename": pc.binary_join_element_wise(
                "crawl-data/CC-MAIN-2021-10/segments/1614178365186.46/warc/CC-MAIN-20210303012222-20210303042222-",
                pc.cast(pa.array(i % 800), pa.string()), ".warc.gz", ""),
            "warc_record_offset": pa.array(i * 7 % 2**30, pa.int32()),
            "warc_record_length": pa.array(i % 50000 + 500, pa.int32()),
        })
        t = t.take(pc.sort_indices(t["url_surtkey"]))
        whole += t.nbytes
        pq.write_table(t, folder / "index" / f"part-{f:05d}.parquet", row_group_size=65536)
    total = files * per_file
    j = np.arange(n_urls) * (2 * total // n_urls)   # every other one past the index's end
    urls = pa.table({
        "url_id": pc.cast(pa.array(np.arange(n_urls)), pa.string()),
        "url": pc.binary_join_element_wise("https://site", pc.cast(pa.array(j % 5000), pa.string()), ".com/page/",
                                           pc.cast(pa.array(j), pa.string()), ""),
        "first_seen": pa.array(np.full(n_urls, T0), pa.int64())})
    pq.write_table(urls, folder / "urls.parquet")
    return whole


def test_two_million_rows_bounded_memory(tmp_path):
    files, per_file, n_urls = 4, 500_000, 20_000
    whole = build_big(tmp_path, files, per_file, n_urls)
    out = subprocess.run([sys.executable, "-c", SIZE_SCRIPT, str(tmp_path), str(n_urls)], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    c = r["counts"]
    assert c["index_rows"] == files * per_file and c["index_files"] == files
    j = np.arange(n_urls) * (2 * files * per_file // n_urls)          # as build_big
    j = j[j < files * per_file]
    assert c["matched"] == int(((j % 7 != 0) & (j % 11 != 0)).sum())   # no 404s, no PDFs
    grew, control = (r["peak_kib"] - r["base_kib"]) * 1024, (r["whole_kib"] - r["base_kib"]) * 1024
    print(f"\n2M-row index: {r['seconds']:.2f} s, {files * per_file / r['seconds']:,.0f} rows/s, "
          f"peak RSS +{grew / 2**20:.0f} MiB; reading it whole: +{control / 2**20:.0f} MiB "
          f"(Arrow bytes {whole / 2**20:.0f} MiB); counts {c}")
    # never held whole: 2M rows cost +157 MiB of peak RSS here (one batch of each file's
    # columns, the allocator's pools), 500k rows +119 MiB, and reading them whole +635 MiB
    assert grew < control / 2


def _upload(fs, root: Path, bucket_prefix: str) -> None:
    for path in sorted(root.rglob("*.parquet")):
        with fs.open_output_stream(f"{bucket_prefix}/{path.relative_to(root).as_posix()}") as out:
            out.write(path.read_bytes())


def test_bucket_url_gives_the_local_plan(tmp_path):
    """The published layout uploaded to moto's S3 on loopback: the plan from the s3:// URL
    (credentials in the URL, or anonymous=true as for s3://commoncrawl) equals the local one."""
    pytest.importorskip("moto")
    from conftest import KEY, SECRET, moto_s3
    from webtext.stages.columnar import index_files

    urls, rows = small_world(tmp_path)
    root = write_hive(tmp_path, rows)
    local = plan_from_columnar(urls, root, max_drift_days=365, batch_rows=2)
    with moto_s3() as (fs, endpoint):
        _upload(fs, root, "webtext-test/cc-index/table/cc-main/warc")
        with fs.open_output_stream("webtext-test/cc-index/table/cc-main/warc/_SUCCESS") as out:
            out.write(b"")                            # not Parquet: not listed
        opts = f"endpoint_override={endpoint}&scheme=http&region=us-east-1"
        for url in (f"s3://{KEY}:{SECRET}@webtext-test/cc-index/table/cc-main/warc/?{opts}",
                    f"s3://webtext-test/cc-index/table/cc-main/warc/?anonymous=true&{opts}"):
            assert index_files(url) == [
                "s3://webtext-test/cc-index/table/cc-main/warc/crawl=CC-MAIN-2021-04/subset=warc/part-00000.parquet",
                "s3://webtext-test/cc-index/table/cc-main/warc/crawl=CC-MAIN-2021-10/subset=warc/part-00000.parquet"]
            plan = plan_from_columnar(urls, url, max_drift_days=365, batch_rows=2)
            assert plan.table.equals(local.table)
            assert plan.counts == local.counts
            assert set(plan.table["crawl"].to_pylist()) == {"CC-MAIN-2021-04", "CC-MAIN-2021-10"}
        one = f"s3://webtext-test/cc-index/table/cc-main/warc/crawl=CC-MAIN-2021-10/subset=warc/part-00000.parquet?anonymous=true&{opts}"
        assert plan_from_columnar(urls, one, max_drift_days=365).counts["index_files"] == 1
        with pytest.raises(FileNotFoundError):
            plan_from_columnar(urls, f"s3://webtext-test/nothing/?anonymous=true&{opts}", max_drift_days=365)

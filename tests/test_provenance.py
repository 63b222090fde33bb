"""Provenance (#22): a page's source (live, commoncrawl, wayback) and capture time go from
fetch's WARC metadata record into the documents, survive dedup and decontaminate, and the
report counts them per year of submission. Shards and WARCs from before read as live."""

import json

import pyarrow.parquet as pq
from conftest import doc_row, doc_table, make_context, shared_path
from fastwarc.warc import WarcRecordType

from webtext.pipeline.config import ExtractConfig, to_dict
from webtext.pipeline.demoweb import _html, docstring_paragraphs
from webtext.pipeline.executor import Task
from webtext.pipeline.report import collect_report, render_html, write_report
from webtext.pipeline.schemas import CLEAN, DEDUP, DOCS, stored, unix_seconds, upgrade_docs
from webtext.stages import decontaminate as D
from webtext.stages import dedup, extract
from webtext.stages import urls as U
from webtext.stages.warcstore import WarcSegments

Y2019, Y2020 = 1_560_000_000, 1_590_000_000     # June 2019, May 2020 (UTC)


def _page(segs, url: str, body: bytes, meta: dict) -> None:
    """A response and the metadata record beside it, with exactly the keys in ``meta``."""
    http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
    resp = segs._record(WarcRecordType.response, url, http + body, "application/http; msgtype=response")
    segs._append(resp)
    segs._append(segs._record(WarcRecordType.metadata, url, json.dumps(meta).encode(), "application/json",
                              (("WARC-Concurrent-To", resp.record_id),)))


def _meta(url: str, **extra) -> dict:
    return {"url_id": U.url_id(url), "url": url, "score": 3, "num_submissions": 1, "first_seen": Y2019,
            "subreddits": ["test"], "title": "x", "charset": "utf-8", **extra}


def test_extract_carries_source_and_capture_time(tmp_path):
    paras = docstring_paragraphs()
    pages = {"http://a.example/gone": {"source": "wayback", "captured_at": 1_262_304_000,
                                       "collection": "web", "archive_record": "20100101000000"},
             "http://b.example/cc": {"source": "commoncrawl", "captured_at": 1_500_000_000},
             "http://c.example/live": {"source": "live", "captured_at": 1_700_000_123},
             "http://d.example/old": {}}        # a metadata record written before #22
    warc, out = tmp_path / "warc-00000-000.warc.gz", tmp_path / "docs-00000.parquet"
    segs = WarcSegments(tmp_path, "00000", "test-agent", 1 << 30, {})
    for i, (url, extra) in enumerate(pages.items()):
        _page(segs, url, _html(U.host(url), "Title", paras[5 * i:5 * i + 5]), _meta(url, **extra))
    segs.close()
    stats = extract.extract_shard(Task("extract", "00000", extract.extract_shard, [warc], [out],
                                       {"extract": to_dict(ExtractConfig())}))
    t = pq.read_table(out)
    assert t.schema.equals(stored(DOCS)) and stats.records_out == 4
    got = {r["url"]: (r["source"], r["captured_at"]) for r in unix_seconds(t).to_pylist()}
    assert got == {"http://a.example/gone": ("wayback", 1_262_304_000),
                   "http://b.example/cc": ("commoncrawl", 1_500_000_000),
                   "http://c.example/live": ("live", None),      # the fetch time stays in the fetch log
                   "http://d.example/old": ("live", None)}


def _old_style(rows):
    """A shard as written before schema version 4: no source, no captured_at."""
    return doc_table(rows).drop_columns(["source", "captured_at"])


def test_upgrade_docs_fills_defaults_and_keeps_new_shards():
    up = upgrade_docs(_old_style([doc_row("a", "x y z"), doc_row("b", "x")]))
    assert set(DOCS.names) == set(up.column_names) and up.select(DEDUP.names).cast(DEDUP).schema.equals(DEDUP)
    assert up["source"].to_pylist() == ["live", "live"] and up["captured_at"].to_pylist() == [None, None]
    new = doc_table([doc_row("b", "x", source="wayback", captured_at=5)])
    assert upgrade_docs(new).equals(new)


def test_columns_survive_dedup_and_old_shards_still_dedup(tmp_path):
    paras = docstring_paragraphs()
    base, other, third = (" ".join(paras[i:i + 6]) for i in (0, 10, 20))
    (tmp_path / "docs").mkdir()
    # An old shard (before v4) beside a new one: a rerun over both must write today's schema.
    pq.write_table(_old_style([doc_row("a1", base, karma=5), doc_row("a2", third)]),
                   tmp_path / "docs" / "docs-00000.parquet")
    pq.write_table(doc_table([doc_row("b1", base, karma=40, source="wayback", captured_at=1_262_304_000),
                              doc_row("b2", other, source="commoncrawl", captured_at=1_500_000_000)]),
                   tmp_path / "docs" / "docs-00001.parquet")
    stats = dedup.run(make_context(tmp_path))
    assert stats["dropped"] == {"exact_duplicate": 1}
    rows = {}
    for f in sorted((tmp_path / "dedup").glob("dedup-*.parquet")):
        t = pq.read_table(f)
        assert t.schema.equals(stored(DEDUP))
        rows |= {r["doc_id"]: (r["source"], r["captured_at"]) for r in unix_seconds(t).to_pylist()}
    assert rows == {"b1": ("wayback", 1_262_304_000), "b2": ("commoncrawl", 1_500_000_000), "a2": ("live", None)}


def test_columns_survive_decontaminate_and_old_shards_still_clean(tmp_path):
    paras = docstring_paragraphs()
    cfg = {"benchmarks": ["lambada"], "benchmark_dir": str(shared_path("benchmarks")), "fp_probes": 1000}
    for name, table in (("new", doc_table([doc_row("w", " ".join(paras[:6]), source="wayback", captured_at=7),
                                           doc_row("l", " ".join(paras[10:16]))])),
                        ("old", _old_style([doc_row("o", " ".join(paras[20:26]))]))):
        (tmp_path / name / "dedup").mkdir(parents=True)
        pq.write_table(table, tmp_path / name / "dedup" / "dedup-00000.parquet")
        D.run(make_context(tmp_path / name, decontaminate=cfg))
        t = pq.read_table(tmp_path / name / "clean" / "clean-00000.parquet")
        assert t.schema.equals(stored(CLEAN))
        got = {r["doc_id"]: (r["source"], r["captured_at"]) for r in unix_seconds(t).to_pylist()}
        assert got == ({"w": ("wayback", 7), "l": ("live", None)} if name == "new" else {"o": ("live", None)})


def test_report_counts_live_and_recovered_documents_per_year(tmp_path):
    (tmp_path / "docs").mkdir()
    new = [doc_row("a", "t", first_seen=Y2019, source="wayback", captured_at=1),
           doc_row("b", "t", first_seen=Y2019, source="wayback", captured_at=2),
           doc_row("c", "t", first_seen=Y2019, source="commoncrawl", captured_at=3),
           doc_row("d", "t", first_seen=Y2020, source="live", captured_at=4),
           doc_row("e", "t", first_seen=Y2020, source="commoncrawl", captured_at=5)]
    pq.write_table(doc_table(new), tmp_path / "docs" / "docs-00000.parquet")
    pq.write_table(_old_style([doc_row("f", "t", first_seen=Y2019), doc_row("g", "t", first_seen=Y2020)]),
                   tmp_path / "docs" / "docs-00001.parquet")
    write_report(tmp_path, as_json=True)
    rec = json.loads((tmp_path / "reports" / "report.json").read_text())["documents"]["recovery"]
    assert rec["sources"] == ["live", "commoncrawl", "wayback"]
    assert rec["by_year"] == [{"year": 2019, "live": 1, "commoncrawl": 1, "wayback": 2},
                              {"year": 2020, "live": 2, "commoncrawl": 1, "wayback": 0}]
    assert rec["total"] == {"live": 3, "commoncrawl": 2, "wayback": 2} and rec["recovered_share"] == round(4 / 7, 4)
    page = render_html(collect_report(tmp_path))
    section = page.split('<section id="documents">', 1)[1].split("</section>", 1)[0]
    assert "data:image/png;base64," in section and "<td>wayback</td>" in section


def test_report_on_old_shards_only_counts_everything_live(tmp_path):
    (tmp_path / "docs").mkdir()
    pq.write_table(_old_style([doc_row("f", "t", first_seen=Y2019)]), tmp_path / "docs" / "docs-00000.parquet")
    rec = collect_report(tmp_path)["documents"]["recovery"]
    assert rec["by_year"] == [{"year": 2019, "live": 1, "commoncrawl": 0, "wayback": 0}]
    assert rec["recovered_share"] == 0.0

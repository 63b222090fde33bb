"""Tasks by size, not by harvest's shard count: fetch splits new URLs into frontier
files of about ``fetch.urls_per_task`` by site, every later stage follows, and the
pipeline writes the same bytes with one worker and with eight."""

import io
import re

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rich.console import Console

from webtext.pipeline.config import load_config
from webtext.pipeline.demo import demo_overrides
from webtext.pipeline.demoweb import DemoProxy, build_demo_web
from webtext.pipeline.executor import Context
from webtext.pipeline.run import ORDER, run_all
from webtext.stages.fetch import split_by_site
from webtext.stages.politeness import site_of

from conftest import pipeline_outputs


def test_split_by_site_keeps_each_site_whole_and_rows_in_order():
    hosts = [f"h{i % 7}.site{i % 13}.example.com" if i % 3 else f"www.news{i % 5}.co.uk" for i in range(1000)]
    table = pa.table({"url_id": [f"{i:016x}" for i in range(1000)], "domain": hosts})
    parts = split_by_site(table, 100)
    assert 1 < len(parts) <= 10
    assert sum(p.num_rows for p in parts) == 1000
    seen = {}
    for n, part in enumerate(parts):
        ids = part["url_id"].to_pylist()
        assert ids == sorted(ids)                        # rows keep their order
        for host in part["domain"].to_pylist():
            assert seen.setdefault(site_of(host), n) == n  # a site lives in one part
    assert sorted(i for p in parts for i in p["url_id"].to_pylist()) == table["url_id"].to_pylist()
    assert split_by_site(table, 1000) == [table] and split_by_site(table.slice(0, 0), 10) == []
    assert [p.num_rows for p in split_by_site(table, 100)] == [p.num_rows for p in parts]   # deterministic


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("scaleout")
    web = build_demo_web(tmp / "web", n_articles=40)
    logs = {}
    with DemoProxy(web.pages, web.archive) as proxy:
        for workers in (1, 8):
            over = demo_overrides(web, proxy.url, steps=1, workers=workers)
            over["fetch"]["urls_per_task"] = 12
            over["run"]["progress_interval_s"] = 0.05
            out = io.StringIO()
            ctx = Context(tmp / f"w{workers}", load_config(None, over), Console(file=out, width=200))
            try:
                run_all(ctx, ORDER[:-1])
            finally:
                ctx.close()
            logs[workers] = out.getvalue()
    return tmp, logs


def test_one_worker_and_eight_write_the_same_bytes(runs):
    tmp, _ = runs
    one, eight = pipeline_outputs(tmp / "w1"), pipeline_outputs(tmp / "w8")
    assert any(k.startswith("tokens/v0001/train-") for k in one)
    assert one == eight


def test_tasks_follow_the_url_count_not_the_harvest_shards(runs):
    tmp, _ = runs
    urls = sorted((tmp / "w1" / "urls").glob("urls-*.parquet"))
    frontier = sorted((tmp / "w1" / "warc" / "_meta" / "frontier").glob("frontier-*.parquet"))
    n_urls = sum(pq.ParquetFile(f).metadata.num_rows for f in urls)
    assert len(urls) == 4 and n_urls > 48 and len(frontier) > len(urls)
    assert max(pq.ParquetFile(f).metadata.num_rows for f in frontier) < max(
        pq.ParquetFile(f).metadata.num_rows for f in urls)
    docs = sorted((tmp / "w1" / "docs").glob("docs-*.parquet"))
    assert len(docs) == len(frontier) == len(list((tmp / "w1" / "warc").glob("fetchlog-*.parquet")))


def test_progress_counts_urls_while_fetching(runs):
    _, logs = runs
    for text in logs.values():
        assert re.search(r"fetch: [\d,]+/[\d,]+ URLs \([\d.]+%\), [\d.]+k? URLs/s, \d+/\d+ shards, ETA", text), text
        assert re.search(r"fetch: \d+ shard\(s\) done, [\d,]+ URLs", text)

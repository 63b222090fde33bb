"""harvest's reduce phase: bucketed aggregation equals the in-memory one, in bounded memory."""

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

from webtext.pipeline.executor import Task
from webtext.pipeline.schemas import SUBMISSIONS, URLS, stored
from webtext.stages import harvest, harvest_reduce
from webtext.stages import urls as U

ROOT = Path(__file__).resolve().parent.parent


def make_parts(folder: Path, n: int, parts: int = 4, seed: int = 0, row_group: int = 2000) -> list[Path]:
    """``parts`` map parts holding ``n`` submission rows: reposts of a URL, ~15% of the
    submissions seen again in another part (another score), a few ids without a URL of
    their own (the same id under two URLs), rows without an id that tie on (url,
    created_utc), one to three raw forms per URL, and the oldest part written before
    url_hash and raw_url existed."""
    rng = random.Random(seed)
    nurls = max(1, n // 3)
    rows: list[list[dict]] = [[] for _ in range(parts)]
    for i in range(n):
        u = rng.randrange(max(1, nurls // 50) if rng.random() < 0.3 else nurls)   # 2% of the URLs: reposted
        url = f"https://s{u % 97}.example.com/a/{u}?x={u % 5}"
        raw = rng.choice([url, url, f"{url}&e=", f"https://s{u % 97}.example.com/a/{u}?e=&x={u % 5}", None])
        r = {"url": url, "raw_url": raw, "domain": U.raw_host(url), "score": rng.randrange(-5, 40),
             "created_utc": 1_600_000_000 + rng.randrange(n), "subreddit": f"sub{rng.randrange(9)}",
             "id": f"i{i}", "title": rng.choice([None, f"title {i}"]), "url_hash": U.url_hash(url)}
        if rng.random() < 0.03:                                  # no id: always kept, ties on created_utc
            r.update(id="", created_utc=1_600_000_000 + u % 3)
        p = rng.randrange(parts)
        rows[p].append(r)
        if rng.random() < 0.15:                                  # observed again, maybe in the same part
            again = dict(r, score=r["score"] + rng.randrange(-3, 9), title=f"edited {i}")
            if rng.random() < 0.1:                               # ... under another URL
                again["url"] = f"https://s{u % 97}.example.com/moved/{u}"
                again["url_hash"] = U.url_hash(again["url"])
            rows[rng.randrange(parts)].append(again)
    paths = []
    for p, rs in enumerate(rows):
        rng.shuffle(rs)
        t = pa.Table.from_pylist(rs, schema=SUBMISSIONS)
        if p == 0:                                               # written before url_hash, raw_url
            t = t.drop_columns(["url_hash", "raw_url"])
        path = folder / f"RS_part{p}.parquet"
        pq.write_table(t, path, row_group_size=row_group)
        paths.append(path)
    return paths


def reference(parts: list[Path], p: dict) -> pa.Table:
    """The reduce as it was before buckets: the whole shard in memory."""
    tables = []
    for part in parts:
        t = harvest_reduce.read_part(part)
        t = t.filter(pa.array(t["url_hash"].to_numpy() % np.uint64(p["num_shards"]) == p["shard"]))
        tables.append(t.append_column("version", pa.array(np.full(t.num_rows, p["versions"][part.name], np.int32))))
    subs = pa.concat_tables(tables)
    subs = subs.sort_by([("id", "ascending"), ("version", "descending"), ("score", "descending"),
                         ("url", "ascending")])
    ids = subs["id"].to_numpy(zero_copy_only=False)
    first = np.ones(len(ids), dtype=bool)
    first[1:] = (ids[1:] != ids[:-1]) | (ids[1:] == "")
    subs = subs.filter(pa.array(first))
    subs = subs.sort_by([("url", "ascending"), ("created_utc", "ascending"), ("id", "ascending")])
    agg = p["score_agg"]
    g = subs.group_by("url", use_threads=False).aggregate([
        ("score", agg), ("url", "count"), ("created_utc", "min"), ("created_utc", "max"),
        ("subreddit", "distinct"), ("id", "list"), ("title", "first"), ("domain", "first"),
        ("version", "min"), ("url_hash", "first")])
    kept = g.filter(pc.greater_equal(g[f"score_{agg}"], p["min_score"]))
    domains = kept["domain_first"].to_pylist()
    forms: dict[str, dict[str, list]] = {}             # url -> raw form -> [submissions, first created_utc]
    for r in subs.select(["url", "raw_url", "created_utc"]).to_pylist():
        if r["raw_url"]:
            f = forms.setdefault(r["url"], {}).setdefault(r["raw_url"], [0, r["created_utc"]])
            f[0], f[1] = f[0] + 1, min(f[1], r["created_utc"])
    fetch = [min(forms[u].items(), key=lambda kv: (-kv[1][0], kv[1][1], kv[0]))[0] if u in forms else u
             for u in kept["url"].to_pylist()]
    return pa.table({
        "url_id": [f"{h:016x}" for h in kept["url_hash_first"].to_pylist()], "url": kept["url"],
        "domain": domains, "registered_domain": [U.registered_domain(d) for d in domains],
        "score": kept[f"score_{agg}"], "num_submissions": pc.cast(kept["url_count"], pa.int32()),
        "first_seen": kept["created_utc_min"], "last_seen": kept["created_utc_max"],
        "subreddits": [sorted(s) for s in kept["subreddit_distinct"].to_pylist()],
        "submission_ids": kept["id_list"], "title": kept["title_first"], "harvest_version": kept["version_min"],
        "fetch_url": fetch,
    }).sort_by("url_id").select(URLS.names).cast(URLS)


def reduce(parts, out, options=None, **params):
    params = {"min_score": 3, "score_agg": "sum", "num_shards": 1, "shard": 0, "latest": 3,
              "versions": {p.name: 1 + i % 3 for i, p in enumerate(parts)}, **params}
    run = harvest_reduce.aggregate_urls
    stats = run(Task("reduce", "00000", run, parts, [out], params, options or {}))
    return stats, params


@pytest.mark.parametrize("agg", ["sum", "max"])
@pytest.mark.parametrize("bucket_rows", [300, 10**6])
def test_buckets_give_the_in_memory_result(tmp_path, agg, bucket_rows):
    parts = make_parts(tmp_path, 6000)
    for shard in (0, 1):
        out = tmp_path / f"urls-{shard}-{agg}.parquet"
        stats, params = reduce(parts, out, {"bucket_rows": bucket_rows}, score_agg=agg, num_shards=2, shard=shard)
        got, want = pq.read_table(out), reference(parts, params)
        assert got.schema.equals(stored(URLS), check_metadata=True)
        assert want.num_rows > 500 and got.to_pylist() == want.to_pylist()
        assert stats.records_out == want.num_rows
        assert stats.records_in == stats.records_out + sum(stats.dropped.values())
        assert stats.dropped["duplicate_submission"] > 0 and stats.dropped["merged_duplicate_url"] > 0
        assert not (tmp_path / "_meta" / "spill").exists() or not any((tmp_path / "_meta" / "spill").rglob("*.arrow"))
        assert 0 < sum(r["fetch_url"] != r["url"] for r in got.to_pylist()) < got.num_rows


def test_buckets_bound_the_rows_held(tmp_path):
    parts = make_parts(tmp_path, 20_000)
    stats, _ = reduce(parts, tmp_path / "urls.parquet", {"bucket_rows": 1000})
    assert stats.info["reduce_buckets"] >= 20
    assert stats.info["reduce_bucket_peak"] <= 1500      # ~1000 each: the buckets are hash ranges


PEAK = """
import json, sys; from pathlib import Path; import pyarrow as pa
sys.path.insert(0, {tests!r}); from test_harvest_reduce import reduce
d = Path(sys.argv[1])
reduce(sorted(d.glob("RS_*.parquet")), d / "urls.parquet", {{"bucket_rows": 2000}})
print(json.dumps(pa.default_memory_pool().max_memory()))
"""


def test_reduce_memory_does_not_grow_with_the_input(tmp_path):
    """Peak Arrow memory of a reduce over 40k and 160k submissions (each in a fresh process)."""
    peaks = {}
    for n in (40_000, 160_000):
        d = tmp_path / str(n)
        d.mkdir()
        make_parts(d, n)
        code = PEAK.format(tests=str(ROOT / "tests"))
        r = subprocess.run([sys.executable, "-c", code, str(d), str(n)], capture_output=True, text=True,
                           cwd=ROOT, check=True)
        peaks[n] = json.loads(r.stdout.strip().splitlines()[-1])
    # In memory, 4x the submissions took ~4x the memory (~19 MB, 75 MB). In buckets of 2000
    # it is ~1.9 MB and 3.4 MB (Parquet's read buffers grow a little with a part's size).
    assert peaks[160_000] < 2.5 * peaks[40_000], peaks


def test_fetch_url_is_the_most_submitted_raw_form(tmp_path):
    """news_view.html was fetched with its parameters sorted and the empty ones dropped
    (courlan's normalization), and its server answered 404: fetch what was submitted."""
    from conftest import make_context
    from test_harvest import _sub, _write_zst

    as_sent = "http://news.example.kr/news_view.html?idx=8576&page=1&bc=03&mc=08&find=&sch_date="
    subs = [_sub(0, as_sent + "&utm_source=fb", 5), _sub(1, as_sent + "#top", 5), _sub(2, as_sent, 5),
            _sub(3, "http://NEWS.example.kr/news_view.html?bc=03&idx=8576&mc=08&page=1", 5),
            _sub(4, "https://blog.example.org/post?b=2&a=1", 5)]
    dump = tmp_path / "RS_2020-01.zst"
    _write_zst(dump, subs)
    ctx = make_context(tmp_path / "w", harvest={"dumps": [str(dump)], "num_shards": 1})
    harvest.run(ctx)
    rows = {r["url"]: r for r in pq.read_table(tmp_path / "w" / "urls" / "urls-00000.parquet").to_pylist()}
    key = "http://news.example.kr/news_view.html?bc=03&idx=8576&mc=08&page=1"     # the key is unchanged
    assert set(rows) == {key, "https://blog.example.org/post?a=1&b=2"}
    assert rows[key]["num_submissions"] == 4 and rows[key]["fetch_url"] == as_sent    # 3 of the 4
    assert rows["https://blog.example.org/post?a=1&b=2"]["fetch_url"] == "https://blog.example.org/post?b=2&a=1"


def test_fetch_url_without_raw_forms_is_the_url(tmp_path):
    """Parts written before raw_url existed: fetch the normalized URL, as before."""
    url = "https://a.example.com/x?k=1"
    old = pa.table({"url": [url, url], "domain": ["a.example.com"] * 2, "score": [5, 5],
                    "created_utc": [1, 2], "subreddit": ["s", "s"], "id": ["a", "b"], "title": ["t", "t"]})
    pq.write_table(old, tmp_path / "RS_old.parquet")
    reduce([tmp_path / "RS_old.parquet"], tmp_path / "urls.parquet")
    assert pq.read_table(tmp_path / "urls.parquet")["fetch_url"].to_pylist() == [url]


def test_reduce_bucket_rows_setting_reaches_the_tasks(tmp_path):
    """[harvest] reduce_bucket_rows sizes the reduce's buckets; the URLs are the same."""
    from conftest import make_context
    from test_harvest import _sub, _write_zst

    dump = tmp_path / "RS_2020-01.zst"
    _write_zst(dump, [_sub(i, f"https://s{i // 2 % 7}.example.com/p/{i // 2}", 5) for i in range(5000)])
    got = {}
    for rows in (1000, 100_000):
        work = tmp_path / f"w{rows}"
        harvest.run(make_context(work, harvest={"dumps": [str(dump)], "num_shards": 1, "reduce_bucket_rows": rows}))
        done = json.loads((work / "urls" / "_meta" / "done" / "reduce-00000.json").read_text())
        got[rows] = done["stats"]["info"]["reduce_buckets"], pq.read_table(work / "urls" / "urls-00000.parquet")
    assert got[1000][0] == 5 and got[100_000][0] == 1
    assert got[1000][1].equals(got[100_000][1]) and got[1000][1].num_rows == 2500

"""harvest: real Pushshift dumps, .zst with a 2 GiB window, truncation, filters, aggregation."""

import json
import lzma

import pyarrow.parquet as pq
import pytest
import zstandard

from pipeline.errors import MissingInputError
from pipeline.schemas import URLS
from stages import harvest
from stages import urls as U

from conftest import make_context, shared_path


def _sub(i, url, score=10, **kw):
    return {"id": f"x{i}", "url": url, "score": score, "created_utc": 1_600_000_000 + i,
            "subreddit": f"sub{i % 3}", "title": f"title {i}", "is_self": False, "over_18": False, **kw}


def _write_zst(path, subs, extra=b""):
    raw = "".join(json.dumps(s) + "\n" for s in subs).encode() + extra
    params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31)   # needs a 2 GiB window to read
    path.write_bytes(zstandard.ZstdCompressor(compression_params=params).compress(raw))


def _urls(workdir):
    return pq.read_table(sorted((workdir / "urls").glob("urls-*.parquet"))).sort_by("url").to_pylist()


def test_real_pushshift_dumps(tmp_path):
    d = shared_path("reddit", "pushshift")
    ctx = make_context(tmp_path, workers=1, harvest={"dumps": [str(d)]})
    stats = harvest.run(ctx)
    # Counted independently of the stage: lines in both dumps.
    lines = sum(1 for p in sorted(d.glob("RS_*.xz")) for ln in lzma.open(p) if ln.strip())
    assert stats["in"] == lines == 1182
    # The one merge: the same page submitted with and without a #fragment.
    assert stats["dropped"] == {"low_score": 340, "media_url": 5, "merged_duplicate_url": 1}
    assert stats["out"] == 836
    assert stats["in"] == stats["out"] + sum(stats["dropped"].values())
    rows = _urls(tmp_path)
    assert len(rows) == 836 and all(r["score"] >= 3 for r in rows)
    assert len({r["url"] for r in rows}) == len(rows)
    t = pq.read_table(next((tmp_path / "urls").glob("urls-*.parquet")))
    assert t.schema.equals(URLS) and t.schema.metadata[b"webtext.schema"] == b"urls"
    assert (tmp_path / "urls" / "_stats.json").exists() and (tmp_path / "urls" / "_config.json").exists()
    assert harvest.run(ctx)["tasks_run"] == 0          # rerun does nothing


def test_zst_window_filters_and_sum_vs_max(tmp_path):
    subs = [
        _sub(0, "HTTP://News.Example.com:80/a?utm_source=x&b=2#frag", 2),
        _sub(1, "http://news.example.com/a?b=2", 2),               # same URL after normalization
        _sub(2, "https://blog.example.org/post", 9),
        _sub(3, "https://blog.example.org/self", 50, is_self=True),
        _sub(4, "https://adult.example.org/x", 50, over_18=True),
        _sub(5, "https://www.reddit.com/r/x/comments/1/", 50),
        _sub(6, "https://cdn.example.org/pic.JPG", 50),
        _sub(7, "https://i.imgur.com/abc", 50),
        _sub(8, "ftp://files.example.org/x", 50),
        _sub(9, "https://gone.example.org/y", 50, removed_by_category="moderator"),
        {"id": "nourl", "score": 5},
    ]
    dump = tmp_path / "RS_2020-01.zst"
    _write_zst(dump, subs, extra=b"{not json\n[1, 2]\n")
    ctx = make_context(tmp_path / "w", harvest={"dumps": [str(dump)], "num_shards": 2})
    stats = harvest.run(ctx)
    assert stats["dropped"] == {"self_post": 1, "nsfw": 1, "reddit_link": 1, "media_url": 1,
                                "blocklisted_domain": 1, "bad_scheme": 1, "removed": 1, "no_url": 1,
                                "malformed_json": 2, "merged_duplicate_url": 1}
    rows = _urls(tmp_path / "w")
    assert [r["url"] for r in rows] == ["http://news.example.com/a?b=2", "https://blog.example.org/post"]
    assert rows[0]["score"] == 4 and rows[0]["num_submissions"] == 2          # sum of 2 + 2
    assert rows[0]["submission_ids"] == ["x0", "x1"] and rows[0]["subreddits"] == ["sub0", "sub1"]
    assert rows[0]["url_id"] == U.url_id(rows[0]["url"])
    ctx_max = make_context(tmp_path / "w2", harvest={"dumps": [str(dump)], "score_agg": "max"})
    stats_max = harvest.run(ctx_max)
    assert [r["url"] for r in _urls(tmp_path / "w2")] == ["https://blog.example.org/post"]
    assert stats_max["dropped"]["low_score"] == 2


def test_truncated_zst_keeps_lines_before_damage(tmp_path):
    subs = [_sub(i, f"https://site{i}.example.org/p", 10) for i in range(3000)]
    full = tmp_path / "full" / "RS_2020-02.zst"
    full.parent.mkdir()
    _write_zst(full, subs)
    cut = tmp_path / "RS_2020-02.zst"
    data = full.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    stats = harvest.run(make_context(tmp_path / "w", harvest={"dumps": [str(cut)]}))
    assert stats["dropped"]["truncated_file"] == 1
    kept = stats["out"]
    assert 0 < kept < 3000
    got = {r["url"] for r in _urls(tmp_path / "w")}
    assert got == {f"https://site{i}.example.org/p" for i in range(kept)}   # a prefix, nothing invented


def test_missing_dumps_is_a_clear_error(tmp_path):
    with pytest.raises(MissingInputError, match="no dumps given"):
        harvest.run(make_context(tmp_path))
    with pytest.raises(MissingInputError, match="does not exist"):
        harvest.run(make_context(tmp_path, harvest={"dumps": [str(tmp_path / "nope.zst")]}))


@pytest.mark.parametrize("raw, want", [
    ("HTTPS://Example.COM:443/Path?utm_medium=x&q=1#top", "https://example.com/Path?q=1"),
    ("http://example.com/a?fbclid=abc&gclid=d", "http://example.com/a"),
    ("mailto:someone@example.com", None),
    ("not a url", None),
])
def test_normalize(raw, want):
    assert U.normalize(raw) == want

"""harvest: real Pushshift dumps, .zst with a 2 GiB window, truncation, filters, aggregation."""

import json
import lzma
import random

import pyarrow.parquet as pq
import pytest
import zstandard

from webtext.pipeline.errors import MissingInputError
from webtext.pipeline.schemas import URLS, stored
from webtext.stages import harvest
from webtext.stages import urls as U

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
    assert t.schema.equals(stored(URLS)) and t.schema.metadata[b"webtext.schema"] == b"urls"
    assert (tmp_path / "urls" / "_meta" / "stats.json").exists() and (tmp_path / "urls" / "_meta" / "config.json").exists()
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
        _sub(10, "https://gone.example.org/z", 50, removed_by_category="deleted"),
        _sub(11, "https://gone.example.org/w", 50, title="[deleted by user]"),
        {"id": "nourl", "score": 5},
    ]
    dump = tmp_path / "RS_2020-01.zst"
    _write_zst(dump, subs, extra=b"{not json\n[1, 2]\n")
    ctx = make_context(tmp_path / "w", harvest={"dumps": [str(dump)], "num_shards": 2})
    stats = harvest.run(ctx)
    assert stats["dropped"] == {"self_post": 1, "nsfw": 1, "reddit_link": 1, "media_url": 1,
                                "blocklisted_domain": 1, "bad_scheme": 1, "removed": 1, "deleted": 2, "no_url": 1,
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


def _compress(path, raw: bytes):
    import bz2
    import gzip

    name = path.name
    if name.endswith(".zst"):
        params = zstandard.ZstdCompressionParameters.from_level(3, window_log=31)
        data = zstandard.ZstdCompressor(compression_params=params).compress(raw)
    elif name.endswith(".xz"):
        data = lzma.compress(raw)
    elif name.endswith(".bz2"):
        data = bz2.compress(raw)
    elif name.endswith(".gz"):
        data = gzip.compress(raw)
    else:
        data = raw
    path.write_bytes(data)


@pytest.mark.parametrize("suffix", [".zst", ".xz", ".bz2", ".gz", ""])
def test_every_format_gives_the_same_urls(tmp_path, suffix):
    subs = [_sub(i, f"https://s{i % 70}.example.org/p", 2) for i in range(400)]   # 70 URLs, 5-6 each
    raw = "".join(json.dumps(s) + "\n" for s in subs).encode()
    dump = tmp_path / f"RS_2021-03{suffix}"
    half = len(raw) // 2
    # Two concatenated streams/frames, as produced by parallel compressors.
    if suffix:
        first, second = tmp_path / f"a{suffix}", tmp_path / f"b{suffix}"
        _compress(first, raw[:raw.rfind(b"\n", 0, half) + 1])
        _compress(second, raw[raw.rfind(b"\n", 0, half) + 1:])
        dump.write_bytes(first.read_bytes() + second.read_bytes())
    else:
        dump.write_bytes(raw)
    stats = harvest.run(make_context(tmp_path / "w", harvest={"dumps": [str(dump)]}))
    assert stats["in"] == 400 and stats["out"] == 70
    assert {r["score"] for r in _urls(tmp_path / "w")} <= {10, 12}


@pytest.mark.parametrize("suffix", [".xz", ".gz", ".bz2"])
def test_truncated_and_corrupt_files_keep_the_prefix(tmp_path, suffix):
    n = 40000
    subs = [_sub(i, f"https://site{i}.example.org/p", 10) for i in range(n)]
    full = tmp_path / f"full{suffix}"
    _compress(full, "".join(json.dumps(s) + "\n" for s in subs).encode())
    data = full.read_bytes()
    cut = tmp_path / "cut" / f"RS_2020-04{suffix}"
    cut.parent.mkdir()
    cut.write_bytes(data[: len(data) * 2 // 3])
    stats = harvest.run(make_context(tmp_path / "w", harvest={"dumps": [str(cut)]}))
    assert stats["dropped"]["truncated_file"] == 1
    got = {r["url"] for r in _urls(tmp_path / "w")}
    assert 0 < len(got) < n and got == {f"https://site{i}.example.org/p" for i in range(len(got))}
    bad = tmp_path / "bad" / f"RS_2020-05{suffix}"
    bad.parent.mkdir()
    bad.write_bytes(data[: len(data) // 2] + b"\x00garbage" * 50 + data[len(data) // 2:])
    stats = harvest.run(make_context(tmp_path / "w2", harvest={"dumps": [str(bad)]}))
    assert sum(stats["dropped"].get(k, 0) for k in ("corrupt_file", "truncated_file")) == 1
    assert n // 4 < stats["out"] < n


def test_arctic_shift_style_values(tmp_path):
    """Newer dumps: numbers as strings or floats, extra and missing fields, crossposts."""
    subs = [
        {"id": "a1", "url": "https://one.example/x", "score": "15", "created_utc": "1700000000",
         "subreddit": "sci", "is_self": False, "over_18": False, "title": "t", "crosspost_parent_list": []},
        {"id": "a2", "url": "https://two.example/y", "score": 4.0, "created_utc": 1700000001.5, "subreddit": "sci"},
        {"id": "a3", "url": "https://three.example/z", "score": None, "created_utc": None},
        {"id": "a4", "url": 42, "score": 10},
    ]
    dump = tmp_path / "RS_2023-11.zst"
    _write_zst(dump, subs)
    stats = harvest.run(make_context(tmp_path / "w", harvest={"dumps": [str(dump)]}))
    rows = {r["url"]: r for r in _urls(tmp_path / "w")}
    assert rows["https://one.example/x"]["score"] == 15 and rows["https://one.example/x"]["first_seen"].timestamp() == 1700000000
    assert rows["https://two.example/y"]["score"] == 4
    assert stats["dropped"] == {"low_score": 1, "no_url": 1}


def test_incremental_two_runs_equal_one_run_and_report_new_urls(tmp_path):
    a = [_sub(i, f"https://a{i % 40}.example.org/p", 2) for i in range(100)]
    b = [_sub(1000 + i, f"https://a{i % 20}.example.org/p", 5) for i in range(30)] + \
        [_sub(2000 + i, f"https://b{i}.example.org/p", 3) for i in range(25)]
    da, db = tmp_path / "RS_2021-01.zst", tmp_path / "RS_2021-02.zst"
    _write_zst(da, a)
    _write_zst(db, b)
    both = harvest.run(make_context(tmp_path / "both", harvest={"dumps": [str(da), str(db)]}))
    ctx = make_context(tmp_path / "inc", harvest={"dumps": [str(da)]})
    first = harvest.run(ctx)
    assert first["info"]["new_urls"] == first["out"] == 40
    ctx.cfg.harvest.dumps = [str(da), str(db)]
    second = harvest.run(ctx)
    assert second["tasks_run"] == 1 + 4                 # only the new dump is mapped
    assert second["info"]["new_urls"] == 25             # b0..b24; a0..a19 were known
    assert (second["in"], second["out"], second["dropped"]) == (both["in"], both["out"], both["dropped"])
    drop = lambda rows: [{k: v for k, v in r.items() if k != "harvest_version"} for r in rows]  # noqa: E731
    inc, full = _urls(tmp_path / "inc"), _urls(tmp_path / "both")
    assert drop(inc) == drop(full)
    assert {r["url"] for r in inc if r["harvest_version"] == 2} == {f"https://b{i}.example.org/p" for i in range(25)}
    assert {r["harvest_version"] for r in full} == {1}
    known = {r["url"]: r["score"] for r in inc}
    assert known["https://a0.example.org/p"] == 3 * 2 + 2 * 5     # aggregate updated, not duplicated
    ctx.cfg.harvest.dumps = [str(db)]                   # listing only the new dump keeps the old ones
    assert drop(_urls(tmp_path / "inc")) == drop(full) and harvest.run(ctx)["tasks_run"] == 0


def test_repeated_submission_counted_once(tmp_path):
    s = _sub(7, "https://dup.example.org/a", 2)
    later = {**s, "score": 40}                          # the same submission, observed later
    d1, d2 = tmp_path / "RS_2022-01.zst", tmp_path / "RS_2022-02.zst"
    _write_zst(d1, [s, s])
    _write_zst(d2, [later])
    ctx = make_context(tmp_path / "w", harvest={"dumps": [str(d1)]})
    harvest.run(ctx)
    ctx.cfg.harvest.dumps = [str(d1), str(d2)]
    stats = harvest.run(ctx)
    (row,) = _urls(tmp_path / "w")
    assert row["score"] == 40 and row["submission_ids"] == ["x7"]
    assert stats["dropped"]["duplicate_submission"] == 2


def test_registered_domain():
    assert U.registered_domain("news.bbc.co.uk") == "bbc.co.uk"
    assert U.registered_domain("www.example.com") == "example.com"
    assert U.registered_domain("localhost") == "localhost"


def _url_corpus() -> list[str]:
    """Every real dump URL, uppercased variants, odd forms and 3,000 generated plain queries."""
    d = shared_path("reddit", "pushshift")
    raw = [json.loads(ln).get("url") or "" for p in sorted(d.glob("RS_*.xz")) for ln in lzma.open(p)]
    raw += [u.upper() for u in raw] + ["http://Example.com/a/./b", "http://x.example//a", "http://x.example/a%7e"]
    # Plain queries (the second fast path): trackers, case, repeated keys, an empty path.
    rng = random.Random(0)
    keys = ["id", "ID", "page", "utm_source", "fbclid", "ref", "aff_id", "x", "gclid", "p", "s", "v", "campaign"]
    for i in range(3000):
        pairs = "&".join(f"{rng.choice(keys)}={rng.choice(['1', 'abc', 'A-b_c.d~', '2'])}"
                         for _ in range(rng.randint(1, 5)))
        raw.append(f"{rng.choice(['http', 'HTTPS'])}://Site{i % 7}.example.com{rng.choice(['', '/', '/a/B.html'])}?{pairs}")
    raw += ["https://a.example/p?a=1&&b=2", "https://a.example/p?a=&b=2", "https://a.example/p?a", "https://a.example/?q=a+b"]
    return raw


def test_fast_normalize_matches_courlan_on_real_urls():
    raw = _url_corpus()
    fast = [u for u in raw if U._SIMPLE.fullmatch(u.strip())]
    assert len(fast) > len(raw) // 4
    assert sum(1 for u in raw if U._SIMPLE_QUERY.fullmatch(u.strip())) >= 3000
    assert [U.normalize(u) for u in raw] == [U._normalize_slow(u.strip()) for u in raw]


def test_plain_split_is_the_fast_path_regexes():
    """``urls._plain`` accepts exactly what ``_SIMPLE`` or ``_SIMPLE_QUERY`` match whole, and
    splits it the same way, on 200k generated ASCII strings built to hit every edge."""
    rng = random.Random(0)
    odd = ["", "-", ".", "..", "/", "//", "?", "&", "=", "_", "~", "#", "%7e", ":80", "@", "\\", " ", "A", "0", "==", "&&"]

    def part(good: list[str], k: int) -> str:    # mostly good pieces, sometimes an odd one
        return "".join(rng.choice(odd if rng.random() < 0.08 else good) for _ in range(rng.randint(0, k)))

    seen = {"simple": 0, "query": 0, "none": 0}
    for _ in range(200_000):
        url = (rng.choice(["http://", "HTTPS://", "https://", "ftp://", "http:/", "https://"])
               + part(["a", "B", "0", "-", ".", "x.example", "Ex.COM"], 4)
               + part(["/p", "/a.b", "/.a", "/a.", "/", "/Q_~-", "/a..b", "x"], 4)
               + ("?" + "&".join(rng.choice(["k=v", "utm_source=x", "K.1=~v", "k=v", "a=b=c", "a", "=v", "k="])
                                 for _ in range(rng.randint(1, 4))) if rng.random() < 0.5 else ""))
        m, mq = U._SIMPLE.fullmatch(url), U._SIMPLE_QUERY.fullmatch(url)
        want = ((m.group(1).lower(), m.group(2).lower(), m.group(3), None) if m else
                (mq.group(1).lower(), mq.group(2).lower(), mq.group(3), mq.group(4)) if mq else None)
        assert U._plain(url) == want, url
        seen["simple" if m else "query" if mq else "none"] += 1
    assert min(seen.values()) > 2000, seen


def test_harvest_forms_is_normalize_host_and_fetch_form():
    """The one-pass split agrees with the three functions it stands for, fast paths or not."""
    raw = _url_corpus()
    raw += [u.strip() for u in raw] + ["HTTP://Example.COM/a?utm_source=x", "https://x.example?fbclid=1&b=2&a=1",
                                       "https://\u212a.example/a", "https://x.example/\u212a?a=1", " https://x.example/a",
                                       "https://x.example/a#f", "https://user@x.example/a", "https://x.example:8080/a",
                                       "ftp://x.example/a", "https://", "https://x.example?utm_source=x"]
    want = []
    for u in raw:
        norm = U.normalize(u)
        want.append(None if norm is None else (norm, U.raw_host(norm), U.fetch_form(u)))
    assert [U.harvest_forms(u) for u in raw] == want


def test_batch_keeps_what_harvest_forms_gives():
    """Filter.batch takes plain URLs column-wise (RE2) and the rest one by one: the kept rows'
    url, domain and raw_url are harvest_forms of the trimmed URL either way, in input order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from webtext.stages.reddit import Submission

    raw = _url_corpus()
    raw += [" " + u for u in raw[:500]] + ["\x1chttps://x.example/a", "https://\u212a.example/a", "https://x.example/a#f"]
    keep = harvest.make_filter(harvest.filter_params(harvest.HarvestConfig()))
    drops, kept = keep.batch([Submission(url=u, id=str(i), score=5) for i, u in enumerate(raw)])
    trimmed = pc.utf8_trim_whitespace(pa.array(raw, pa.string())).to_pylist()
    want = {str(i): U.harvest_forms(u) for i, u in enumerate(trimmed)}
    rows = kept.to_pylist()
    assert 1000 < len(rows) < len(raw) and [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    assert all((r["url"], r["domain"], r["raw_url"]) == want[r["id"]] for r in rows)
    assert all(r["url_hash"] == U.url_hash(r["url"]) for r in rows)


def test_pathological_url_is_linear():
    """A regex with nested quantifiers would hang here (ReDoS); URLs come from strangers."""
    import subprocess
    import sys

    code = "from webtext.stages.urls import normalize; normalize('http://example.com/' + 'a' * 200000 + '?'); print('ok')"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "ok"


def test_batch_filter_reasons_on_awkward_urls():
    """The column-wise filter: the first matching reason wins, and odd URLs reach the exact host splitter."""
    from webtext.stages.reddit import Submission

    keep = harvest.make_filter(harvest.filter_params(harvest.HarvestConfig()))
    cases = [
        ("HTTPS://Example.COM/Story.html", None),
        ("https://user:pw@www.Reddit.com:443/r/x", "reddit_link"),
        ("https://example.com/report.PDF?dl=1", "media_url"),
        ("https://example.com/a.pdf/page", None),
        ("https://example.com/x#frag.jpg", None),
        ("https://foo.jpg", None),
        ("HTTPS://I.IMGUR.COM/abc.JPG", "media_url"),            # media is checked before the blocklist
        ("https://i.imgur.com/gallery/abc", "blocklisted_domain"),
        ("https://news.example.com.:8080/x", None),
        ("https://[2001:db8::1]/x", None),
        ("ftp://example.com/x", "bad_scheme"),
        ("   ", "no_url"),
        (12345, "no_url"),
    ]
    subs = [Submission(url=u, is_self=False, id=str(i), score=5) for i, (u, _) in enumerate(cases)]
    subs += [Submission(url="https://example.com/x", removed_by_category={"odd": 1}),
             Submission(url="https://example.com/y", title="[deleted by user]"),
             Submission(url="https://example.com/z", domain="self.AskReddit"),
             Submission(url="https://example.com/w", over_18=True, score="7")]
    want = [r for _, r in cases] + ["removed", "deleted", "self_post", "nsfw"]
    assert [keep(s)[0] for s in subs] == want
    drops, kept = keep.batch(subs)
    assert drops == {r: want.count(r) for r in set(want) - {None}}
    assert kept.num_rows == want.count(None)
    rows = {r["url"]: r for r in kept.to_pylist()}
    assert rows["https://example.com/Story.html"]["domain"] == "example.com"
    assert rows["https://news.example.com.:8080/x"]["domain"] == "news.example.com"
    assert all(r["url_hash"] == int(U.url_id(r["url"]), 16) for r in rows.values())

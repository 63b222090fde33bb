"""harvest on bad input (#21): one bad value, URL or damaged byte must not fail a dump.

- bad_value: a score or created_utc no int64 holds is counted, and the dump goes on;
- bad_url: hosts, ports and lengths no client can fetch, rejected before normalization;
- raw_url: the submitted URL for fetching, less its fragment and trackers;
- damaged .zst/.xz/.bz2/.gz: at least every line the reference CLI (``zstd -dc``,
  ``xz -dc``, ``bzip2 -dc``, ``gzip -dc``) writes, byte for byte the same lines.
"""

import bz2
import gzip
import json
import lzma
import random
import shutil
import subprocess
import time

import pyarrow.parquet as pq
import pytest
import zstandard

from webtext.stages import harvest
from webtext.stages import urls as U
from webtext.stages.reddit import Submission, iter_batches

from conftest import make_context


def _line(i, url="", score=10, **kw):
    d = {"id": f"b{i}", "url": url or f"https://site{i}.example.org/p", "score": score,
         "created_utc": 1_600_000_000 + i, "subreddit": "s", "title": "t", "is_self": False, "over_18": False}
    return json.dumps({**d, **kw})


def _zst(path, lines):
    path.write_bytes(zstandard.ZstdCompressor().compress("".join(ln + "\n" for ln in lines).encode()))


def _run(tmp_path, dump):
    ctx = make_context(tmp_path / "w", workers=1, harvest={"dumps": [str(dump)], "min_score": 0})
    stats = harvest.run(ctx)
    part = pq.read_table(next((tmp_path / "w" / "urls" / "_meta" / "parts").glob("*.parquet")))
    return stats, {r["url"]: r for r in part.to_pylist()}


def test_bad_values_are_counted_and_the_dump_goes_on(tmp_path):
    odd = [10**30, -(10**30), "1e400", 1e30, "-1e30", "nan", 2**63, "99999999999999999999"]
    lines = [_line(0)]
    for k, v in enumerate(odd):   # each once as score and once as created_utc
        lines += [_line(10 + k, score=v), _line(50 + k, created_utc=v)]
    # Valid but odd values keep their old meaning: floats and numeric strings are truncated
    # to ints, a missing or non-numeric value is 0, the int64 limits themselves are fine.
    lines += [_line(100, score=12.0), _line(101, score="42"), _line(102, score=" 7 "), _line(103, score="12.5"),
              _line(104, score=None), _line(105, score="many"), _line(106, score=-(2**63)),
              _line(107, score=2**63 - 1), _line(108, created_utc=1_700_000_000.9)]
    dump = tmp_path / "RS_2024-01.zst"
    _zst(dump, lines)
    stats, rows = _run(tmp_path, dump)
    assert stats["dropped"] == {"bad_value": 2 * len(odd), "low_score": 1}     # low: the int64 minimum
    assert stats["in"] == len(lines) and len(rows) == len(lines) - 2 * len(odd)
    score = {u.split("/")[2].split(".")[0]: r["score"] for u, r in rows.items()}
    assert score == {"site0": 10, "site100": 12, "site101": 42, "site102": 7, "site103": 12, "site104": 0,
                     "site105": 0, "site106": -(2**63), "site107": 2**63 - 1, "site108": 10}
    assert rows["https://site108.example.org/p"]["created_utc"].timestamp() == 1_700_000_000      # a timestamp, whole seconds


def _filter(**cfg):
    return harvest.make_filter(harvest.filter_params(harvest.HarvestConfig(**cfg)))


BAD_URL_CASES = [
    ("http://exa mple.com/", "bad_url"),                 # fetch sent it with the raw space
    ("http://example.com:99999999/x", "bad_url"),
    ("http://example.com:65536/x", "bad_url"),
    ("http://example.com:8o/x", "bad_url"),
    ("http://example.com:65535/x", None),
    ("http://example.com:/x", None),                      # an empty port is the default one
    ("http://" + "a" * 70_000 + ".com/", "bad_url"),
    ("http://" + "a" * 64 + ".example.com/", "bad_url"),  # a label over 63 octets
    ("http://" + "a" * 63 + ".example.com/", None),
    ("http://" + ".".join(["abcdefghij"] * 24) + ".com/", "bad_url"),   # 267 octets
    ("http://bücher.example/", None),
    ("http://" + "ü" * 60 + ".example/", "bad_url"),     # 60 characters, but over 63 octets as punycode
    ("http:///path", "bad_url"),
    ("http://user@/path", "bad_url"),
    ("http://exa<mple>.com/", "bad_url"),
    ("http://exa^mple.com/", "bad_url"),
    ("http://a|b.com/", "bad_url"),
    ("http://exa\x01mple.com/", "bad_url"),
    ("http://a..b.com/", "bad_url"),
    ("http://300.1.2.3/", "bad_url"),                     # ends in a number, but no IPv4 address
    ("http://93.184.216.34/x", None),
    ("http://[2001:db8::1]:8080/x", None),
    ("http://[2001:db8::zz]/x", "bad_url"),
    ("http://[2001:db8::1/x", "bad_url"),
    ("http://user:pw@Example.COM:8080/x", None),
    ("http://sub_domain.example.com/x", None),
    ("ftp://exa mple.com/", "bad_scheme"),               # the first reason wins
    ("https://www.reddit.com:99999/r/x", "bad_url"),
]


def test_urls_no_client_can_fetch_are_bad_url():
    keep = _filter()
    got = [(url[:80], keep(Submission(url=url, id="1", score=5))[0]) for url, _ in BAD_URL_CASES]
    assert got == [(url[:80], reason) for url, reason in BAD_URL_CASES]


def test_max_url_length_is_the_setting_and_checked_before_anything_else():
    url = "https://example.com/" + "a" * 80
    assert harvest.filter_params(harvest.HarvestConfig(max_url_length=50))["max_url_length"] == 50
    assert _filter(max_url_length=50)(Submission(url=url))[0] == "bad_url"
    assert _filter(max_url_length=len(url))(Submission(url=url))[0] is None
    assert _filter()(Submission(url="https://example.com/" + "a" * 2063))[0] is None   # 2,083: the default
    assert _filter()(Submission(url="https://example.com/" + "a" * 2064))[0] == "bad_url"
    # A 52 MB URL is judged on its length: no normalization, no quadratic work.
    huge = "http://example.com/?" + "a=1&" * 13_000_000
    keep = _filter()
    started = time.perf_counter()
    drops, kept = keep.batch([Submission(url=huge, id="x"), Submission(url="https://ok.example/p", id="y")])
    assert time.perf_counter() - started < 5
    assert drops == {"bad_url": 1} and kept["url"].to_pylist() == ["https://ok.example/p"]
    assert keep(Submission(url="ftp://" + "a" * 5000))[0] == "bad_scheme"    # the scheme still comes first


def test_a_dump_with_bad_urls_and_a_52mb_line(tmp_path):
    lines = [_line(0), _line(1, url="http://exa mple.com/"), _line(2, url="http://example.com:99999999/"),
             _line(3, url="http://" + "h" * 70_000 + ".com/"), _line(4, url="http://x.example/" + "p" * 52_000_000),
             _line(5)]
    dump = tmp_path / "RS_2024-02.zst"
    _zst(dump, lines)
    stats, rows = _run(tmp_path, dump)
    assert stats["dropped"] == {"bad_url": 4}
    assert sorted(rows) == ["https://site0.example.org/p", "https://site5.example.org/p"]


@pytest.mark.parametrize("raw, want", [
    ("http://x.kr/news_view.html?idx=8576&page=1&bc=03&mc=08&find=&sch_date=&utm_source=fb#top",
     "http://x.kr/news_view.html?idx=8576&page=1&bc=03&mc=08&find=&sch_date="),
    ("HTTPS://News.Example.COM/Some/Path.HTML?b=2&a=1", "https://news.example.com/Some/Path.HTML?b=2&a=1"),
    ("https://example.com/a?utm_medium=x&fbclid=y&gclid=z#frag", "https://example.com/a"),
    ("https://example.com/a?utm%5Fsource=x&q=a+b&&z", "https://example.com/a?q=a+b&&z"),
    ("https://example.com/a?", "https://example.com/a?"),
    ("https://example.com", "https://example.com"),
])
def test_fetch_form(raw, want):
    assert U.fetch_form(raw) == want


def test_parts_carry_raw_url(tmp_path):
    raw = "http://X.kr/news_view.html?idx=8576&page=1&bc=03&mc=08&find=&sch_date=&utm_source=fb#top"
    dump = tmp_path / "RS_2024-03.zst"
    _zst(dump, [_line(0, url=raw), _line(1, url="https://Example.com/A/b")])
    _, rows = _run(tmp_path, dump)
    assert rows["http://x.kr/news_view.html?bc=03&idx=8576&mc=08&page=1"]["raw_url"] == \
        "http://x.kr/news_view.html?idx=8576&page=1&bc=03&mc=08&find=&sch_date="
    assert rows["https://example.com/A/b"]["raw_url"] == "https://example.com/A/b"
    part = next((tmp_path / "w" / "urls" / "_meta" / "parts").glob("*.parquet"))
    assert pq.read_schema(part).names[-1] == "raw_url"


# Damaged dumps against the reference decompressors.

CLI = {".zst": "zstd", ".xz": "xz", ".bz2": "bzip2", ".gz": "gzip"}


def _compress(suffix, raw: bytes) -> bytes:
    if suffix == ".zst":   # as the zstd CLI writes: with a content checksum
        return zstandard.ZstdCompressor(level=3, write_checksum=True).compress(raw)
    if suffix == ".bz2":   # 100 kB blocks, so that the damage comes after some whole blocks
        return bz2.compress(raw, 1)
    return {".xz": lzma.compress, ".gz": gzip.compress}[suffix](raw)


def _lines(n=4000):
    rng = random.Random(7)
    words = "the of and to in is for that on with as it by this be are from at or an was".split()
    return [json.dumps({"id": f"r{i}", "url": f"https://site{i}.example.org/p/{rng.randint(0, 10**9)}",
                        "score": rng.randint(0, 999), "created_utc": 1_600_000_000 + i, "subreddit": f"sub{i % 50}",
                        "title": " ".join(rng.choice(words) for _ in range(rng.randint(5, 60))),
                        "selftext": "", "is_self": False, "over_18": False}).encode() for i in range(n)]


def _complete_lines(data: bytes) -> list[bytes]:
    """Lines that end in a newline; a partial last line is not a line."""
    return data.split(b"\n")[:-1]


@pytest.mark.parametrize("suffix", sorted(CLI))
def test_damaged_dump_keeps_what_the_reference_cli_recovers(tmp_path, suffix):
    tool = shutil.which(CLI[suffix])
    if tool is None:
        pytest.skip(f"{CLI[suffix]} is not installed (apt-get install zstd xz-utils bzip2 gzip)")
    original = _lines()
    data = _compress(suffix, b"".join(ln + b"\n" for ln in original))
    for damage in ("corrupt_middle", "corrupt_end", "truncate"):
        _check_damaged(tmp_path / damage, suffix, tool, original, data, damage)


def _check_damaged(tmp_path, suffix, tool, original, data, damage):
    tmp_path.mkdir()
    if damage == "truncate":
        data = data[: len(data) * 2 // 3]
    else:   # one flipped byte: in the middle, or in the stream's last bytes (checksum, size, footer)
        pos = len(data) // 2 if damage == "corrupt_middle" else len(data) - 2
        data = data[:pos] + bytes([data[pos] ^ 0x55]) + data[pos + 1:]
    dump = tmp_path / f"RS_2024-04{suffix}"
    dump.write_bytes(data)
    ref = _complete_lines(subprocess.run([tool, "-dc", str(dump)], capture_output=True).stdout)
    got, error = [], None
    try:
        for buf in iter_batches(dump):
            got.append(buf)
    except Exception as e:   # noqa: BLE001 - the damage is reported after the good lines
        error = e
    assert error is not None
    ours = _complete_lines(b"".join(got))
    assert len(ours) >= len(ref), damage                          # every line the CLI writes,
    assert ours[: len(ref)] == ref, damage                        # byte for byte
    intact = next((i for i, (a, b) in enumerate(zip(ref, original)) if a != b), len(ref))
    assert intact > 0
    # The map task: each intact line the reference recovers is kept, and the damage counts once.
    stats, rows = _run(tmp_path, dump)
    assert sum(stats["dropped"].get(k, 0) for k in ("corrupt_file", "truncated_file")) == 1
    assert stats["in"] - 1 >= len(ref)
    assert {json.loads(ln)["url"] for ln in original[:intact]} <= set(rows)

"""Takedowns by URL (http and https alike), domain and prefix: shard drops the documents,
fetch never requests them, harvest never lets them back in; the CLI's syntax and errors;
an old state database gains the kind column."""

import json
import os
import shutil
import sqlite3
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from webtext.model.data import read_manifest
from webtext.pipeline.cli import app
from webtext.pipeline.state import State
from webtext.stages import fetch, harvest
from webtext.stages import shard as S
from webtext.stages.takedowns import Matcher, Takedown, parse, parse_line
from webtext.stages.urls import url_id

from conftest import ROOT, Route, make_context, url_table
from test_harvest import _sub, _urls, _write_zst


def _cli(work, *args):
    return CliRunner().invoke(app, ["--workdir", str(work), "remove", *args])


def _webtext(work, *args):
    """The real command line, as a user runs it (exit codes and the one-line error)."""
    return subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(work), "remove", *args],
                          capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, "COLUMNS": "200"})


def _corpus(work, version=0):
    m = read_manifest(work / "tokens", version=version)
    return {d for f in m["shards"] for d in S.read_tokens(work / "tokens" / f["file"])["doc_id"].to_pylist()}


def _other_scheme(u):
    return ("https://" + u[7:]) if u.startswith("http://") else ("http://" + u[8:])


def test_url_domain_and_prefix_takedowns_leave_the_next_version(demo_run, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(demo_run, work)
    docs = pq.read_table(sorted((work / "clean").glob("clean-*.parquet")),
                         columns=["doc_id", "url", "domain"]).to_pylist()
    before = _corpus(work)
    docs = [d for d in docs if d["doc_id"] in before]
    by_host = {}
    for d in docs:
        by_host.setdefault(d["domain"], []).append(d)
    hosts = sorted(by_host, key=lambda h: -len(by_host[h]))
    assert len(hosts) >= 3
    # 1. the other scheme's variant of a document's URL removes that document
    one = by_host[hosts[2]][0]
    r = _cli(work, "--url", _other_scheme(one["url"]), "--reason", "owner request")
    assert r.exit_code == 0, r.output
    after = _corpus(work)
    assert after == before - {one["doc_id"]}
    # 2. a domain (as a user writes it) and a prefix from a file, in one version
    dom = hosts[1]
    rest = [d for d in by_host[hosts[0]] if d["doc_id"] in after]
    target = rest[0]["url"]
    prefix = _other_scheme(target[: target.rindex("/") + 1])
    under = {d["doc_id"] for d in rest if d["url"].split("://")[1].startswith(prefix.split("://")[1])}
    assert under and len(under) < len(by_host[hosts[0]]) + 1
    f = tmp_path / "takedowns.txt"
    f.write_text(f"# requests of 2026-12-01\n\ndomain:{dom.upper()}.\nprefix:{prefix}\n"
                 f"{_other_scheme(one['url'])}\n")
    r = _cli(work, "--file", str(f))
    assert r.exit_code == 0, r.output
    assert "2 takedown(s) recorded (1 already known)" in r.output      # http and https count as one
    gone = {d["doc_id"] for d in by_host[dom]} | under
    assert _corpus(work) == after - gone
    assert _corpus(work, version=2) >= gone                            # earlier versions untouched
    m = json.loads((work / "tokens" / "manifest.json").read_text())
    assert m["versions"][-1]["removed_docs"] == len(gone)
    record = json.loads((work / "tokens" / "_versions" / f"v{m['version']:04d}.json").read_text())
    assert sorted((t["kind"], t["url"]) for t in record["takedowns"]) == [("domain", dom), ("prefix", prefix)]
    ctx = make_context(work)
    assert {t["kind"]: t["version"] for t in ctx.state.takedowns()} == \
        {"url": m["version"] - 1, "domain": m["version"], "prefix": m["version"]}
    ctx.close()


def test_fetch_never_requests_a_taken_down_url(tmp_path, loopback_web):
    w = loopback_web
    w.routes.update({p: Route() for p in ("/a", "/b", "/c", "/p/1", "/p/2", "/q/1")})
    (tmp_path / "urls").mkdir()
    base = w.base
    pq.write_table(url_table([f"{base}{p}" for p in ("/a", "/b", "/p/1", "/p/2", "/q/1")]),
                   tmp_path / "urls" / "urls-00000.parquet")
    state = State(tmp_path)
    for t in (parse("url", _other_scheme(f"{base}/a")), parse("prefix", _other_scheme(f"{base}/p/"))):
        state.add_takedown(t.key, t.value, "test", t.kind)
    state.close()
    ctx = make_context(tmp_path, fetch={"allow_private": True, "host_delay_s": 0.0})
    first = fetch.run(ctx)
    assert sorted(p for p, _ in w.log if p not in ("/robots.txt", "/.well-known/tdmrep.json")) == ["/b", "/q/1"]
    assert first["info"]["new_urls"] == 2
    # a takedown after the fetch: the page is never revisited
    ctx.state.add_takedown(*(lambda t: (t.key, t.value, "", t.kind))(parse("url", _other_scheme(f"{base}/b"))))
    ctx.close()
    w.log.clear()
    ctx = make_context(tmp_path, fetch={"allow_private": True, "host_delay_s": 0.0, "refetch_after_days": 1e-9})
    fetch.run(ctx)
    ctx.close()
    assert sorted(p for p, _ in w.log if p not in ("/robots.txt", "/.well-known/tdmrep.json")) == ["/q/1"]


def test_harvest_drops_taken_down_urls_with_a_reason(tmp_path):
    subs = [
        _sub(0, "http://news.example.com/a", 10),
        _sub(1, "https://sub.news.example.com/b", 10),
        _sub(2, "https://news.example.com.other.org/c", 10),       # not under news.example.com
        _sub(3, "https://blog.example.org/keep", 10),
        _sub(4, "http://blog.example.org/gone", 10),
        _sub(5, "https://blog.example.org/gone", 10),                  # the https variant of #4
        _sub(6, "https://blog.example.org/series/1", 10),
        _sub(7, "https://blog.example.org/series/2", 10),
        _sub(8, "https://blog.example.org/seriesx", 10),
        _sub(9, "http://bücher.de/x", 10),
        _sub(10, "https://www.blog.example.org/gone", 10),             # www. is another host
    ]
    dump = tmp_path / "RS_2020-01.zst"
    _write_zst(dump, subs)
    work = tmp_path / "w"
    ctx = make_context(work, harvest={"dumps": [str(dump)], "num_shards": 2})
    first = harvest.run(ctx)
    assert first["out"] == 11 and "taken_down" not in first["dropped"]
    ctx.close()
    r = _cli(work, "--domain", "News.Example.com", "--url", "https://blog.example.org/gone",
             "--prefix", "http://blog.example.org/series/", "--domain", "BÜCHER.de")
    assert r.exit_code == 0, r.output
    ctx = make_context(work, harvest={"dumps": [str(dump)], "num_shards": 2})
    stats = harvest.run(ctx)
    assert stats["dropped"]["taken_down"] == 7
    assert stats["in"] == stats["out"] + sum(stats["dropped"].values())
    assert [r["url"] for r in _urls(work)] == ["https://blog.example.org/keep", "https://blog.example.org/seriesx",
                                               "https://news.example.com.other.org/c",
                                               "https://www.blog.example.org/gone"]
    assert harvest.run(ctx)["tasks_run"] == 0                   # the takedowns did not change: nothing reruns
    ctx.close()


def test_remove_syntax_and_errors(tmp_path):
    assert parse_line("domain:Example.COM") == Takedown("domain", "example.com")
    assert parse_line("prefix:https://x.example/y/") == Takedown("prefix", "https://x.example/y/")
    assert parse_line("https://x.example/a?utm_source=t") == Takedown("url", "https://x.example/a")
    assert parse_line("url:http://x.example/a") == Takedown("url", "http://x.example/a")
    assert parse_line("  # comment") is None and parse_line("") is None
    work = tmp_path / "w"
    for args, what in [(["--domain", "https://x.example/"], "is a URL, not a domain"),
                       (["--domain", "not a host"], "is not a valid domain"),
                       (["--domain", "com"], "is not a valid domain"),
                       (["--prefix", "x.example/y"], "is not an http(s) URL"),
                       (["--url", "ftp://x.example/a"], "is not an http(s) URL"),
                       ([], "no takedown given")]:
        r = _webtext(work, *args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        lines = (r.stdout + r.stderr).strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and what in lines[0], (args, r.output)
    bad = tmp_path / "bad.txt"
    bad.write_text("domain:ok.example\nprefix:nope\n")
    r = _webtext(work, "--file", str(bad))
    assert r.returncode == 2 and f"{bad}:2: --prefix 'nope' is not an http(s) URL" in r.stdout + r.stderr
    assert not (work / "state.sqlite").exists() or State(work).takedowns() == []    # nothing recorded


def test_matcher_at_harvest_scale():
    """One mask over 300k URLs: scheme variants, subdomains, IDNA hosts, prefixes; www. kept apart."""
    n = 100_000
    urls = [f"https://h{i % 5000}.example.org/p/{i}" for i in range(n)]
    urls += [f"http://www.h{i % 5000}.example.org/p/{i}" for i in range(n)]
    urls += [f"http://x{i}.bücher.de/{i}" for i in range(n)]
    m = Matcher([parse("url", "http://h7.example.org/p/7"), parse("domain", "h8.EXAMPLE.org"),
                 parse("domain", "xn--bcher-kva.de"), parse("prefix", "https://www.h9.example.org/p/9")])
    hit = m.mask(pa.array(urls))
    expect = [u for u in urls if u.endswith("://h7.example.org/p/7") or "h8.example.org/" in u.split(".", 1)[-1]
              or "://h8.example.org/" in u or "bücher.de" in u
              or u.split("://")[1].startswith("www.h9.example.org/p/9")]
    got = [u for u, h in zip(urls, hit) if h]
    assert sorted(got) == sorted(expect)
    assert "http://www.h8.example.org/p/8" in got and "http://www.h7.example.org/p/7" not in got
    assert "http://www.h9.example.org/p/90009" in got and "https://h9.example.org/p/9" not in got


def test_old_state_database_is_migrated(tmp_path):
    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.execute("CREATE TABLE takedowns (doc_id TEXT PRIMARY KEY, url TEXT NOT NULL, reason TEXT NOT NULL "
               "DEFAULT '', requested REAL NOT NULL, version INTEGER)")
    db.execute("INSERT INTO takedowns VALUES (?, ?, 'old', 1.0, 2)", (url_id("http://x.example/a"), "http://x.example/a"))
    db.commit()
    db.close()
    state = State(tmp_path)
    assert [(t["kind"], t["url"], t["version"]) for t in state.takedowns()] == [("url", "http://x.example/a", 2)]
    t = parse("url", "https://x.example/a")
    assert not state.add_takedown(t.key, t.value, "", t.kind)          # the https variant is known
    t = parse("domain", "y.example")
    assert state.add_takedown(t.key, t.value, "", t.kind) and not state.add_takedown(t.key, t.value, "", t.kind)
    state.close()
    assert [t["kind"] for t in State(tmp_path).takedowns()] == ["url", "domain"]

"""AI opt-outs recorded at fetch time (issue #25 point 4): robots.txt verdicts for the AI
crawlers, noai / noimageai, TDMRep (header, meta tag, /.well-known/tdmrep.json) and
rel="license" links; what fetch asks the servers for, what it records, and what extract
keeps or drops."""

from __future__ import annotations

import json
import threading
import time

import pyarrow.parquet as pq
import pytest
from protego import Protego

from webtext.pipeline.demoweb import docstring_paragraphs
from webtext.stages.fetchoptout import TDMREP_PATH
from webtext.stages.optout import (AI_AGENTS, combine, page_optout, parse_tdmrep, robots_verdicts, tdmrep_lookup)

from conftest import LoopbackHandler, LoopbackServer, run_fetch, url_table

HTML = {"Content-Type": "text/html; charset=utf-8"}
TEXT = {"Content-Type": "text/plain"}
JSON = {"Content-Type": "application/json"}


def page(head: str = "", body: str = "") -> bytes:
    """A page extract keeps (real English prose) with ``head`` and ``body`` markup added."""
    paras = "".join(f"<p>{p}</p>" for p in docstring_paragraphs()[:5])
    return (f"<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>A story</title>{head}"
            f"</head><body><main><article><h1>A story</h1>{paras}</article></main>{body}</body></html>").encode()


class Sites(LoopbackServer):
    """A forward proxy's view of many hosts: answers ``routes[(host, path)]`` (status,
    headers, body), else 404, and logs every (host, path) asked for."""

    def __init__(self):
        self.routes: dict[tuple[str, str], tuple[int, dict, bytes]] = {}
        self.log: list[tuple[str, str]] = []
        lock, web = threading.Lock(), self

        class Handler(LoopbackHandler):

            def do_GET(self):  # noqa: N802
                host, path = self.headers.get("Host", ""), self.path
                if path.startswith("http"):       # absolute form: we are the proxy
                    path = "/" + path.split("/", 3)[3] if path.count("/") >= 3 else "/"
                with lock:
                    web.log.append((host, path))
                status, headers, body = web.routes.get((host, path), (404, TEXT, b"not found"))
                self.respond(status, headers, body)

        self.start(Handler)

    def asked(self, host: str, path: str) -> int:
        return self.log.count((host, path))


@pytest.fixture
def sites():
    web = Sites()
    yield web
    web.close()


PUB, NEWS, BAD = "pub.example", "news.example", "bad.example"
ROBOTS = b"User-agent: GPTBot\nUser-agent: CCBot\nDisallow: /private/\n\nUser-agent: *\nAllow: /\n"
TDMREP = [{"location": "/news/*", "tdm-reservation": 1, "tdm-policy": "https://news.example/tdm-policy.json"},
          {"location": "/free/", "tdm-reservation": 0}]


def serve(web: Sites) -> dict[str, tuple]:
    """Three hosts: pub.example (robots.txt for the AI agents, page-level signals, no
    tdmrep.json), news.example (tdmrep.json reserving /news/*, no robots.txt) and
    bad.example (a tdmrep.json that is no JSON). Returns url -> what should be recorded:
    (ai_robots, tdmrep_reserved, noai, noimageai, tdm_reserved, licenses, ai_optout)."""
    pages = {
        (PUB, "/robots.txt"): (200, TEXT, ROBOTS),
        (PUB, "/plain"): (200, HTML, page()),
        (PUB, "/private/report"): (200, HTML, page()),
        (PUB, "/header-noai"): (200, {**HTML, "X-Robots-Tag": "noai"}, page()),
        (PUB, "/meta-noai"): (200, HTML, page('<meta name="robots" content="noai, noimageai">')),
        (PUB, "/noimageai"): (200, HTML, page('<meta name="robots" content="noimageai">')),
        (PUB, "/tdm-header"): (200, {**HTML, "tdm-reservation": "1"}, page()),
        (PUB, "/tdm-meta"): (200, HTML, page('<meta name="tdm-reservation" content="1">')),
        (PUB, "/licensed"): (200, HTML, page('<link rel="license" href="/license">')),
        (NEWS, TDMREP_PATH): (200, JSON, json.dumps(TDMREP).encode()),
        (NEWS, "/news/1"): (200, HTML, page()),
        (NEWS, "/news/2"): (200, HTML, page()),
        (NEWS, "/about"): (200, HTML, page()),
        (NEWS, "/free/story"): (200, HTML, page()),
        (NEWS, "/free/tdm-meta"): (200, HTML, page('<meta name="tdm-reservation" content="1">')),
        (BAD, TDMREP_PATH): (200, JSON, b'[{"location": "/", "tdm-reservation": 1'),
        (BAD, "/page"): (200, HTML, page()),
    }
    web.routes.update(pages)
    none = ([], None, False, False, None, [], False)
    return {
        f"http://{PUB}/plain": none,
        f"http://{PUB}/private/report": (["GPTBot", "CCBot"], None, False, False, None, [], True),
        f"http://{PUB}/header-noai": ([], None, True, False, None, [], True),
        f"http://{PUB}/meta-noai": ([], None, True, True, None, [], True),
        f"http://{PUB}/noimageai": ([], None, False, True, None, [], False),
        f"http://{PUB}/tdm-header": ([], None, False, False, True, [], True),
        f"http://{PUB}/tdm-meta": ([], None, False, False, True, [], True),
        f"http://{PUB}/licensed": ([], None, False, False, None, [f"http://{PUB}/license"], False),
        f"http://{NEWS}/news/1": ([], True, False, False, True, [], True),
        f"http://{NEWS}/news/2": ([], True, False, False, True, [], True),
        f"http://{NEWS}/about": none,
        f"http://{NEWS}/free/story": ([], False, False, False, False, [], False),
        f"http://{NEWS}/free/tdm-meta": ([], False, False, False, True, [], True),   # the page's meta wins
        f"http://{BAD}/page": none,
    }


def _fetch(tmp_path, web, urls, **cfg):
    return run_fetch(tmp_path, url_table(urls), allow_private=False, proxy=web.base, **cfg)


def test_fetch_records_robots_verdicts_and_tdmrep_with_one_request_per_host(tmp_path, sites):
    expected = serve(sites)
    stats, log, _ = _fetch(tmp_path, sites, list(expected))
    assert stats.records_out == len(expected)
    for url, (ai_robots, reserved, *_rest) in expected.items():
        row = log[url]
        assert (row["ai_robots"], row["tdmrep_reserved"]) == (ai_robots, reserved), url
    assert log[f"http://{NEWS}/news/1"]["tdmrep_policy"] == "https://news.example/tdm-policy.json"
    for host in (PUB, NEWS, BAD):           # robots.txt and tdmrep.json once per host, nothing else extra
        assert sites.asked(host, "/robots.txt") == 1 and sites.asked(host, TDMREP_PATH) == 1, host
    assert len(sites.log) == len(expected) + 2 * 3
    info = stats.info
    assert info["tdmrep_requests"] == 3 and info["tdmrep_files"] == 1 and info["tdmrep_invalid"] == 1
    assert info["ai_robots_disallowed"] == 1 and info["tdmrep_reserved"] == 2


def test_tdmrep_off_asks_for_no_file(tmp_path, sites):
    expected = serve(sites)
    stats, log, _ = _fetch(tmp_path, sites, list(expected), tdmrep=False)
    assert stats.records_out == len(expected)
    assert not [p for _, p in sites.log if p == TDMREP_PATH]
    assert len(sites.log) == len(expected) + 3                          # pages and robots.txt only
    assert log[f"http://{PUB}/private/report"]["ai_robots"] == ["GPTBot", "CCBot"]
    assert all(r["tdmrep_reserved"] is None for r in log.values())


def test_robots_ignored_gives_no_verdict(tmp_path, sites):
    serve(sites)
    url = f"http://{PUB}/private/report"
    _, log, _ = _fetch(tmp_path, sites, [url], obey_robots=False, tdmrep=False)
    assert log[url]["error"] is None and log[url]["ai_robots"] is None     # unknown, not "allowed"
    assert sites.log == [(PUB, "/private/report")]


def test_failed_pages_ask_for_no_tdmrep(tmp_path, sites):
    serve(sites)
    url = f"http://{NEWS}/missing"
    _, log, _ = _fetch(tmp_path, sites, [url])
    assert log[url]["error"] == "http_4xx" and log[url]["tdmrep_reserved"] is None
    assert sites.asked(NEWS, TDMREP_PATH) == 0


def test_tdmrep_unavailable_is_no_file(tmp_path, sites):
    serve(sites)
    sites.routes[(NEWS, TDMREP_PATH)] = (503, TEXT, b"busy")
    url = f"http://{NEWS}/news/1"
    stats, log, _ = _fetch(tmp_path, sites, [url], retries=0)
    assert log[url]["error"] is None and log[url]["tdmrep_reserved"] is None
    assert stats.info["tdmrep_unavailable"] == 1


def test_old_fetch_logs_read_with_null_optouts(tmp_path):
    import pyarrow as pa

    from webtext.pipeline.schemas import FETCHLOG
    old = pa.schema([f for f in FETCHLOG if f.name not in ("ai_robots", "tdmrep_reserved", "tdmrep_policy")])
    row = {"url_id": "1", "url": "http://a/", "bytes": 0, "elapsed_ms": 0, "tries": 1}
    pq.write_table(pa.Table.from_pylist([row], schema=old), tmp_path / "old.parquet")
    got = pa.Table.from_pylist(pq.read_table(tmp_path / "old.parquet").to_pylist(), schema=FETCHLOG)
    assert got.to_pylist()[0]["ai_robots"] is None and got.to_pylist()[0]["tdmrep_reserved"] is None


# --- robots_verdicts ---------------------------------------------------------------------

NYTIMES = """User-agent: *
Disallow: /search
Allow: /ads/public/

User-agent: GPTBot
Disallow: /

User-agent: CCBot
Disallow: /

User-agent: Google-Extended
Disallow: /

User-agent: anthropic-ai
Disallow: /

User-agent: ClaudeBot
Disallow: /
"""


def test_robots_verdicts_real_world_files():
    r = Protego.parse(NYTIMES)
    assert robots_verdicts(r, "https://www.nytimes.com/2024/01/01/story.html") == list(AI_AGENTS)
    assert robots_verdicts(r, "https://www.nytimes.com/robots.txt") == []      # robots.txt itself is never disallowed
    only_gpt = Protego.parse("User-agent: GPTBot\nDisallow: /\n\nUser-agent: *\nAllow: /\n")
    assert robots_verdicts(only_gpt, "https://x.example/a") == ["GPTBot"]
    assert robots_verdicts(None, "https://x.example/a") == []                  # no robots.txt: nothing disallowed
    everyone = Protego.parse("User-agent: *\nDisallow: /private/\n")            # RFC 9309: * applies to them all
    assert robots_verdicts(everyone, "https://x.example/private/a") == list(AI_AGENTS)
    assert robots_verdicts(everyone, "https://x.example/public") == []


def test_robots_verdicts_user_agent_matching():
    # Google-Extended is a product token with its own group; Googlebot's group is not its group
    r = Protego.parse("User-agent: Googlebot\nDisallow: /\n\nUser-agent: Google-Extended\nDisallow: /gemini/\n")
    assert robots_verdicts(r, "https://x.example/story") == []
    assert robots_verdicts(r, "https://x.example/gemini/a") == ["Google-Extended"]
    # tokens match case-insensitively; an agent's own group overrides *
    r = Protego.parse("User-agent: *\nDisallow: /\n\nUser-agent: gptbot\nAllow: /\n")
    assert robots_verdicts(r, "https://x.example/a") == ["CCBot", "Google-Extended", "ClaudeBot", "anthropic-ai"]
    # Claude-Web (an older Anthropic token) is not ClaudeBot
    r = Protego.parse("User-agent: Claude-Web\nDisallow: /\n")
    assert robots_verdicts(r, "https://x.example/a") == []
    # path patterns as robots.txt writes them
    r = Protego.parse("User-agent: CCBot\nDisallow: /*.pdf$\nDisallow: /drafts\n")
    assert robots_verdicts(r, "https://x.example/a.pdf") == ["CCBot"]
    assert robots_verdicts(r, "https://x.example/a.pdf?x=1") == []
    assert robots_verdicts(r, "https://x.example/drafts-2024/a") == ["CCBot"]


# --- page_optout ---------------------------------------------------------------------------

def test_page_optout_headers():
    assert page_optout([("X-Robots-Tag", "noai")], None)["noai"] is True
    got = page_optout([("X-Robots-Tag", "noindex"), ("x-robots-tag", "NoAI, NoImageAI")], b"")
    assert got["noai"] and got["noimageai"]
    assert page_optout([("X-Robots-Tag", "GPTBot: noai")], "")["noai"] is True        # for an AI agent
    assert page_optout([("X-Robots-Tag", "googlebot: noai")], "")["noai"] is False    # for another agent
    assert page_optout([("X-Robots-Tag", "otherbot: noindex, noai")], "")["noai"] is False   # still otherbot's
    assert page_optout([("X-Robots-Tag", "unavailable_after: 25 Jun 2030 15:00:00 PST, noai")], "")["noai"]
    got = page_optout({"tdm-reservation": "1", "tdm-policy": "https://p.example/policy.json"}, "")
    assert (got["tdm_reservation"], got["tdm_policy"]) == (1, "https://p.example/policy.json")
    assert page_optout({"tdm-reservation": "yes"}, "")["tdm_reservation"] is None        # not 0 or 1
    assert page_optout([], "") == {"noai": False, "noimageai": False, "tdm_reservation": None,
                                   "tdm_policy": None, "licenses": []}


def test_page_optout_html():
    html = ('<html><head><META NAME="Robots" CONTENT="index, NOAI">'
            '<meta name="tdm-reservation" content="1"><meta name="tdm-policy" content="https://p.example/tdm">'
            '<link rel="License stylesheet" href="../license.html"></head><body>'
            '<a rel="license" href="https://creativecommons.org/licenses/by/4.0/">CC BY</a>'
            '<a rel="license" href="https://creativecommons.org/licenses/by/4.0/">again</a>'
            '<a rel="nofollow" href="/x">license</a></body></html>')
    got = page_optout([], html, "https://site.example/a/b.html")
    assert got["noai"] and not got["noimageai"]
    assert (got["tdm_reservation"], got["tdm_policy"]) == (1, "https://p.example/tdm")
    assert got["licenses"] == ["https://site.example/license.html", "https://creativecommons.org/licenses/by/4.0/"]
    assert page_optout([], '<meta name="GPTBot" content="noai">')["noai"]             # an AI agent's own tag
    assert not page_optout([], '<meta name="googlebot" content="noai">')["noai"]
    assert not page_optout([], '<!-- <meta name="robots" content="noai"> -->')["noai"]   # commented out
    assert not page_optout([], "<p>noai</p><meta content=noai>")["noai"]                # no name
    # TDMRep's precedence: the meta tag over the header, even to say 0
    got = page_optout({"tdm-reservation": "1"}, '<meta name="tdm-reservation" content="0">')
    assert got["tdm_reservation"] == 0
    assert page_optout([], '<link rel="license" href="javascript:alert(1)">')["licenses"] == []


@pytest.mark.parametrize("html", [
    "<meta name=robots content='noai", "<<<>>><meta", "<a rel=license href=", "<a rel='license' href=\"x",
    "\x00\ud800<meta name=robots content=noai>", "<!--", "<meta name=\"robots\" content=\"noai\"/",
    b"\xff\xfe<meta name=robots content=noai>",
])
def test_page_optout_malformed_html_never_crashes(html):
    got = page_optout([("X-Robots-Tag", "")], html, "not a url")
    assert set(got) == {"noai", "noimageai", "tdm_reservation", "tdm_policy", "licenses"}


@pytest.mark.parametrize("hostile", [
    "<a " * 400_000,                                     # unclosed tags
    "<meta " + "n" * 1_000_000,                          # one endless tag
    '<a x="' * 200_000,                                  # unclosed quotes
    "<a " + "license" * 150_000,                         # a tag that mentions license, endlessly
    '<a rel=license ' + "b=" * 4000 + ">" * 1000,        # many attributes
    "<!--" * 300_000,                                    # comments that never close
    ("<p>" + "word " * 50 + '<a rel="license" href="/l">l</a></p>') * 20_000,    # a huge page
])
def test_page_optout_is_fast_on_hostile_and_huge_pages(hostile):
    t = time.perf_counter()
    page_optout([], hostile, "https://x.example/")
    assert time.perf_counter() - t < 0.5


# --- tdmrep_lookup -------------------------------------------------------------------------

def test_tdmrep_lookup_follows_the_spec_examples():
    doc = [{"location": "/directory-a/", "tdm-reservation": 1},
           {"location": "/directory-b/html/", "tdm-reservation": 1, "tdm-policy": "https://provider.com/policies/policy.json"},
           {"location": "/directory-b/images/*.jpg", "tdm-reservation": 0}]
    assert tdmrep_lookup(doc, "/directory-a/file.pdf") == (True, None)
    assert tdmrep_lookup(doc, "/directory-b/html/a.html") == (True, "https://provider.com/policies/policy.json")
    assert tdmrep_lookup(doc, "/directory-b/images/x/y.jpg") == (False, None)
    assert tdmrep_lookup(doc, "/directory-c/a") == (None, None)                   # no rule: unset
    assert tdmrep_lookup([{"location": "/", "tdm-reservation": 1}], "/anything?q=1") == (True, None)


def test_tdmrep_lookup_matching():
    first = [{"location": "/news/", "tdm-reservation": 0}, {"location": "/", "tdm-reservation": 1}]
    assert tdmrep_lookup(first, "/news/a") == (False, None)                       # the first match decides
    exact = [{"location": "/this/path/exactly$", "tdm-reservation": 1}]
    assert tdmrep_lookup(exact, "/this/path/exactly") == (True, None)
    assert tdmrep_lookup(exact, "/this/path/exactly/more") == (None, None)
    mid = [{"location": "/this/*/then", "tdm-reservation": 1}]
    assert tdmrep_lookup(mid, "/this/a/b/then/x") == (True, None) and tdmrep_lookup(mid, "/this/then") == (None, None)
    assert tdmrep_lookup([{"location": "/Case", "tdm-reservation": 1}], "/case") == (None, None)   # case-sensitive
    assert tdmrep_lookup([{"location": "/%7Euser/", "tdm-reservation": 1}], "/~user/a") == (True, None)
    assert tdmrep_lookup([{"location": "/path/foo-%24", "tdm-reservation": 1}], "/path/foo-%24") == (True, None)
    t = time.perf_counter()
    evil = [{"location": "/" + "*a" * 500 + "b", "tdm-reservation": 1}] * 20
    assert tdmrep_lookup(evil, "/" + "a" * 100_000) == (None, None)
    assert time.perf_counter() - t < 0.5                                          # no backtracking blow-up


def test_tdmrep_bad_files_are_tolerated():
    assert parse_tdmrep(b'[{"location": "/", "tdm-reservation": 1') is None
    assert parse_tdmrep(b"\xff\xfe") is None and parse_tdmrep(b'"a string"') is None
    assert parse_tdmrep(b"[" * 100_000 + b"]" * 100_000) is None                 # too deep: no crash
    assert parse_tdmrep(b'{"location": "/", "tdm-reservation": 1}') == [{"location": "/", "tdm-reservation": 1}]
    rules = [None, 3, {"location": 5, "tdm-reservation": 1}, {"location": "/a"}, {"tdm-reservation": 1},
             {"location": "/a", "tdm-reservation": 2}, {"location": "/a", "tdm-reservation": "1", "tdm-policy": 7}]
    assert tdmrep_lookup(rules, "/a/b") == (True, None)                           # only the last rule is whole
    assert tdmrep_lookup("nonsense", "/") == (None, None) and tdmrep_lookup(None, "/") == (None, None)


def test_combine_precedence_and_kinds():
    plain = page_optout([], "")
    assert combine(None, None, None, plain)["ai_optout"] is False
    got = combine(["GPTBot"], True, "https://p/1", plain)
    assert got["ai_optout"] and got["ai_optout_kinds"] == ["robots", "tdm"] and got["tdm_policy"] == "https://p/1"
    page0 = page_optout({"tdm-reservation": "0"}, "")
    assert combine([], True, None, page0)["tdm_reserved"] is False                # the header overrides the file
    assert combine([], None, None, page_optout([], '<meta name="robots" content="noimageai">'))["ai_optout"] is False


# --- extract: the recorded fields, and record | drop ----------------------------------------

def _extract(tmp_path, warcs, **cfg):
    from webtext.pipeline.config import ExtractConfig, to_dict
    from webtext.pipeline.executor import Task
    from webtext.stages import extract, refilter

    out = tmp_path / "docs" / "docs-00000.parquet"
    out.parent.mkdir(exist_ok=True)
    stats = extract.extract_shard(Task("extract", "00000", extract.extract_shard, warcs,
                                       [out, refilter.rejected_path(out.parent, "00000")],
                                       {"extract": to_dict(ExtractConfig(**cfg))}))
    docs = pq.read_table(out).to_pylist() if out.exists() else []
    rej_path = refilter.rejected_path(out.parent, "00000")
    rejected = pq.read_table(rej_path).to_pylist() if rej_path.exists() else []
    return stats, {d["url"]: d for d in docs}, {r["url"]: r for r in rejected}


def test_extract_records_every_signal_per_document(tmp_path, sites):
    expected = serve(sites)
    (tmp_path / "warc").mkdir()
    _, _, warcs = _fetch(tmp_path / "warc", sites, list(expected))
    stats, docs, rejected = _extract(tmp_path, warcs)
    assert set(docs) == set(expected) and not rejected            # record: every page is kept
    for url, (ai_robots, _, noai, noimageai, tdm, licenses, opted) in expected.items():
        s = docs[url]["signals"]
        got = (s["ai_robots"], s["noai"], s["noimageai"], s["tdm_reserved"], s["licenses"], s["ai_optout"])
        assert got == (ai_robots, noai, noimageai, tdm, licenses, opted), url
    assert docs[f"http://{NEWS}/news/1"]["signals"]["tdm_policy"] == "https://news.example/tdm-policy.json"
    n_opted = sum(e[-1] for e in expected.values())
    info = stats.info
    assert info["ai_optout_checked"] == len(expected) and info["ai_optout_pages"] == n_opted
    assert info["ai_optout_kept"] == n_opted
    assert (info["ai_optout_robots"], info["ai_optout_noai"], info["ai_optout_tdm"]) == (1, 2, 5)


def test_extract_drop_removes_exactly_the_opted_out_pages(tmp_path, sites):
    expected = serve(sites)
    (tmp_path / "warc").mkdir()
    _, _, warcs = _fetch(tmp_path / "warc", sites, list(expected))
    stats, docs, rejected = _extract(tmp_path, warcs, ai_optout="drop")
    opted = {u for u, e in expected.items() if e[-1]}
    assert set(rejected) == opted and set(docs) == set(expected) - opted
    assert {r["reason"] for r in rejected.values()} == {"ai_optout"}
    assert stats.dropped["ai_optout"] == len(opted) and stats.info["ai_optout_kept"] == 0


def test_extract_ai_optout_setting_is_checked():
    from webtext.pipeline.config import ExtractConfig
    from webtext.pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="extract.ai_optout must be record or drop"):
        ExtractConfig(ai_optout="skip")


def test_webtext_filter_switches_record_to_drop_without_extracting(tmp_path, sites):
    """The opt-out record is among the signals: ``webtext filter`` with ai_optout = "drop"
    moves exactly the opted-out documents to docs/rejected/, and back with "record"."""
    from webtext.pipeline.report import collect_report, render_html
    from webtext.stages import extract, refilter

    from conftest import make_context

    expected = serve(sites)
    (tmp_path / "warc").mkdir()
    _fetch(tmp_path / "warc", sites, list(expected))
    first = extract.run(make_context(tmp_path))
    assert first["out"] == len(expected)
    opted = {u for u, e in expected.items() if e[-1]}
    shown = collect_report(tmp_path)["documents"]["ai_optout"]          # the report's opted-out share
    assert shown == {"mode": "record", "checked": len(expected), "pages": len(opted), "robots": 1, "noai": 2,
                     "tdm": 5, "kept": len(opted)}
    assert f"{len(opted)} ({len(opted) / len(expected):.1%}) opted out" in render_html(collect_report(tmp_path))
    got = refilter.refilter(make_context(tmp_path, extract={"ai_optout": "drop"}))
    assert got["moved_to_rejected"] == {"ai_optout": len(opted)} and got["docs"] == len(expected) - len(opted)
    shown = collect_report(tmp_path)["documents"]["ai_optout"]
    assert (shown["mode"], shown["pages"], shown["kept"]) == ("drop", len(opted), 0)
    rejected = pq.read_table(refilter.rejected_path(tmp_path / "docs", "00000")).to_pylist()
    assert {r["url"] for r in rejected} == opted
    back = refilter.refilter(make_context(tmp_path))
    assert back["moved_to_docs"] == len(opted) and back["docs"] == len(expected)

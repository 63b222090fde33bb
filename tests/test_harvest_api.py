"""harvest --source api: real praw against a loopback Reddit API built from recorded responses."""

import base64
import json
import time
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pyarrow.parquet as pq
import pytest

from webtext.pipeline.errors import WebtextError
from webtext.stages import harvest

from conftest import LoopbackServer, make_context, shared_path

SECRET = "s3cr3t-value-never-logged"


def cassette_items(name="TestSubredditListings.test_new.json"):
    data = json.loads(shared_path("reddit", "praw-cassettes", name).read_text())
    for it in data["interactions"]:
        body = it["response"]["body"]["string"]
        if it["request"]["method"] == "GET":
            return [c["data"] for c in json.loads(body)["data"]["children"]]
    raise AssertionError("no listing in cassette")


class LoopbackReddit(LoopbackServer):
    """Answers praw's OAuth token POST, listing GETs and ``/api/info`` like reddit.com (shapes
    from the cassettes). ``items`` is the listing; ``posts`` (id -> data, the same dicts) is
    what ``/api/info`` knows: change a score there, or delete a post, between pulls."""

    def __init__(self, items, page_size=100, ratelimit_reset=None):
        self.items, self.page_size, self.ratelimit_reset = items, page_size, ratelimit_reset
        self.posts = {d["id"]: d for d in items}
        self.log = []
        srv = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, status, obj, headers=()):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                n = int(self.headers.get("Content-Length", 0))
                form = parse_qs(self.rfile.read(n).decode())
                auth = base64.b64decode(self.headers.get("Authorization", "Basic ")[6:]).decode()
                srv.log.append(("POST", self.path, time.monotonic()))
                if self.path != "/api/v1/access_token" or form.get("grant_type") != ["client_credentials"]:
                    return self._send(400, {"error": "unsupported_grant_type"})
                if auth != f"cid:{SECRET}":
                    return self._send(401, {"message": "Unauthorized", "error": 401})
                self._send(200, {"access_token": "tok", "token_type": "bearer", "expires_in": 3600, "scope": "*"})

            def do_GET(self):  # noqa: N802
                parts = urlsplit(self.path)
                q = parse_qs(parts.query)
                srv.log.append(("GET", self.path, time.monotonic()))
                if self.headers.get("Authorization") != "bearer tok":
                    return self._send(401, {"message": "Unauthorized", "error": 401})
                if parts.path.rstrip("/") == "/api/info":     # fullnames in order; unknown ones left out
                    names = q.get("id", [""])[0].split(",")
                    found = [srv.posts[n[3:]] for n in names if n.startswith("t3_") and n[3:] in srv.posts]
                    return self._send(200, {"kind": "Listing", "data": {
                        "after": None, "dist": len(found), "modhash": None, "geo_filter": "", "before": None,
                        "children": [{"kind": "t3", "data": d} for d in found]}})
                after = q.get("after", [None])[0]
                start = 0
                if after:
                    start = next(i + 1 for i, d in enumerate(srv.items) if d["name"] == after)
                limit = min(int(q.get("limit", ["25"])[0]), srv.page_size)
                page = srv.items[start:start + limit]
                more = start + limit < len(srv.items)
                headers = []
                if srv.ratelimit_reset is not None:
                    headers = [("X-Ratelimit-Remaining", "0"), ("X-Ratelimit-Used", "600"),
                               ("X-Ratelimit-Reset", str(srv.ratelimit_reset))]
                self._send(200, {"kind": "Listing", "data": {
                    "modhash": None, "before": None, "after": page[-1]["name"] if more and page else None,
                    "children": [{"kind": "t3", "data": d} for d in page]}}, headers)

            def log_message(self, *a):
                pass

        self.start(Handler)


@pytest.fixture
def creds(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)                       # no praw.ini from the developer's folder
    monkeypatch.setenv("praw_client_id", "cid")
    monkeypatch.setenv("praw_client_secret", SECRET)


def _api_ctx(workdir, server, **extra):
    return make_context(workdir, harvest={"source": "api", "subreddits": ["AskReddit"], "reddit_url": server.base,
                                          "oauth_url": server.base, **extra})


def _urls(workdir):
    return pq.read_table(sorted((workdir / "urls").glob("urls-*.parquet"))).sort_by("url").to_pylist()


def test_api_harvest_filters_like_dumps(creds, tmp_path, capfd):
    items = cassette_items("TestFront.test_top.json")    # the front page's top: images, videos, articles
    server = LoopbackReddit(items, page_size=40)
    try:
        stats = harvest.run(_api_ctx(tmp_path / "w", server, subreddits=["all"], listing="top"))
    finally:
        server.close()
    assert [m for m, *_ in server.log] == ["POST", "GET", "GET", "GET"]        # token, then 3 pages of 40
    assert all("/r/all/top" in p and "t=all" in p for m, p, _ in server.log if m == "GET")
    assert stats["in"] == 100 == stats["out"] + sum(stats["dropped"].values())
    assert stats["dropped"]["self_post"] == sum(1 for d in items if d["is_self"]) == 19
    assert stats["dropped"]["blocklisted_domain"] >= 14 + 16            # imgur.com, youtube.com
    assert stats["dropped"]["media_url"] >= 30                           # i.imgur.com/....jpg
    by_id = {d["id"]: d for d in items}
    rows = _urls(tmp_path / "w")
    assert rows
    for r in rows:
        subs = [by_id[i] for i in r["submission_ids"]]
        assert all(not d["is_self"] and not d["over_18"] for d in subs)
        assert r["score"] == sum(d["score"] for d in subs) >= 1
    # Credentials never reach the logs or the work directory.
    out = capfd.readouterr()
    assert SECRET not in out.out + out.err
    for f in (tmp_path / "w").rglob("*"):
        if f.is_file():
            assert SECRET.encode() not in f.read_bytes(), f


def test_api_new_listing_is_incremental(creds, tmp_path):
    items = cassette_items()                            # newest first, as /new serves them
    for d in items:
        d.update(is_self=False, over_18=False, url=f"https://site.example/{d['id']}", domain="site.example", score=5)
    server = LoopbackReddit(items[30:])
    ctx = _api_ctx(tmp_path / "w", server)
    try:
        first = harvest.run(ctx)
        server.items = items                            # 30 newer submissions arrive
        second = harvest.run(ctx)
    finally:
        server.close()
    assert first["out"] == 70 and first["info"]["new_urls"] == 70
    assert second["out"] == 100 and second["info"]["new_urls"] == 30
    assert second["in"] == 100                          # the second pull read only the 30 new ones
    newest = max(d["created_utc"] for d in items)
    assert ctx.state.api_watermarks() == {"askreddit/new": newest}
    assert {r["url"] for r in _urls(tmp_path / "w") if r["harvest_version"] == 2} == \
        {f"https://site.example/{d['id']}" for d in items[:30]}


def test_api_bad_created_utc_is_no_watermark(creds, tmp_path):
    """A created_utc that is not a number, not finite or outside int64 never fails a pull,
    never becomes the watermark and never stops a ``new`` listing; the Filter judges the row."""
    items = cassette_items()
    for d in items:
        d.update(is_self=False, over_18=False, url=f"https://site.example/{d['id']}", domain="site.example", score=5)
    newest = max(d["created_utc"] for d in items[4:])
    for d, bad in zip(items, ["abc", float("inf"), "1e400", 1e30]):     # the 4 newest (inf goes as Infinity)
        d["created_utc"] = bad
    server = LoopbackReddit(items)
    ctx = _api_ctx(tmp_path / "w", server)
    try:
        first = harvest.run(ctx)
        second = harvest.run(ctx)
    finally:
        server.close()
    assert first["in"] == 100 and first["dropped"]["bad_value"] == 3     # "abc" is 0, as a missing one
    assert ctx.state.api_watermarks() == {"askreddit/new": newest}
    assert second["in"] == 100 + 4          # the bad ones are read again: they cannot place the listing


def test_api_honours_rate_limit_headers(creds, tmp_path):
    server = LoopbackReddit(cassette_items()[:20], page_size=10, ratelimit_reset=2)
    try:
        harvest.run(_api_ctx(tmp_path / "w", server, min_score=1))
    finally:
        server.close()
    gets = [t for m, _, t in server.log if m == "GET"]
    assert len(gets) == 2
    assert gets[1] - gets[0] >= 1.0                     # praw waited for the window to reset


def test_api_credential_errors_are_clear(monkeypatch, tmp_path, creds):
    server = LoopbackReddit(cassette_items()[:5])
    try:
        monkeypatch.setenv("praw_client_secret", "wrong-" + SECRET)
        with pytest.raises(WebtextError) as e:
            harvest.run(_api_ctx(tmp_path / "w", server))
        assert "Reddit API error" in e.value.message and SECRET not in e.value.message
        monkeypatch.delenv("praw_client_id")
        monkeypatch.delenv("praw_client_secret")
        with pytest.raises(WebtextError, match="credentials are missing"):
            harvest.run(_api_ctx(tmp_path / "w2", server))
    finally:
        server.close()
    with pytest.raises(WebtextError, match="no subreddits"):
        harvest.run(make_context(tmp_path / "w3", harvest={"source": "api"}))

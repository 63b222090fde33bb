"""harvest --source api over several pulls: karma that matures after a pull (re-scored
through ``/api/info``), posts that vanish, the settle window, and the watermark tie.

praw runs unchanged against ``test_harvest_api.LoopbackReddit``; the server's posts change
between pulls, and the pulls' "now" is ``reddit_api.clock``, set by each test.
"""

import copy
from urllib.parse import parse_qs, urlsplit

import pytest

from webtext.pipeline.state import State
from webtext.stages import harvest, reddit_api

from test_harvest_api import LoopbackReddit, _api_ctx, _urls, cassette_items, creds  # noqa: F401

pytestmark = pytest.mark.usefixtures("creds")    # praw's credentials from the environment

NOW = 1_800_000_000.0          # the first pull's "now" (2027-01-15), unix seconds


@pytest.fixture
def clock(monkeypatch):
    """``clock[0]`` is the next pull's now."""
    now = [NOW]
    monkeypatch.setattr(reddit_api, "clock", lambda: now[0])
    return now


def make_posts(n, created, score, prefix="k"):
    """``n`` link posts shaped like the recorded /new listing, newest first: ids
    ``<prefix>00000``..., created ``created - i`` seconds, each at ``score``."""
    base = cassette_items()[0]
    posts = []
    for i in range(n):
        d = copy.deepcopy(base)
        pid = f"{prefix}{i:05d}"
        d.update(id=pid, name=f"t3_{pid}", is_self=False, over_18=False, url=f"https://site.example/{pid}",
                 domain="site.example", score=score, created_utc=float(created - i), created=float(created - i),
                 removed_by_category=None, banned_by=None)
        posts.append(d)
    return posts


def info_calls(server):
    """The ids of each /api/info request, in order."""
    calls = []
    for method, path, _ in server.log:
        parts = urlsplit(path)
        if method == "GET" and parts.path.rstrip("/") == "/api/info":
            calls.append([n.removeprefix("t3_") for n in parse_qs(parts.query)["id"][0].split(",")])
    return calls


def by_url(workdir):
    return {r["url"].rsplit("/", 1)[1]: r for r in _urls(workdir)}


def test_karma_matures_between_pulls(clock, tmp_path):
    fresh = make_posts(150, NOW - 600, score=1)               # minutes old: 1 karma each
    settled = make_posts(1, NOW - 3 * 86400, score=7, prefix="old")
    server = LoopbackReddit(fresh + settled)
    ctx = _api_ctx(tmp_path / "w", server)
    try:
        first = harvest.run(ctx)
        assert first["dropped"]["low_score"] == 150 and set(by_url(tmp_path / "w")) == {"old00000"}
        assert info_calls(server) == []                       # nothing pending before the first pull
        for d in fresh[:40]:                                  # the server's state changes: 40 gain karma
            d["score"] = 5
        clock[0] = NOW + 3600
        second = harvest.run(ctx)                             # the listing has nothing new
    finally:
        server.close()
    calls = info_calls(server)
    assert [len(c) for c in calls] == [100, 50]                # praw batches 100 fullnames a request
    assert sorted(i for c in calls for i in c) == sorted(d["id"] for d in fresh)   # the settled one is not asked
    assert second["info"]["rescored"] == 150 and second["info"]["matured"] == 40
    assert second["info"]["vanished"] == 0
    rows = by_url(tmp_path / "w")
    assert set(rows) == {"old00000"} | {d["id"] for d in fresh[:40]}
    assert all(rows[d["id"]]["score"] == 5 and rows[d["id"]]["num_submissions"] == 1 for d in fresh[:40])
    # Each submission counts once: the newest observation replaced the first one.
    assert second["dropped"]["duplicate_submission"] == 150
    assert second["in"] == second["out"] + sum(second["dropped"].values())
    assert second["in"] - first["in"] == 150                  # the re-scored observations only


def test_settle_window_ends_rescoring(clock, tmp_path):
    young = make_posts(1, NOW - 60, score=1, prefix="young")
    middle = make_posts(1, NOW - 1800, score=1, prefix="mid")     # young at pull 1, settled by pull 2
    old = make_posts(1, NOW - 7200, score=1, prefix="old")        # settled already at pull 1
    server = LoopbackReddit(young + middle + old)
    ctx = _api_ctx(tmp_path / "w", server, api_settle_hours=1.0)
    try:
        harvest.run(ctx)
        assert sorted(ctx.state.api_pending(NOW - 3600)) == ["mid00000", "young00000"]
        for d in server.items:
            d["score"] = 9
        clock[0] = NOW + 2400
        second = harvest.run(ctx)
    finally:
        server.close()
    assert info_calls(server) == [["young00000"]]
    assert second["info"]["matured"] == 1
    assert set(by_url(tmp_path / "w")) == {"young00000"}         # the others stay at the score they were read at
    assert sorted(ctx.state.api_pending(NOW + 2400 - 3600)) == ["young00000"]


def test_settle_hours_zero_never_rescores(clock, tmp_path):
    server = LoopbackReddit(make_posts(3, NOW - 60, score=1))
    ctx = _api_ctx(tmp_path / "w", server, api_settle_hours=0)
    try:
        harvest.run(ctx)
        clock[0] = NOW + 60
        second = harvest.run(ctx)
    finally:
        server.close()
    assert info_calls(server) == [] and "rescored" not in second["info"]
    assert ctx.state.api_pending(0) == {}


def test_removed_and_missing_posts_vanish(clock, tmp_path):
    posts = make_posts(3, NOW - 600, score=4)          # k00000 stays, k00001 is removed, k00002 is gone
    server = LoopbackReddit(posts)
    ctx = _api_ctx(tmp_path / "w", server)
    try:
        harvest.run(ctx)
        posts[0]["score"] = 11
        posts[1].update(removed_by_category="moderator", score=0)
        del server.posts["k00002"]
        clock[0] = NOW + 600
        second = harvest.run(ctx)
    finally:
        server.close()
    assert info_calls(server) == [["k00000", "k00001", "k00002"]]
    assert second["info"]["rescored"] == 1 and second["info"]["vanished"] == 2
    assert second["dropped"]["removed"] == 1                  # the filter's reason counts the removed answer
    rows = by_url(tmp_path / "w")
    # A vanished submission keeps its last observation; the live one has its new score.
    assert {k: r["score"] for k, r in rows.items()} == {"k00000": 11, "k00001": 4, "k00002": 4}
    assert sorted(ctx.state.api_pending(NOW - 3600)) == ["k00000"]   # the vanished ones are asked no more


@pytest.mark.parametrize("late_first", [True, False])
def test_watermark_tie_harvests_each_post_once(clock, tmp_path, late_first):
    """Posts in the same second as the watermark, listed only after the pull that set it,
    are harvested at the next pull; none is harvested twice (Reddit orders a tie either way)."""
    t = NOW - 5 * 86400                                # settled: only the listing reads them
    a, b, c = (make_posts(1, t, score=5, prefix=p)[0] for p in ("a", "b", "c"))
    older = make_posts(1, t - 10, score=5, prefix="z")[0]
    server = LoopbackReddit([a, older])
    ctx = _api_ctx(tmp_path / "w", server)
    try:
        first = harvest.run(ctx)
        server.items = [b, a, older] if late_first else [a, b, older]
        second = harvest.run(ctx)
        server.items = [c, b, a, older] if late_first else [a, b, c, older]
        third = harvest.run(ctx)
        fourth = harvest.run(ctx)                      # nothing new at all
    finally:
        server.close()
    assert [first["in"], second["in"], third["in"], fourth["in"]] == [2, 3, 4, 4]
    assert "duplicate_submission" not in fourth["dropped"]
    rows = by_url(tmp_path / "w")
    assert set(rows) == {"a00000", "b00000", "c00000", "z00000"}
    assert [rows[k]["harvest_version"] for k in ("a00000", "b00000", "c00000")] == [1, 2, 3]
    assert ctx.state.api_watermarks() == {"askreddit/new": t}
    assert ctx.state.api_watermark_ids() == {"askreddit/new": ["a00000", "b00000", "c00000"]}
    assert info_calls(server) == []


def test_old_state_database_gains_watermark_ids(tmp_path):
    import sqlite3

    db = sqlite3.connect(tmp_path / "state.sqlite")
    db.execute("CREATE TABLE api_watermarks (key TEXT PRIMARY KEY, newest_utc REAL NOT NULL)")
    db.execute("INSERT INTO api_watermarks VALUES ('science/new', 100.0)")
    db.commit()
    db.close()
    st = State(tmp_path)
    assert st.api_watermarks() == {"science/new": 100.0} and st.api_watermark_ids() == {"science/new": []}
    st.set_api_watermarks({"science/new": [100.0, ["x"]]})
    st.set_api_watermarks({"science/new": [100.0, ["y"]], "other/new": 5.0})
    st.set_api_watermarks({"science/new": [99.0, ["old"]]})         # an earlier second changes nothing
    assert st.api_watermark_ids() == {"science/new": ["x", "y"], "other/new": []}
    st.set_api_watermarks({"science/new": [101.0, ["z"]]})
    assert st.api_watermark_ids()["science/new"] == ["z"] and st.api_watermarks()["science/new"] == 101.0
    st.close()

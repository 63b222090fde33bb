"""harvest from the live Reddit API through praw (``[harvest] source = "api"``).

One pull is one map task: for every configured subreddit, read the ``new``, ``top`` or
``hot`` listing (praw pages through it and honours Reddit's rate-limit headers), filter
the submissions as for dumps, and write ``urls/_meta/parts/api-v<version>-<time>.parquet``.
The driver side of a pull is ``Pull``: ``plan`` reads the state database, ``task`` is
the map task, ``record`` writes the state back after it.

Incremental: for ``new`` (newest first) the pull stops below the newest ``created_utc``
recorded by the previous pull of the same subreddit (``api_watermarks`` in the state
database). Submissions *at* that second are read again, and skipped only when their id is
one the earlier pulls saw at that second (the table keeps those ids): a submission posted
in the same second as the newest one seen, but listed only after that pull, is harvested
once and never twice. ``top`` and ``hot`` are not time-ordered and are read to
``api_limit`` every time; reduce keeps the newest observation of each submission id, so
scores are updated, not double-counted. A ``created_utc`` that is no usable time (not a
number, not finite, outside int64) neither stops a ``new`` listing nor becomes the watermark.

Karma matures: a submission read from ``new`` minutes after it was posted has about 1
karma, and the listing never shows it to a later pull. So every kept submission younger
than ``api_settle_hours`` is remembered (``api_pending``: id, created_utc, last score),
and each later pull re-reads those it did not list by id (``reddit.info``: ``/api/info``,
100 ids a request) and writes their current observation into its own part; reduce keeps
the newest observation, so a post that reaches ``min_score`` later is kept. Older
submissions have settled and leave the table. Counted in ``info``: ``rescored`` (a new
observation written), ``matured`` (of those, the ones whose score crossed ``min_score``),
``vanished`` (asked for but not returned, or returned deleted, removed or otherwise
filtered; the filter's drop reason counts it too). A vanished submission keeps its last
observation in reduce.

Credentials come from praw itself: a praw.ini site (``praw_site``) or the environment
(``praw_client_id``, ``praw_client_secret``). They are never logged or written to the
work directory. The endpoints ``reddit_url`` and ``oauth_url`` are configurable, so tests
run praw unchanged against a loopback server.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from webtext.pipeline.errors import WebtextError
from webtext.pipeline.executor import Task
from webtext.pipeline.schemas import seconds
from webtext.pipeline.stats import Stats

from .harvest_map import SubmissionWriter, filter_into, make_filter
from .reddit import INT64_MAX, INT64_MIN, Submission, as_int

PAGE = 100   # submissions filtered and written together (one listing page; /api/info's limit of ids)

API_KEYS = ("subreddits", "listing", "time_filter", "api_limit", "praw_site", "reddit_url", "oauth_url",
            "api_user_agent")

clock = time.time   # a pull's "now" (unix seconds): what the settle window is measured from; tests set it


@dataclass(slots=True)
class Pull:
    """One API pull, as the driver sees it (only the driver touches the state database)."""

    part: Path                          # urls/_meta/parts/api-v<version>-<time>.parquet
    now: float                          # unix seconds
    settle_s: float                     # api_settle_hours in seconds; 0 = no re-scoring
    marks: dict[str, float]             # "<subreddit>/<listing>" -> newest created_utc seen
    mark_ids: dict[str, list[str]]      # the same key -> the ids seen at that second
    pending: dict[str, int]             # id -> last score: young submissions of earlier pulls

    @classmethod
    def plan(cls, cfg, state, parts_dir: Path, version: int) -> "Pull":
        now = clock()
        settle_s = cfg.api_settle_hours * 3600.0
        part = parts_dir / f"api-v{version:05d}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime(now))}.parquet"
        pending = state.api_pending(now - settle_s) if settle_s else {}
        return cls(part, now, settle_s, state.api_watermarks(), state.api_watermark_ids(), pending)

    def task(self, cfg, filter_params: dict) -> Task:
        if not cfg.subreddits:
            raise WebtextError("no subreddits given for the API source",
                               "Pass --subreddit NAME or set [harvest] subreddits")
        api = {k: getattr(cfg, k) for k in API_KEYS}
        return Task("map", self.part.stem, pull_api, [], [self.part], filter_params,
                    options={"api": api, "watermarks": self.marks, "mark_ids": self.mark_ids,
                             "pending": self.pending, "min_score": cfg.min_score})

    def record(self, state, stats: Stats) -> None:
        """After the pull: advance the watermarks; the re-scored ids leave ``api_pending`` and
        every young submission in this pull's part (listed or re-scored) comes in."""
        state.set_api_watermarks(stats.info.get("api_newest", {}))
        if not self.settle_s:
            return
        seen = []
        if self.part.exists():          # no kept submission: no part
            t = pq.read_table(self.part, columns=["id", "created_utc", "score"])
            young = self.now - self.settle_s
            for i, c, s in zip(t["id"].to_pylist(), seconds(t["created_utc"]).to_pylist(), t["score"].to_pylist()):
                if i and c >= young:
                    seen.append((i, float(c), int(s)))
        state.set_api_pending(list(self.pending), seen, self.now)


def _reddit(api: dict):
    import praw
    from praw.exceptions import MissingRequiredAttributeException

    try:
        return praw.Reddit(site_name=api["praw_site"] or None, user_agent=api["api_user_agent"],
                           reddit_url=api["reddit_url"], oauth_url=api["oauth_url"], check_for_async=False)
    except MissingRequiredAttributeException:
        raise WebtextError(
            "Reddit API credentials are missing",
            "Set praw_client_id and praw_client_secret in the environment, or a praw.ini site with --praw-site",
        ) from None
    except Exception as e:  # e.g. an unknown praw.ini site
        raise WebtextError(f"cannot configure praw: {type(e).__name__}: {e}") from None


def _listing(reddit, api: dict, name: str):
    sub = reddit.subreddit(name)
    if api["listing"] == "top":
        return sub.top(time_filter=api["time_filter"], limit=api["api_limit"])
    return getattr(sub, api["listing"])(limit=api["api_limit"])


def _as_submission(s) -> Submission:
    """praw Submission -> the same record a dump line decodes to.

    Fields are read from the listing data praw already holds (``vars(s)``): ``getattr``
    on a field the listing lacks would make praw fetch the whole submission, one extra
    API request per submission.
    """
    d = vars(s)
    return Submission(url=d.get("url"), score=d.get("score"), is_self=d.get("is_self"), over_18=d.get("over_18"),
                      created_utc=d.get("created_utc"), subreddit=str(d.get("subreddit") or ""), id=d.get("id"),
                      title=d.get("title"), domain=d.get("domain"),
                      removed_by_category=d.get("removed_by_category"), banned_by=d.get("banned_by"))


def watermark_utc(value) -> float | None:
    """A submission's created_utc as a watermark, or None where it is no usable time: not
    a number (a word, missing), not finite or outside int64. The row itself goes to the
    Filter, which counts the last two as bad_value; a bad value must never fail a pull."""
    n = as_int(value, None)
    if n is None or not INT64_MIN <= n <= INT64_MAX:
        return None
    return float(value)


def pull_api(task: Task) -> Stats:
    opt = task.options
    api, keep = opt["api"], make_filter(task.params)
    reddit = _reddit(api)
    stats, newest, listed = Stats(), {}, set()

    with SubmissionWriter(task.outputs[0]) as w:
        def flush(subs: list[Submission]) -> None:
            listed.update(s.id for s in subs)
            filter_into(keep, subs, stats, w)

        _pull_all(reddit, api, opt["watermarks"], opt.get("mark_ids", {}), flush, stats, newest)
        # A pending submission this pull listed again has its new observation already.
        pending = {i: s for i, s in opt.get("pending", {}).items() if i not in listed}
        _rescore(reddit, pending, opt.get("min_score", 3), keep, stats, w)
    stats.records_out = w.rows
    stats.add_info("api_newest", {k: [utc, sorted(ids)] for k, (utc, ids) in newest.items()})
    return stats


def _api_error(what: str, e: Exception) -> WebtextError:
    # The message names the HTTP status or connection problem, never a credential.
    return WebtextError(f"Reddit API error for {what}: {type(e).__name__}: {e}",
                        "Check credentials, the subreddit name and the API endpoints")


def _pull_all(reddit, api: dict, marks: dict, mark_ids: dict, flush, stats: Stats, newest: dict) -> None:
    """Pull every listing; ``flush(submissions)`` filters and writes them, a page at a time.
    ``newest[key]`` becomes ``(utc, ids)``: the newest created_utc read and the ids at it."""
    from prawcore.exceptions import PrawcoreException

    for name in api["subreddits"]:
        key = f"{name.lower()}/{api['listing']}"
        since = float(marks.get(key, 0.0))
        seen = set(mark_ids.get(key, ()))       # harvested at the watermark second already
        pending: list[Submission] = []
        try:
            for s in _listing(reddit, api, name):
                sub = _as_submission(s)
                created = watermark_utc(sub.created_utc)
                if created is not None:         # a bad time neither stops the listing nor becomes the mark
                    if api["listing"] == "new" and created < since:
                        break                   # newest first: everything below is already harvested
                    if api["listing"] == "new" and created == since and sub.id in seen:
                        continue                # the tie: only the ones seen at the mark are skipped
                    utc, ids = newest.setdefault(key, (since, set(seen)))
                    if created > utc:
                        newest[key] = (created, {sub.id})
                    elif created == utc:
                        ids.add(sub.id)
                stats.records_in += 1
                pending.append(sub)
                if len(pending) >= PAGE:
                    flush(pending)
                    pending = []
        except PrawcoreException as e:
            raise _api_error(f"r/{name}", e) from None
        flush(pending)


def _rescore(reddit, pending: dict[str, int], min_score: int, keep, stats: Stats, w: SubmissionWriter) -> None:
    """Read ``pending`` (id -> last score) again by id and write their current observations.

    praw's ``reddit.info`` asks ``/api/info?id=t3_a,t3_b,...`` for 100 ids at a time. The
    answers go through the filter like listed ones (so a removed one is dropped as
    ``removed``); a kept answer is ``rescored``, and ``matured`` if its score crossed
    ``min_score``; an id with no kept answer is ``vanished``.
    """
    if not pending:
        return
    from praw.models import Submission as PrawSubmission
    from prawcore.exceptions import PrawcoreException

    rescored = matured = 0

    def write(page: list[Submission]) -> tuple[int, int]:
        stats.records_in += len(page)
        drops, kept = keep.batch(page)
        stats.dropped.update(drops)
        w.write(kept)
        scores = zip(kept["id"].to_pylist(), kept["score"].to_pylist()) if kept.num_rows else ()
        return kept.num_rows, sum(1 for i, s in scores if pending.get(i, s) < min_score <= s)

    page: list[Submission] = []
    try:
        for s in reddit.info(fullnames=[f"t3_{i}" for i in sorted(pending)]):
            if isinstance(s, PrawSubmission) and vars(s).get("id") in pending:
                page.append(_as_submission(s))
            if len(page) >= PAGE:
                r, m = write(page)
                rescored, matured, page = rescored + r, matured + m, []
    except PrawcoreException as e:
        raise _api_error("re-scoring (/api/info)", e) from None
    r, m = write(page) if page else (0, 0)
    stats.add_info("rescored", rescored + r)
    stats.add_info("matured", matured + m)
    stats.add_info("vanished", len(pending) - rescored - r)

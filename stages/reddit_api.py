"""harvest from the live Reddit API through praw (``[harvest] source = "api"``).

One pull is one map task: for every configured subreddit, read the ``new``, ``top`` or
``hot`` listing (praw pages through it and honours Reddit's rate-limit headers), filter
the submissions as for dumps, and write ``urls/_parts/api-v<version>-<time>.parquet``.

Incremental: for ``new`` (newest first) the pull stops at the newest ``created_utc``
recorded by the previous pull of the same subreddit (``api_watermarks`` in the state
database). ``top`` and ``hot`` are not time-ordered and are read to ``api_limit`` every
time; reduce keeps the newest observation of each submission id, so scores are updated,
not double-counted. A ``created_utc`` that is no usable time (not a number, not finite,
outside int64) neither stops a ``new`` listing nor becomes the watermark.

Credentials come from praw itself: a praw.ini site (``praw_site``) or the environment
(``praw_client_id``, ``praw_client_secret``). They are never logged or written to the
work directory. The endpoints ``reddit_url`` and ``oauth_url`` are configurable, so tests
run praw unchanged against a loopback server.
"""

from __future__ import annotations

from pathlib import Path

from webtext.pipeline.errors import WebtextError
from webtext.pipeline.executor import Task
from webtext.pipeline.stats import Stats

from .reddit import INT64_MAX, INT64_MIN, Submission, as_int

PAGE = 100   # submissions filtered and written together (one listing page)

API_KEYS = ("subreddits", "listing", "time_filter", "api_limit", "praw_site", "reddit_url", "oauth_url",
            "api_user_agent")


def pull_task(cfg, part: Path, filter_params: dict, watermarks: dict[str, float]) -> Task:
    if not cfg.subreddits:
        raise WebtextError("no subreddits given for the API source", "Pass --subreddit NAME or set [harvest] subreddits")
    api = {k: getattr(cfg, k) for k in API_KEYS}
    return Task("map", part.stem, pull_api, [], [part], filter_params,
                options={"api": api, "watermarks": watermarks})


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
    from .harvest import SubmissionWriter, filter_into, make_filter

    api, marks = task.options["api"], task.options["watermarks"]
    keep = make_filter(task.params)
    reddit = _reddit(api)
    stats, newest = Stats(), {}
    with SubmissionWriter(task.outputs[0]) as w:
        _pull_all(reddit, api, marks, lambda subs: filter_into(keep, subs, stats, w), stats, newest)
    stats.records_out = w.rows
    stats.add_info("api_newest", newest)
    return stats


def _pull_all(reddit, api: dict, marks: dict, flush, stats: Stats, newest: dict) -> None:
    """Pull every listing; ``flush(submissions)`` filters and writes them, a page at a time."""
    from prawcore.exceptions import PrawcoreException

    for name in api["subreddits"]:
        key = f"{name.lower()}/{api['listing']}"
        since = float(marks.get(key, 0.0))
        pending: list[Submission] = []
        try:
            for s in _listing(reddit, api, name):
                sub = _as_submission(s)
                created = watermark_utc(sub.created_utc)
                if created is not None:         # a bad time neither stops the listing nor becomes the mark
                    if api["listing"] == "new" and created <= since:
                        break                   # newest first: everything below is already harvested
                    newest[key] = max(newest.get(key, since), created)
                stats.records_in += 1
                pending.append(sub)
                if len(pending) >= PAGE:
                    flush(pending)
                    pending = []
        except PrawcoreException as e:
            # The message names the HTTP status or connection problem, never a credential.
            raise WebtextError(f"Reddit API error for r/{name}: {type(e).__name__}: {e}",
                               "Check credentials, the subreddit name and the API endpoints") from None
        flush(pending)

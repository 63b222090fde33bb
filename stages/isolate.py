"""Run page extraction in a child process, with a per-page timeout and recycling.

trafilatura can run for minutes on a huge or pathological page (45 MB of nested markup
took over 2 minutes here) and extractors leak memory over many pages. ``Isolated`` runs
``extract_page`` in a one-process pool: a page that exceeds ``timeout_s`` has its
process killed and is reported as ``timeout``; an exception is reported as ``error``;
the process is replaced every ``recycle_after`` pages. Children come from a forkserver
that has trafilatura preloaded, so replacing one is cheap.
"""

from __future__ import annotations

import multiprocessing

_CTX = None


def _context():
    global _CTX
    if _CTX is None:
        _CTX = multiprocessing.get_context("forkserver")
        _CTX.set_forkserver_preload(["trafilatura", "newspaper", "stages.extract"])
    return _CTX


def _safe_extract(html, url: str, settings: tuple):
    from .extract import extract_page

    try:
        return "ok", extract_page(html, url, *settings)
    except Exception as e:  # noqa: BLE001 -- broken HTML is counted, not fatal
        return "error", f"{type(e).__name__}: {e}"[:200]


class Isolated:
    def __init__(self, timeout_s: float, recycle_after: int, settings: tuple = ()):
        """``settings``: extract_page's arguments after the page and its URL."""
        self.timeout_s, self.recycle_after, self.settings = timeout_s, recycle_after, settings
        self.pool = None

    def __enter__(self) -> "Isolated":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __call__(self, html, url: str) -> tuple:
        """("ok", Extraction), ("error", message) or ("timeout", None)."""
        if self.pool is None:
            self.pool = _context().Pool(1, maxtasksperchild=self.recycle_after)
        pending = self.pool.apply_async(_safe_extract, (html, url, self.settings))
        try:
            return pending.get(self.timeout_s)
        except multiprocessing.TimeoutError:
            self.pool.terminate()           # kills the stuck child; a new pool starts on demand
            self.pool.join()
            self.pool = None
            return "timeout", None

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()
            self.pool = None

"""Run page extraction in a child process, with a per-page timeout and recycling.

trafilatura can run for minutes on a huge or pathological page (45 MB of nested markup
took over 2 minutes here) and extractors leak memory over many pages. ``Isolated`` runs
``extract_page`` in one child process that it talks to over a pipe:

- a page that exceeds ``timeout_s`` has its process killed and is reported as
  ``timeout``;
- an exception is reported as ``error``, and so is a child that dies on a page (a crash
  in C code, the kernel's OOM killer);
- the process is replaced every ``recycle_after`` pages;
- a process that cannot start, or dies before it says it is ready, is not a page's fault:
  that raises ``ExtractionProcessError`` (with the exit code and the likely cause) instead
  of turning every page of the shard into an ``error``.

Children come from a forkserver that has trafilatura, newspaper3k and ``stages.pagetext``
(not pyarrow, not the pipeline) preloaded, so replacing one is cheap. A bare pipe costs about 0.2 ms of the parent's CPU per 145 KB page, where a
one-process ``multiprocessing.Pool`` (its task, result and worker-handler threads) cost
0.9 ms and 1.6 ms of wall time.
"""

from __future__ import annotations

import multiprocessing

_CTX = None
START_TIMEOUT_S = 120.0     # a fresh process says it is ready within this (it is forked, not spawned)


class ExtractionProcessError(RuntimeError):
    """The extraction process could not be started."""


def _context():
    global _CTX
    if _CTX is None:
        _CTX = multiprocessing.get_context("forkserver")
        _CTX.set_forkserver_preload(["trafilatura", "newspaper", "webtext.stages.pagetext"])
    return _CTX


def _safe_extract(html, url: str, settings: tuple):
    from .pagetext import extract_page

    try:
        return "ok", extract_page(html, url, *settings)
    except Exception as e:  # noqa: BLE001 -- broken HTML is counted, not fatal
        return "error", f"{type(e).__name__}: {e}"[:200]


def _serve(conn, settings: tuple) -> None:
    """The child: say it is ready, then extract each (html, url) received until the pipe
    closes or None comes."""
    from .pagetext import fast_element_lookup

    fast_element_lookup()
    conn.send("ready")
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        if msg is None:
            return
        conn.send(_safe_extract(*msg, settings))


class Isolated:
    def __init__(self, timeout_s: float, recycle_after: int, settings: tuple = ()):
        """``settings``: extract_page's arguments after the page and its URL."""
        self.timeout_s, self.recycle_after, self.settings = timeout_s, recycle_after, settings
        self.proc = self.conn = None
        self.served = 0

    def __enter__(self) -> "Isolated":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _start(self) -> None:
        ctx = _context()
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=_serve, args=(child, self.settings), daemon=True)
        try:
            proc.start()
        except BaseException:
            conn.close()
            raise
        finally:
            child.close()
        answered = conn.poll(START_TIMEOUT_S)
        try:
            ready = answered and conn.recv() == "ready"
        except (EOFError, OSError):     # it died while starting
            ready = False
        if not ready:
            proc.kill()
            proc.join()
            conn.close()
            if not answered:
                raise ExtractionProcessError(f"the extraction process did not start within {START_TIMEOUT_S:.0f} s")
            raise ExtractionProcessError(
                f"the extraction process exited (code {proc.exitcode}) before it was ready. If webtext runs "
                "from your own script, put the script's entry point under `if __name__ == \"__main__\":`; "
                "multiprocessing runs the main module again in each new process")
        self.proc, self.conn, self.served = proc, conn, 0

    def __call__(self, html, url: str) -> tuple:
        """("ok", Extraction), ("error", message) or ("timeout", None)."""
        if self.proc is None or self.served >= self.recycle_after:
            self.close()
            self._start()
        self.served += 1
        try:
            self.conn.send((html, url))
            if self.conn.poll(self.timeout_s):
                return self.conn.recv()
        except (EOFError, OSError):     # the child died on this page
            self._kill()
            return "error", "the extraction process died"
        self._kill()                    # stuck: a fresh process takes the next page
        return "timeout", None

    def _kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.conn.close()
            self.proc = self.conn = None

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.conn.send(None)
                self.proc.join(self.timeout_s)
            except OSError:
                pass
            self._kill()

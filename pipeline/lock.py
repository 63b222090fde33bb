"""One run at a time per work directory.

``WorkdirLock`` holds an exclusive ``flock`` on ``<workdir>/.lock`` for the whole run and
writes the holder's pid, host, command and start time into it. The kernel drops the
flock when its process dies, however it dies (SIGKILL included), so a crashed run can
never block the next one. The pid left in the file tells the next run that it is taking
over from a dead process, which it says in the log. A second run while the first is
alive exits at once with ``LockedError`` (exit code 75, EX_TEMPFAIL), naming the holder.

flock works on local file systems; on NFS it depends on the server's lock manager.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path

from .errors import WebtextError
from .io import ensure_workdir

LOCKED_EXIT = 75


class LockedError(WebtextError):
    """Another webtext run holds the work directory."""

    exit_code = LOCKED_EXIT


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:                     # exists, owned by someone else
        return True
    return True


class WorkdirLock:
    def __init__(self, workdir: Path, command: str, log=None):
        self.path = Path(workdir) / ".lock"
        self.command = command
        self.log = log or (lambda msg: None)
        self.fd: int | None = None
        self.recovered: dict | None = None      # the dead holder this run took over from

    def inspect(self) -> dict:
        """``{"state": "free" | "held" | "stale", ...holder}`` without taking the lock: held
        when a live process holds the flock; stale when a dead holder left its record."""
        h = self.holder()
        if not h:
            return {"state": "free"}
        fd = os.open(self.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)     # succeeds only when nobody holds it
            fcntl.flock(fd, fcntl.LOCK_UN)
            held = False
        except BlockingIOError:
            held = True
        finally:
            os.close(fd)
        state = "held" if held else ("stale" if not _alive(h.get("pid") or 0) else "stale (pid reused)")
        return {"state": state, **h}

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def acquire(self) -> "WorkdirLock":
        ensure_workdir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            h = self.holder()
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(h["started"])) if "started" in h else "?"
            raise LockedError(
                f"work directory {self.path.parent} is in use by pid {h.get('pid', '?')} on {h.get('host', '?')} "
                f"({h.get('command', '?')}, since {since})",
                "Wait for it to finish; a cron overlap can simply exit") from None
        self.fd = fd
        previous = self.holder()
        if previous.get("pid") and previous.get("pid") != os.getpid():
            self.recovered = previous
            state = "dead" if not _alive(previous["pid"]) or previous.get("host") != socket.gethostname() \
                else "gone (pid reused)"
            self.log(f"recovered a stale lock from pid {previous['pid']} ({previous.get('command', '?')}), "
                     f"which is {state}; finished shards are kept and the run resumes")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "command": self.command,
                                  "started": time.time()}).encode(), 0)
        os.fsync(fd)
        return self

    def release(self) -> None:
        if self.fd is None:
            return
        os.ftruncate(self.fd, 0)                # a clean exit leaves no holder behind
        fcntl.flock(self.fd, fcntl.LOCK_UN)
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> "WorkdirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

"""The SQLite state database (``<workdir>/state.sqlite``).

Holds run history, per-stage results, harvested dumps (the harvest watermark), the live
API's watermarks and the young submissions it re-scores (``stages.reddit_api``) and a
cache of input-file digests used for completion fingerprints. Only the driver process
touches it; workers never do.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from .io import sha256_file

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    command TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    status TEXT NOT NULL DEFAULT 'running'
);
CREATE TABLE IF NOT EXISTS stage_runs (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    stage TEXT NOT NULL,
    started REAL NOT NULL,
    finished REAL,
    tasks_run INTEGER,
    tasks_skipped INTEGER,
    stats TEXT
);
CREATE TABLE IF NOT EXISTS harvest_sources (
    name TEXT PRIMARY KEY,          -- the part file in urls/_parts/
    digest TEXT NOT NULL,           -- sha256 of the dump, or "api:<pull>"
    version INTEGER NOT NULL,       -- harvest version that first brought it in
    harvested REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS api_watermarks (
    key TEXT PRIMARY KEY,           -- "<subreddit>/<listing>"
    newest_utc REAL NOT NULL,       -- newest created_utc seen
    ids TEXT NOT NULL DEFAULT '[]'  -- JSON list: the submission ids seen at newest_utc (the tie)
);
CREATE TABLE IF NOT EXISTS api_pending (
    id TEXT PRIMARY KEY,            -- a submission kept by an API pull, still young enough to re-score
    created_utc REAL NOT NULL,
    score INTEGER NOT NULL,         -- its score at the last observation
    checked REAL NOT NULL           -- when that observation was made (unix seconds)
);
CREATE TABLE IF NOT EXISTS takedowns (
    doc_id TEXT PRIMARY KEY,        -- kind url: url_id of the normalized URL (extract's doc_id); else "kind:url"
    url TEXT NOT NULL,              -- the normalized URL, the canonical host (domain) or the URL prefix
    reason TEXT NOT NULL DEFAULT '',
    requested REAL NOT NULL,        -- when `webtext remove` recorded it
    version INTEGER,                -- the corpus version it first left (set by shard)
    kind TEXT NOT NULL DEFAULT 'url'  -- url | domain | prefix (stages.takedowns)
);
CREATE TABLE IF NOT EXISTS file_digests (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL
);
"""


class State:
    def __init__(self, workdir: Path):
        self.path = Path(workdir) / "state.sqlite"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.materialize = None     # set for a bucket work directory: fetches a placeholder's bytes
        self.db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Bring an older work directory's tables up to _SCHEMA (columns added since)."""
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(takedowns)")}
        if "kind" not in cols:          # before domain and prefix takedowns: every row is a URL
            self.db.execute("ALTER TABLE takedowns ADD COLUMN kind TEXT NOT NULL DEFAULT 'url'")
        cols = {r[1] for r in self.db.execute("PRAGMA table_info(api_watermarks)")}
        if "ids" not in cols:           # before the watermark tie was fixed: no id known at the mark
            self.db.execute("ALTER TABLE api_watermarks ADD COLUMN ids TEXT NOT NULL DEFAULT '[]'")

    def close(self) -> None:
        self.db.close()

    # -- runs ---------------------------------------------------------------
    def start_run(self, command: str) -> int:
        cur = self.db.execute("INSERT INTO runs(command, started) VALUES (?, ?)", (command, time.time()))
        return int(cur.lastrowid)

    def finish_run(self, run_id: int, status: str) -> None:
        self.db.execute("UPDATE runs SET finished=?, status=? WHERE id=?", (time.time(), status, run_id))

    def record_stage(self, run_id: int, stage: str, started: float, ran: int, skipped: int, stats: dict) -> None:
        self.db.execute(
            "INSERT INTO stage_runs VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, stage, started, time.time(), ran, skipped, json.dumps(stats, sort_keys=True)),
        )

    def runs(self) -> list[tuple]:
        return self.db.execute("SELECT id, command, started, finished, status FROM runs ORDER BY id").fetchall()

    # -- harvest sources and watermarks -------------------------------------
    def next_harvest_version(self) -> int:
        (v,) = self.db.execute("SELECT COALESCE(MAX(version), 0) FROM harvest_sources").fetchone()
        return int(v) + 1

    def record_source(self, name: str, digest: str, version: int) -> None:
        """Remember a harvested source; a known name keeps its first version."""
        self.db.execute(
            "INSERT INTO harvest_sources VALUES (?, ?, ?, ?) "
            "ON CONFLICT(name) DO UPDATE SET digest=excluded.digest, harvested=excluded.harvested",
            (name, digest, version, time.time()),
        )

    def source_versions(self) -> dict[str, int]:
        return dict(self.db.execute("SELECT name, version FROM harvest_sources").fetchall())

    def api_watermarks(self) -> dict[str, float]:
        return dict(self.db.execute("SELECT key, newest_utc FROM api_watermarks").fetchall())

    def api_watermark_ids(self) -> dict[str, list[str]]:
        """Per key, the submission ids seen at its watermark second (``new`` skips only these)."""
        return {k: json.loads(ids) for k, ids in self.db.execute("SELECT key, ids FROM api_watermarks")}

    def set_api_watermarks(self, newest: dict[str, float | list]) -> None:
        """Advance each key's watermark: ``newest[key]`` is a created_utc, or ``[utc, ids]``
        with the ids seen at that second. A later second replaces the ids, the same second
        adds to them, an earlier one changes nothing."""
        for key, mark in newest.items():
            utc, ids = (mark, []) if isinstance(mark, (int, float)) else (mark[0], list(mark[1]))
            row = self.db.execute("SELECT newest_utc, ids FROM api_watermarks WHERE key=?", (key,)).fetchone()
            if row is not None and row[0] > utc:
                continue
            if row is not None and row[0] == utc:
                ids = sorted(set(ids) | set(json.loads(row[1])))
            self.db.execute("INSERT OR REPLACE INTO api_watermarks(key, newest_utc, ids) VALUES (?, ?, ?)",
                            (key, utc, json.dumps(sorted(ids))))

    def api_pending(self, since_utc: float) -> dict[str, int]:
        """Submissions to re-score, created at or after ``since_utc``: id -> last score. Older
        ones have settled and leave the table."""
        self.db.execute("DELETE FROM api_pending WHERE created_utc < ?", (since_utc,))
        return dict(self.db.execute("SELECT id, score FROM api_pending").fetchall())

    def set_api_pending(self, asked: list[str], seen: list[tuple[str, float, int]], checked: float) -> None:
        """After a pull: the ids it re-scored (``asked``) leave the table, and what it observed
        (``seen``: id, created_utc, score) comes in. An asked id not seen again has vanished."""
        with self.db:
            self.db.execute("BEGIN")
            self.db.executemany("DELETE FROM api_pending WHERE id=?", [(i,) for i in asked])
            self.db.executemany("INSERT OR REPLACE INTO api_pending VALUES (?, ?, ?, ?)",
                                [(i, c, s, checked) for i, c, s in seen])

    # -- takedowns ----------------------------------------------------------
    def add_takedown(self, doc_id: str, url: str, reason: str = "", kind: str = "url") -> bool:
        """Record a takedown (``stages.takedowns.Takedown``: ``doc_id`` is its key, ``url`` its
        value); False when it is known already. A URL whose other-scheme variant is recorded
        is known: http and https count as one."""
        if kind == "url":
            from webtext.stages.urls import url_id

            bare = url.split("://", 1)[1]
            ids = [url_id(f"{s}://{bare}") for s in ("http", "https")]
            if self.db.execute("SELECT 1 FROM takedowns WHERE doc_id IN (?, ?)", ids).fetchone():
                return False
        cur = self.db.execute("INSERT OR IGNORE INTO takedowns(doc_id, url, reason, requested, kind) "
                              "VALUES (?, ?, ?, ?, ?)", (doc_id, url, reason, time.time(), kind))
        return cur.rowcount == 1

    def takedowns(self) -> list[dict]:
        """Every takedown, oldest first: doc_id (key), url (value), reason, requested, version, kind."""
        keys = ("doc_id", "url", "reason", "requested", "version", "kind")
        rows = self.db.execute(f"SELECT {', '.join(keys)} FROM takedowns ORDER BY requested")
        return [dict(zip(keys, r)) for r in rows]

    def mark_takedowns(self, doc_ids: list[str], version: int) -> None:
        self.db.executemany("UPDATE takedowns SET version=? WHERE doc_id=? AND version IS NULL",
                            [(version, d) for d in doc_ids])

    # -- digests ------------------------------------------------------------
    def digest(self, path: Path) -> str:
        """sha256 of a file, cached by (path, size, mtime)."""
        path = Path(path).resolve()
        st = path.stat()
        row = self.db.execute(
            "SELECT sha256 FROM file_digests WHERE path=? AND size=? AND mtime_ns=?",
            (str(path), st.st_size, st.st_mtime_ns),
        ).fetchone()
        if row:
            return row[0]
        if self.materialize is not None:
            self.materialize(path)
        digest = sha256_file(path)
        self.remember_digest(path, digest)
        return digest

    def remember_digest(self, path: Path, sha256: str) -> None:
        path = Path(path).resolve()
        st = path.stat()
        self.db.execute(
            "INSERT OR REPLACE INTO file_digests VALUES (?, ?, ?, ?)",
            (str(path), st.st_size, st.st_mtime_ns, sha256),
        )

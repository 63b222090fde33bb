"""``webtext status``: one screen about a work directory, read-only.

Stages done (from each stage's ``_meta/stats.json``: records out, tasks, when), the corpus
versions in ``tokens/manifest.json``, the last runs from the state database, the last
refresh diff, the lock (free, held by a live process, or stale), and the training runs.
Works on an empty, a partial and a complete work directory; it never creates one.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from . import layout
from .funnel import STAGE_FOLDERS
from .lock import WorkdirLock


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts)) if ts else "-"


def collect_status(workdir: Path) -> dict:
    workdir = Path(workdir)
    out: dict = {"workdir": str(workdir), "exists": workdir.is_dir(), "stages": [], "versions": [],
                 "runs": [], "lock": {"state": "free"}, "last_refresh": None, "models": []}
    if not workdir.is_dir():
        return out
    layout.migrate(workdir)         # a work directory from before version 5: sidecars into _meta/
    for stage, folder, _ in STAGE_FOLDERS:
        p = layout.stats_path(workdir / folder)
        if p.exists():
            s = json.loads(p.read_text())
            out["stages"].append({"stage": stage, "done": True, "out": s.get("out", 0),
                                  "tasks": s.get("tasks_run", 0) + s.get("tasks_skipped", 0), "when": p.stat().st_mtime})
        else:
            out["stages"].append({"stage": stage, "done": False})
    manifest = workdir / "tokens" / "manifest.json"
    if manifest.exists():
        m = json.loads(manifest.read_text())
        files = m.get("shard_files") or {s["file"]: s for s in m.get("shards", [])}
        for v in m.get("versions") or [{"version": 1, "shards": [s["file"] for s in m.get("shards", [])]}]:
            entries = [files[f] for f in v["shards"] if f in files]
            out["versions"].append({"version": v["version"], "shards": len(entries),
                                    "docs": sum(e["docs"] for e in entries),
                                    "tokens": sum(e["tokens"] for e in entries),
                                    "added_docs": v.get("added_docs"), "removed_docs": v.get("removed_docs", 0),
                                    "revised_docs": v.get("revised_docs", 0)})
    db = workdir / "state.sqlite"
    if db.exists():
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = con.execute("SELECT id, command, started, finished, status FROM runs ORDER BY id DESC LIMIT 5")
            out["runs"] = [dict(zip(("id", "command", "started", "finished", "status"), r)) for r in rows]
        except sqlite3.Error:
            pass
        finally:
            con.close()
    out["lock"] = WorkdirLock(workdir, "status").inspect()
    latest = workdir / "refresh" / "latest.json"
    if latest.exists():
        out["last_refresh"] = json.loads(latest.read_text())
    for p in sorted((workdir / "runs").glob("*/summary.json")):
        out["models"].append({"run": p.parent.name, **json.loads(p.read_text())})
    return out


def render_status(st: dict, console: Console) -> None:
    if not st["exists"]:
        console.print(f"{st['workdir']}: no such work directory yet (run `webtext demo`, `run` or `refresh`)")
        return
    t = Table(title=f"webtext status: {st['workdir']}")
    for col in ("stage", "done", "records out", "shards", "updated"):
        t.add_column(col, justify="right" if col in ("records out", "shards") else "left")
    for s in st["stages"]:
        t.add_row(s["stage"], "yes" if s["done"] else "no", f"{s['out']:,}" if s["done"] else "-",
                  str(s.get("tasks", "-")), _when(s.get("when")))
    console.print(t)
    if st.get("config"):
        console.print(f"config: {st['config']} (valid)")
    if st["versions"]:
        last = st["versions"][-1]
        console.print(f"corpus: version {last['version']} of {len(st['versions'])}, {last['docs']:,} documents, "
                      f"{last['tokens']:,} tokens in {last['shards']} shard(s)")
    else:
        console.print("corpus: no token shards yet")
    if st["runs"]:
        r = st["runs"][0]
        console.print(f"last run: #{r['id']} {r['command']} ({r['status']}), started {_when(r['started'])}")
    if st["last_refresh"]:
        d = st["last_refresh"]
        console.print(f"last refresh: {d.get('started_utc', '?')}, "
                      f"{'corpus updated' if d['updated'] else 'nothing new'}, +{d['documents_added']:,} documents, "
                      f"+{d['tokens_added']:,} tokens")
    lk = st["lock"]
    if lk["state"] == "free":
        console.print("lock: free")
    else:
        console.print(f"lock: {lk['state']} (pid {lk.get('pid', '?')}, {lk.get('command', '?')}, "
                      f"since {_when(lk.get('started'))})")
    for m in st["models"]:
        console.print(f"model '{m['run']}': {m.get('model')}, {m.get('steps')} steps, "
                      f"val loss {m.get('final_val_loss')}")

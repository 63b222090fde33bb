"""``webtext gc --keep N``: remove all but the newest N corpus versions of ``tokens/``.

In: ``tokens/manifest.json`` (the versions and their folders) and ``runs/*/`` (the corpus
version each training run was trained on: ``corpus.json``, else its checkpoint). Out:
the removed versions' folders ``tokens/vNNNN/`` are deleted (a shard a kept version
shares is a hard link, so its bytes stay), their entries leave the manifest (listed
under ``removed_versions``), and the dataset card and folder manifests are rewritten.
The latest version is never removed; a version a run is pinned to is kept unless
``force``. Bytes freed count only the inodes whose last link went.

    webtext gc --keep 2 [--force] [--json]
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import ConfigError, MissingInputError
from .io import read_json, write_json


@dataclass
class GcResult:
    removed: list[int] = field(default_factory=list)       # versions whose folders went
    kept: list[int] = field(default_factory=list)
    pinned: dict[int, list[str]] = field(default_factory=dict)   # kept only because runs use them
    files: int = 0
    bytes_freed: int = 0

    def to_dict(self) -> dict:
        return {**asdict(self), "pinned": {str(k): v for k, v in self.pinned.items()}}


def run_versions(runs_dir: Path) -> dict[str, int]:
    """Each training run under ``runs_dir`` -> the corpus version it was trained on
    (``corpus.json``; for a run from before it, its checkpoint's ``corpus_version``)."""
    out = {}
    for run in sorted(p for p in Path(runs_dir).glob("*") if p.is_dir()) if Path(runs_dir).is_dir() else []:
        if (run / "corpus.json").is_file():
            out[run.name] = int(read_json(run / "corpus.json")["corpus_version"])
        elif (run / "ckpt.pt").is_file():
            import torch

            ck = torch.load(run / "ckpt.pt", map_location="cpu", weights_only=False, mmap=True)
            out[run.name] = int(ck.get("corpus_version", 1))
    return out


def _folder_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()]


def gc(workdir: Path, keep: int, force: bool = False, symlink: bool = True) -> GcResult:
    """Remove every version but the newest ``keep`` (and those runs are pinned to, unless
    ``force``). Call it under the work directory's lock."""
    from webtext.stages.tokenlayout import is_flat, refresh, versions_of

    if not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"--keep must be at least 1 (got {keep})", "The latest version is always kept: use --keep 1")
    tokens = Path(workdir) / "tokens"
    mpath = tokens / "manifest.json"
    if not mpath.exists():
        raise MissingInputError(f"no corpus in {workdir} ({mpath} is missing)", "Run `webtext shard` first")
    manifest = read_json(mpath)
    if is_flat(manifest):
        raise ConfigError(f"{tokens} is in the old flat layout", "Run `webtext shard` once to move it into version folders")
    versions = versions_of(manifest)
    pins: dict[int, list[str]] = {}
    for run, v in run_versions(Path(workdir) / "runs").items():
        pins.setdefault(v, []).append(run)
    res = GcResult()
    drop = []
    for v in versions[:-keep]:
        if v["version"] in pins and not force:
            res.pinned[v["version"]] = pins[v["version"]]
        else:
            drop.append(v)
    if not drop:
        res.kept = [v["version"] for v in versions]
        return res
    gone = {f for v in drop for f in v["shards"]}
    left = [v for v in versions if v not in drop]
    files = {f: e for f, e in manifest["shard_files"].items() if f not in gone}
    removed_log = manifest.get("removed_versions", []) + [
        {"version": v["version"], "folder": v["folder"], "removed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        for v in drop]
    # the manifest first (a crash then leaves only unlisted folders, which the next gc or shard ignores)
    write_json(mpath, {**manifest, "versions": left, "shard_files": files, "removed_versions": removed_log})
    for v in drop:
        folder = tokens / v["folder"]
        if not folder.is_dir():
            continue
        for p in _folder_files(folder):
            st = p.stat()
            res.files += 1
            if st.st_nlink == 1:            # the last name of these bytes: they are freed
                res.bytes_freed += st.st_size
        shutil.rmtree(folder)
        res.removed.append(v["version"])
    refresh(tokens, read_json(mpath), symlink=symlink)
    res.kept = [v["version"] for v in left]
    return res


def render(res: GcResult) -> str:
    lines = []
    if res.removed:
        lines.append(f"removed corpus version(s) {', '.join(map(str, res.removed))}: {res.files} file(s), "
                     f"{res.bytes_freed / 2**20:.2f} MiB freed")
    else:
        lines.append("nothing to remove")
    for v, runs in sorted(res.pinned.items()):
        lines.append(f"kept version {v}: run(s) {', '.join(runs)} trained on it (--force removes it)")
    lines.append(f"versions now: {', '.join(map(str, res.kept))}")
    return "\n".join(lines)


def as_json(res: GcResult) -> str:
    return json.dumps(res.to_dict())


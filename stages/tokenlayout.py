"""The on-disk layout of ``tokens/``: one folder per corpus version, a ``latest`` pointer
and a dataset card.

    tokens/
      manifest.json          the index the trainer reads: every version, every file
      README.md              dataset card (YAML ``configs``: default = the latest version)
      LATEST                 one line naming the current version's folder, e.g. ``v0002``
      latest -> v0002        relative symlink (where the file system has symlinks)
      v0001/                 exactly version 1's shards, and its own manifest.json
        train-00000.arrow  val-00000.arrow  manifest.json
      v0002/                 exactly version 2's shards: a shard reused unchanged from v0001
        train-00000.arrow    is a hard link to it (a copy where hard links fail, and in a
        train-00001.arrow    bucket work directory), its new shards follow
        val-00000.arrow ...  nanogpt/{train,val}.bin (``shard --export nanogpt``)

Paths in ``manifest.json`` (``shards[].file``, ``shard_files`` keys, ``versions[].shards``)
are relative to ``tokens/`` (``v0002/train-00001.arrow``); each version entry names its
``folder``. A folder's ``manifest.json`` lists its files relative to the folder, so a
copied folder describes itself. The functions here are the layout's API: shard, gc and
``remove --purge`` call them.

A work directory from before folders (every version's shards side by side in
``tokens/``, named ``train-v0002-00000.arrow``) is migrated by ``migrate_flat``: each
version's files are hard-linked into its folder, then the flat names are removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from webtext.pipeline.errors import ConfigError
from webtext.pipeline.io import atomic_path, read_json, write_json

LAYOUT_SCHEMA = "5"          # tokens/manifest.json: "4" and before had every shard in tokens/ itself
POINTER = "LATEST"
LINK = "latest"
NANOGPT = "nanogpt"
_FOLDER = re.compile(r"^v(\d{4,})$")


def folder_name(version: int) -> str:
    return f"v{version:04d}"


def version_dir(tokens: Path, version: int) -> Path:
    return Path(tokens) / folder_name(version)


def read_manifest_file(tokens: Path) -> dict | None:
    path = Path(tokens) / "manifest.json"
    return read_json(path) if path.exists() else None


def versions_of(manifest: dict | None) -> list[dict]:
    """The manifest's version entries, oldest first; a manifest from before versions is version 1."""
    if not manifest:
        return []
    if "versions" in manifest:
        return manifest["versions"]
    return [{"version": 1, "source": manifest.get("source"), "shards": [x["file"] for x in manifest["shards"]]}]


def list_versions(tokens: Path) -> list[int]:
    """The corpus versions ``tokens/manifest.json`` holds (those gc has not removed), oldest first."""
    return [v["version"] for v in versions_of(read_manifest_file(tokens))]


def is_flat(manifest: dict | None) -> bool:
    """A manifest of the old layout (every version's shards side by side in ``tokens/``)."""
    return bool(manifest) and any("folder" not in v for v in versions_of(manifest))


def latest_folder(tokens: Path) -> Path | None:
    """The current version's folder: ``LATEST``'s, else the ``latest`` symlink's, else None."""
    tokens = Path(tokens)
    ptr = tokens / POINTER
    if ptr.is_file():
        name = ptr.read_text().strip()
        if _FOLDER.match(name) and (tokens / name).is_dir():
            return tokens / name
    link = tokens / LINK
    return link.resolve() if link.is_dir() else None


def link_or_copy(src: Path, dst: Path, copy: bool = False) -> str:
    """``dst`` becomes the same bytes as ``src``: a hard link, or a copy with ``copy`` (a
    bucket work directory: a shared inode would tie two objects' times together) or where
    the file system has no hard links. Returns "link" or "copy"."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() and os.path.samefile(src, dst):
        return "link"
    tmp = dst.with_name(f"{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    how = "copy"
    if not copy:
        try:
            os.link(src, tmp)
            how = "link"
        except OSError:             # EXDEV, EPERM, a file system without hard links
            pass
    if how == "copy":
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)
    return how


def set_latest(tokens: Path, folder: str, symlink: bool = True) -> None:
    """Point ``tokens/LATEST`` (always) and ``tokens/latest`` (a relative symlink, with
    ``symlink``) at ``folder``; each is replaced atomically (temporary name, then
    ``os.replace``), so a reader sees the old version or the new one."""
    tokens = Path(tokens)
    with atomic_path(tokens / POINTER) as tmp:
        tmp.write_text(folder + "\n")
    link = tokens / LINK
    if not symlink:
        if link.is_symlink():
            link.unlink()
        return
    tmp = tokens / f".{LINK}.tmp-{os.getpid()}"
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(folder, tmp, target_is_directory=True)
    except OSError:                 # no symlinks here: LATEST alone says it
        return
    if link.is_dir() and not link.is_symlink():     # a copy that followed the link (cp -r, copytree)
        shutil.rmtree(link)
    elif link.exists() and not link.is_symlink():
        link.unlink()
    os.replace(tmp, link)


def version_manifest(manifest: dict, version: int) -> dict:
    """A version folder's own manifest: its files relative to the folder, with their counts
    and sha256, the tokenizer and the source."""
    entry = next(v for v in versions_of(manifest) if v["version"] == version)
    folder = entry["folder"]
    files = manifest["shard_files"]
    shards = [{**{k: files[f][k] for k in ("split", "docs", "tokens", "sha256")},
               "file": Path(f).relative_to(folder).as_posix()} for f in entry["shards"]]
    keep = ("tokenizer", "backend", "vocab_size", "eot", "eot_convention", "dtype", "vocab_sha256", "shuffle_seed")
    return {"schema_version": LAYOUT_SCHEMA, "version": version, "folder": folder,
            **{k: manifest.get(k) for k in keep},
            "source": entry.get("source"), "shards": shards,
            "totals": {s: {"docs": sum(x["docs"] for x in shards if x["split"] == s),
                           "tokens": sum(x["tokens"] for x in shards if x["split"] == s)} for s in ("train", "val")},
            **{k: entry[k] for k in ("added_docs", "added_tokens", "removed_docs", "revised_docs") if k in entry}}


def _write_if_changed(path: Path, obj: dict) -> None:
    if not path.exists() or read_json(path) != json.loads(json.dumps(obj)):
        write_json(path, obj)


def refresh(tokens: Path, manifest: dict | None = None, symlink: bool = True) -> None:
    """After ``manifest.json`` changed (a new version, gc, a purge): every kept version's
    folder manifest, the dataset card, then the ``latest`` pointers, in that order, so
    the pointers move only once the version is complete."""
    from .tokencard import write_card

    tokens = Path(tokens)
    manifest = manifest or read_manifest_file(tokens)
    if not manifest or is_flat(manifest):
        return
    for v in versions_of(manifest):
        _write_if_changed(tokens / v["folder"] / "manifest.json", version_manifest(manifest, v["version"]))
    write_card(tokens, manifest)
    set_latest(tokens, versions_of(manifest)[-1]["folder"], symlink)


def migrate_flat(tokens: Path, copy: bool = False, log=print) -> bool:
    """Move a flat-layout ``tokens/`` into version folders: each version's shards go to
    ``vNNNN/{split}-NNNNN.arrow`` (a shard several versions share is hard-linked into
    each), the manifest names the new paths, a nanoGPT export moves into the latest
    version's folder, and the flat files are removed. Returns whether it migrated.
    Safe to rerun after a crash: links are redone and the manifest is written before any
    flat file is removed."""
    tokens = Path(tokens)
    manifest = read_manifest_file(tokens)
    if not is_flat(manifest):
        return False
    files = dict(manifest.get("shard_files") or {x["file"]: x for x in manifest["shards"]})
    versions, new_files, first_rel = [], {}, {}
    for v in versions_of(manifest):
        folder = folder_name(v["version"])
        shards, count = [], {"train": 0, "val": 0}
        for f in v["shards"]:
            entry = files[f]
            rel = f"{folder}/{entry['split']}-{count[entry['split']]:05d}.arrow"
            count[entry["split"]] += 1
            if (tokens / f).exists():
                link_or_copy(tokens / f, tokens / rel, copy)
            elif not (tokens / rel).exists():
                raise ConfigError(f"cannot migrate {tokens} to version folders: {tokens / f} is missing",
                                  "Move tokens/ away and rerun `webtext shard` to build it again")
            first = first_rel.setdefault(f, rel)       # where these bytes sit in the oldest version
            new_files[rel] = {**entry, "file": rel, "version": v["version"], **({"origin": first} if first != rel else {})}
            shards.append(rel)
        versions.append({**v, "folder": folder, "shards": shards})
    latest = versions[-1]
    migrated = {**manifest, "schema_version": LAYOUT_SCHEMA, "versions": versions, "shard_files": new_files,
                "shards": [new_files[f] for f in latest["shards"]]}
    write_json(tokens / "manifest.json", migrated)
    old_export = tokens / NANOGPT
    if old_export.is_dir():
        dest = tokens / latest["folder"] / NANOGPT
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(old_export, dest)
    refresh(tokens, migrated, symlink=not copy)
    for f in sorted(first_rel):
        if "/" not in f:
            (tokens / f).unlink(missing_ok=True)
    log(f"  tokens: migrated {len(versions)} version(s) to folders ({', '.join(v['folder'] for v in versions)})")
    return True

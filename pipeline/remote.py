"""A work directory on object storage: ``--workdir s3://bucket/prefix`` (or ``gs://``).

The bucket is the work directory of record; every stage still reads and writes plain
files, in a local *scratch* directory (``run.scratch``, default ``<tmp>/webtext-<hash of
the URL>``, the same path on every node) that can be wiped at any time. The rules:

- **Small files are mirrored; bulk data is on demand.** Files matching ``LAZY_DEFAULT``
  (WARC segments, docs, dedup/decontaminate data, clean and token shards) are
  *placeholders* in the scratch between uses: sparse files with the object's size and
  time and no data blocks (``is_placeholder``). Listings and size checks see the object;
  any reader fails loudly on the zeros; ``put`` refuses to upload one. ``stage_in``
  downloads the real bytes; ``evict`` turns real copies back into placeholders once the
  bucket holds them. ``run.scratch_data = "mirror"`` keeps everything (no lazy files).
- **Pull** (when a run starts, under the lock): the scratch is made to match the bucket.
  Changed small objects are downloaded (to a temporary name, then renamed), changed bulk
  objects become placeholders, and local files the bucket does not hold are deleted.
- **Task outputs** are uploaded by the worker that wrote them, as soon as the task ends
  (bulk ones then become placeholders); the driver then uploads the task's completion
  record (``_meta/done/...json``). A store has no rename, so this order is the atomic commit:
  an object without its marker is an unfinished task, which a rerun redoes.
- **Publish** (after every stage and at the end of the run): every other file the driver
  changed goes up, completion records and stage summaries (``_meta/stats.json``,
  ``manifest.json``, ``state.sqlite``) last, and objects whose local file was deleted are
  deleted. The state database is uploaded through SQLite's backup API, so the object is
  always a consistent database; only the driver touches it.
- After an upload, the local file's mtime is set to the object's, so "changed" is just
  (size, mtime) differing between the two sides; no ledger is needed. Objects are
  written and read with ``compression=None``: pyarrow would otherwise gzip a ``.gz``
  file again on the way up.

Credentials come from the environment (``AWS_ACCESS_KEY_ID``...,
``GOOGLE_APPLICATION_CREDENTIALS``) or the URL's options (``?endpoint_override=host:port&
scheme=http``; for gs:// also ``anonymous=true`` and ``project_id``); URLs are shown
with their query and user part removed, and error texts scrubbed of them, so no
credential reaches a log.
"""

from __future__ import annotations

import concurrent.futures as cf
import fnmatch
import hashlib
import os
import re
import shutil
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import layout
from .errors import ConfigError, WebtextError

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/")
SCHEMES = ("s3", "gs", "gcs")
_LOCAL_ONLY = (".lock", ".state-upload.sqlite")       # never uploaded, never deleted by a pull
_SQLITE_SIDE = ("state.sqlite-wal", "state.sqlite-shm", "state.sqlite-journal")
_THREADS = 8


def is_url(spec) -> bool:
    return bool(_URL.match(str(spec)))


def redact(url: str) -> str:
    """``s3://key:secret@bucket/p?secret_key=...`` -> ``s3://bucket/p``."""
    scheme, _, rest = str(url).partition("://")
    rest = rest.split("?", 1)[0].rsplit("@", 1)[-1]
    return f"{scheme}://{rest}"


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's user part and query values (where credentials go) masked."""
    _, _, rest = str(url).partition("://")
    base, _, query = rest.partition("?")
    secrets = [base.rsplit("@", 1)[0]] if "@" in base else []
    secrets += [v for kv in query.split("&") for v in [kv.partition("=")[2]] if len(v) >= 4]
    for s in sorted(secrets, key=len, reverse=True):
        text = text.replace(s, "***")
    return text


def default_scratch(url: str) -> Path:
    digest = hashlib.sha256(redact(url).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"webtext-{digest}"


def scratch_path(url: str, scratch: str = "") -> Path:
    """The scratch of a bucket work directory: ``run.scratch`` if set, else the default."""
    return Path(scratch).expanduser().resolve() if scratch else default_scratch(str(url))


@dataclass(frozen=True)
class StoreSpec:
    """What a worker needs to reach the store (it pickles; the file system does not)."""

    url: str
    scratch: str
    lazy: tuple[str, ...] = ()      # fnmatch patterns (relative paths) of bulk files kept as placeholders


# Bulk data that only tasks read (or the driver reads through ``Context.materialize``): in
# the scratch these are placeholders between uses. Everything else is mirrored for real.
_M = layout.META
LAZY_DEFAULT = (
    "warc/warc-*.warc.gz", f"urls/{_M}/{layout.PARTS}/*", "docs/docs-*.parquet",
    "dedup/dedup-*.parquet", *(f"dedup/{_M}/{name}/*" for name in (
        layout.SIGNATURES, layout.BANDS, layout.PAIRS, layout.VERIFIED, layout.COMPONENTS, layout.RESOLVED)),
    "clean/clean-*.parquet", f"clean/{_M}/{layout.SCAN}/*.parquet", f"clean/{_M}/{layout.FILTERS}/*",
    f"tokens/{_M}/{layout.PARTS}/*", "tokens/train-*", "tokens/val-*", "tokens/v*/train-*", "tokens/v*/val-*",
)


def is_placeholder(path: Path) -> bool:
    """A placeholder is a sparse file of the object's size and time with no data blocks:
    existence, size and time checks and directory listings see the object, and any
    reader fails loudly on it (all zeros: no Parquet, Arrow, gzip, npy or JSON magic)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return st.st_size > 0 and st.st_blocks == 0


def sparse_files_work(folder: Path) -> bool:
    """Does ``folder``'s file system keep a truncated-up file free of data blocks (what a
    placeholder needs)? Not every one does (some network and FUSE file systems)."""
    probe = Path(folder) / f".sparse-probe.tmp-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.truncate(1 << 20)
        return is_placeholder(probe)
    finally:
        probe.unlink(missing_ok=True)


def _local_only(rel: str) -> bool:
    """Files never uploaded nor deleted by a pull: temporaries, the lock, SQLite's side files,
    and ``logs/`` (a cron job's log is opened by the shell before webtext starts)."""
    name = rel.rsplit("/", 1)[-1]
    return ".tmp-" in name or name in _SQLITE_SIDE or rel in _LOCAL_ONLY or rel.startswith("logs/")


def _commit_rank(rel: str) -> int:
    """Upload order: data first, then completion records, then summaries and the state."""
    if rel == "state.sqlite":
        return 3
    if rel.endswith((f"/{layout.META}/{layout.STATS}", "manifest.json")) or rel == "tokens/LATEST":
        return 2                    # the pointer after its version
    return 1 if f"/{layout.META}/{layout.DONE}/" in f"/{rel}" else 0


_GCS_OPTIONS = {"scheme": str, "endpoint_override": str, "project_id": str, "default_bucket_location": str,
                "anonymous": lambda v: v.lower() in ("1", "true", "yes")}


def gcs_filesystem(url: str):
    """pyarrow's GcsFileSystem from ``gs://bucket/prefix?option=value``: pyarrow's own URI
    parser lacks ``anonymous`` (public buckets, emulators), so the options are read here."""
    import urllib.parse

    import pyarrow.fs as pafs

    u = urllib.parse.urlsplit(url)
    opts = {}
    for key, value in urllib.parse.parse_qsl(u.query, keep_blank_values=True):
        if key not in _GCS_OPTIONS:
            raise ValueError(f"Unexpected query parameter in GCS URI: '{key}' "
                             f"(known: {', '.join(sorted(_GCS_OPTIONS))})")
        opts[key] = _GCS_OPTIONS[key](value)
    return pafs.GcsFileSystem(**opts), f"{u.netloc}{u.path}".rstrip("/")


class ObjectStore:
    def __init__(self, spec: StoreSpec):
        import pyarrow.fs as pafs

        scheme = _URL.match(spec.url).group(1).lower()
        if scheme not in SCHEMES:
            raise ConfigError(f"work directory {redact(spec.url)}: scheme '{scheme}' is not supported",
                              "Use a local path, s3://bucket/prefix or gs://bucket/prefix")
        try:
            fs, root = gcs_filesystem(spec.url) if scheme in ("gs", "gcs") else pafs.FileSystem.from_uri(spec.url)
        except Exception as e:      # pyarrow: ArrowInvalid / OSError, message names the option
            raise ConfigError(f"cannot open work directory {redact(spec.url)}: {scrub(str(e), spec.url)}") from None
        self.spec = spec
        self.fs = fs
        self.root = root.rstrip("/")
        self.scratch = Path(spec.scratch)
        self.url = redact(spec.url)
        self._pafs = pafs

    def is_lazy(self, rel: str) -> bool:
        return any(fnmatch.fnmatchcase(rel, pat) for pat in self.spec.lazy)

    def placeholder(self, local: Path, size: int, mtime_ns: int) -> None:
        """Replace ``local`` (atomically) by a placeholder of ``size`` bytes and time ``mtime_ns``."""
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(f"{local.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            f.truncate(size)
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
        os.replace(tmp, local)

    # -- naming --------------------------------------------------------------
    def rel(self, local: Path) -> str:
        return Path(local).resolve().relative_to(self.scratch.resolve()).as_posix()

    def key(self, rel: str) -> str:
        return f"{self.root}/{rel}"

    def holds(self, local: Path) -> bool:
        """Is ``local`` inside the scratch mirror (so it has an object)?"""
        try:
            self.rel(local)
            return True
        except ValueError:
            return False

    # -- single files ---------------------------------------------------------
    def _io(self, what: str, rel: str, fn: Callable):
        try:
            return fn()
        except (OSError, RuntimeError) as e:
            raise WebtextError(f"object storage: cannot {what} {self.url}/{rel}: {scrub(str(e), self.spec.url)}",
                               "Check the credentials, the endpoint and the bucket; finished shards are "
                               "kept, so a rerun resumes") from None

    def put(self, local: Path, rel: str | None = None, source: Path | None = None) -> None:
        """Upload ``source or local`` as the object for ``local``; then give ``local`` the object's mtime."""
        local = Path(local)
        rel = rel or self.rel(local)
        src = Path(source or local)

        if is_placeholder(src):
            raise WebtextError(f"refusing to upload {rel}: the local file is a placeholder, not its data")

        def go():
            with open(src, "rb") as f, self.fs.open_output_stream(self.key(rel), compression=None) as out:
                shutil.copyfileobj(f, out, 8 << 20)
            info = self.fs.get_file_info(self.key(rel))
            os.utime(local, ns=(info.mtime_ns, info.mtime_ns))
        self._io("upload", rel, go)

    def get(self, local: Path, rel: str | None = None, mtime_ns: int | None = None) -> None:
        """Download the object for ``local`` (atomically) and give the file the object's mtime."""
        local = Path(local)
        rel = rel or self.rel(local)

        def go():
            local.parent.mkdir(parents=True, exist_ok=True)
            tmp = local.with_name(f"{local.name}.tmp-{os.getpid()}")
            try:
                with self.fs.open_input_stream(self.key(rel), compression=None) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, 8 << 20)
                t = mtime_ns if mtime_ns is not None else self.fs.get_file_info(self.key(rel)).mtime_ns
                os.utime(tmp, ns=(t, t))
                os.replace(tmp, local)
            finally:
                tmp.unlink(missing_ok=True)
        self._io("download", rel, go)

    # -- whole mirror ----------------------------------------------------------
    def listing(self) -> dict[str, tuple[int, int]]:
        """Every object under the prefix: relative path -> (size, mtime_ns)."""
        sel = self._pafs.FileSelector(self.root, recursive=True, allow_not_found=True)
        infos = self._io("list", "", lambda: self.fs.get_file_info(sel))
        n = len(self.root) + 1
        return {i.path[n:]: (i.size, i.mtime_ns) for i in infos
                if i.type == self._pafs.FileType.File and not _local_only(i.path[n:])}

    def _local(self) -> dict[str, tuple[int, int]]:
        out = {}
        if self.scratch.exists():
            for p in self.scratch.rglob("*"):
                if p.is_file():
                    rel = p.relative_to(self.scratch).as_posix()
                    if not _local_only(rel):
                        st = p.stat()
                        out[rel] = (st.st_size, st.st_mtime_ns)
        return out

    def pull(self) -> dict:
        """Make the scratch an exact mirror of the bucket; returns counts."""
        self.scratch.mkdir(parents=True, exist_ok=True)
        remote, local = self.listing(), self._local()
        todo = [(rel, stamp) for rel, stamp in sorted(remote.items()) if local.get(rel) != stamp]
        gone = sorted(set(local) - set(remote))
        if "state.sqlite" in gone or any(rel == "state.sqlite" for rel, _ in todo):
            for side in _SQLITE_SIDE:       # a stale WAL would be replayed into the new database
                (self.scratch / side).unlink(missing_ok=True)
        lazy = [(rel, stamp) for rel, stamp in todo if self.is_lazy(rel)]
        todo = [(rel, stamp) for rel, stamp in todo if not self.is_lazy(rel)]
        for rel, (size, mtime) in lazy:
            self.placeholder(self.scratch / rel, size, mtime)
        self.parallel(lambda item: self.get(self.scratch / item[0], item[0], item[1][1]), todo)
        for rel in gone:
            (self.scratch / rel).unlink(missing_ok=True)
        return {"downloaded": len(todo), "bytes": sum(s for _, (s, _) in todo), "deleted": len(gone),
                "objects": len(remote), "placeholders": len(lazy)}

    def publish(self, evict: bool = True) -> dict:
        """Upload every changed local file (commit markers last); delete objects whose file is gone."""
        remote, local = self.listing(), self._local()
        stale = [rel for rel in local if rel not in remote and is_placeholder(self.scratch / rel)]
        for rel in stale:           # its object is gone (deleted elsewhere): so is the placeholder
            (self.scratch / rel).unlink(missing_ok=True)
            del local[rel]
        changed = [rel for rel, stamp in local.items() if remote.get(rel) != stamp]
        for rank in range(4):
            batch = sorted(r for r in changed if _commit_rank(r) == rank)
            if rank == 3 and batch:
                self._put_state()
            else:
                self.parallel(lambda rel: self.put(self.scratch / rel, rel), batch)
        gone = sorted(set(remote) - set(local))
        if gone:
            self._io("delete", gone[0], lambda: self.parallel(lambda r: self.fs.delete_file(self.key(r)), gone))
        evicted = 0
        if evict:    # the bucket now: what was there, less what was deleted, plus what went up
            now = {rel: stamp for rel, stamp in remote.items() if rel in local}
            for rel in changed:
                st = (self.scratch / rel).stat()         # put gave it the object's time
                now[rel] = (st.st_size, st.st_mtime_ns)
            evicted = self.evict(now)
        return {"uploaded": len(changed), "bytes": sum(local[r][0] for r in changed), "deleted": len(gone),
                "evicted": evicted}

    def evict(self, remote: dict[str, tuple[int, int]] | None = None) -> int:
        """Turn every real local copy of a lazy object back into a placeholder, once the
        bucket holds it (same size and time; ``remote``: the bucket's listing, if known).
        Call it only while no task runs: a task may be about to open an input. Returns how many."""
        if not self.spec.lazy:
            return 0
        remote = self.listing() if remote is None else remote
        n = 0
        for rel, stamp in self._local().items():
            if self.is_lazy(rel) and remote.get(rel) == stamp and not is_placeholder(self.scratch / rel):
                self.placeholder(self.scratch / rel, *stamp)
                n += 1
        return n

    def _put_state(self) -> None:
        """state.sqlite through the backup API: the object is a consistent database even
        while the driver's connection is open in WAL mode."""
        db = self.scratch / "state.sqlite"
        copy = self.scratch / ".state-upload.sqlite"
        src, dst = sqlite3.connect(db), sqlite3.connect(copy)
        try:
            src.backup(dst)
        finally:
            src.close()
            dst.close()
        try:
            self.put(db, "state.sqlite", source=copy)
        finally:
            copy.unlink(missing_ok=True)

    def materialize_all(self, folder: Path | None = None) -> int:
        """Download the data of every placeholder in the scratch (or in ``folder`` of it);
        returns how many."""
        return self.stage_in(p for p in Path(folder or self.scratch).rglob("*") if is_placeholder(p))

    def stage_in(self, paths: Iterable[Path]) -> int:
        """Download the files among ``paths`` that belong to the mirror but are missing here
        (a task on another node); returns how many."""
        missing = [Path(p) for p in paths if self.holds(p) and (not Path(p).exists() or is_placeholder(Path(p)))]
        self.parallel(self._get_unless_absent, missing)
        return len(missing)

    def _get_unless_absent(self, local: Path) -> None:
        """``get``, except that a Parquet file the bucket lacks is an output of no rows
        (``pipeline.io.write_parquet`` writes none): there is nothing to download."""
        if local.suffix == ".parquet" and not is_placeholder(local):
            info = self._io("look up", self.rel(local), lambda: self.fs.get_file_info(self.key(self.rel(local))))
            if info.type == self._pafs.FileType.NotFound:
                return
        self.get(local)

    @staticmethod
    def parallel(fn, items) -> None:
        items = list(items)
        if len(items) <= 1:
            for it in items:
                fn(it)
            return
        with cf.ThreadPoolExecutor(min(_THREADS, len(items))) as pool:
            for fut in [pool.submit(fn, it) for it in items]:
                fut.result()


_opened: dict[StoreSpec, ObjectStore] = {}


def store_for(spec: StoreSpec | None) -> ObjectStore | None:
    """The process's ``ObjectStore`` for ``spec`` (workers open one once and keep it)."""
    if spec is None:
        return None
    if spec not in _opened:
        _opened[spec] = ObjectStore(spec)
    return _opened[spec]


def open_store(url: str, scratch: str = "", lazy: Iterable[str] = LAZY_DEFAULT) -> ObjectStore:
    return store_for(StoreSpec(str(url), str(scratch_path(url, scratch)), tuple(lazy)))

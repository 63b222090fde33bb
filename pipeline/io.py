"""Atomic file output and Parquet/Arrow helpers.

Outputs are written to ``<name>.tmp-<pid>`` and renamed into place only when complete,
so a reader (or a rerun after SIGKILL) never sees a half-written file.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from .errors import ConfigError


def ensure_workdir(path: Path) -> Path:
    """Create the work directory ``path`` if needed and check that files can be written
    there; a path that is a file, lies under a file, or is read-only is a ConfigError."""
    path = Path(path)
    fix = "Pass --workdir a directory you can write to"
    if path.exists() and not path.is_dir():
        raise ConfigError(f"work directory {path} is a file, not a directory", fix)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in reversed(path.parents) if p.exists() and not p.is_dir()), None)
        raise ConfigError(f"work directory {path} cannot be created: {blocker or 'a parent'} is a file", fix) from None
    except OSError as e:
        raise ConfigError(f"work directory {path} cannot be created: {e.strerror or e}", fix) from None
    probe = path / f".write-test-{os.getpid()}"
    try:
        probe.touch()
        probe.unlink()
    except OSError as e:
        raise ConfigError(f"work directory {path} is not writable: {e.strerror or e}", fix) from None
    return path


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: Path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_text_if_changed(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` atomically unless the file already holds it (a dataset
    card rewritten by every run keeps its time and bytes); returns whether it wrote."""
    if path.exists() and path.read_text() == text:
        return False
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return True


def read_json(path: Path):
    return json.loads(Path(path).read_text())


def write_parquet(table: pa.Table, path: Path, schema: pa.Schema | None = None, **kwargs) -> bool:
    """Write ``table`` cast to ``schema`` (which carries the schema version metadata). A table
    of no rows writes no file (and removes one left from before): the work directory holds
    no empty Parquet file, and a reader takes a missing file for no rows (``read_parquet``).
    Returns whether a file was written."""
    if schema is not None:
        table = table.select(schema.names).cast(schema)
    if table.num_rows == 0:
        Path(path).unlink(missing_ok=True)
        return False
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, **{"compression": "zstd", **kwargs})
    return True


class ParquetSink:
    """A streaming Parquet writer (``with ParquetSink(path, schema) as w: w.write(table)``)
    that opens its file on the first rows: with none, no file is written (and one left from
    before is removed). The file appears atomically when the block ends without error."""

    def __init__(self, path: Path, schema: pa.Schema, **kwargs):
        self.path, self.schema, self.kwargs = Path(path), schema, {"compression": "zstd", **kwargs}
        self.rows = 0
        self._ctx = self._tmp = self._writer = None

    def write(self, table: pa.Table, **kwargs) -> None:
        if table.num_rows == 0:
            return
        if self._writer is None:
            self._ctx = atomic_path(self.path)
            self._tmp = self._ctx.__enter__()
            self._writer = pq.ParquetWriter(self._tmp, self.schema, **self.kwargs)
        self._writer.write_table(table, **kwargs)
        self.rows += table.num_rows

    def __enter__(self) -> "ParquetSink":
        return self

    def __exit__(self, *exc) -> bool:
        if self._writer is None:
            if exc[0] is None:
                self.path.unlink(missing_ok=True)
            return False
        self._writer.close()
        self._ctx.__exit__(*exc)
        return False


def read_parquet(path: Path, schema: pa.Schema, columns: list[str] | None = None, **kwargs) -> pa.Table:
    """``pq.read_table``, or an empty table of ``schema`` when ``path`` is absent (an output
    written with no rows; see ``write_parquet``)."""
    if not Path(path).exists():
        t = schema.empty_table()
        return t.select(columns) if columns is not None else t
    return pq.read_table(path, columns=columns, **kwargs)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(chunk):
            h.update(b)
    return h.hexdigest()


def sorted_files(folder: Path, pattern: str) -> list[Path]:
    """Files matching ``pattern`` in ``folder``, sorted by name, ignoring temporaries."""
    return sorted(p for p in Path(folder).glob(pattern) if ".tmp-" not in p.name)


def require_shards(folder: Path, pattern: str, what: str, previous: str) -> list[Path]:
    """The sorted input shards of a stage, or a clear error naming the stage to run first."""
    from .errors import MissingInputError

    found = sorted_files(folder, pattern)
    if not found:
        raise MissingInputError(f"no {what} in {folder}", f"Run `webtext {previous}` first")
    return found


def parquet_rows(path: Path) -> int:
    """Rows of a Parquet file from its footer, for progress totals; 0 (unknown) when the
    file is a bucket work directory's placeholder, whose bytes are not here, or unreadable."""
    from .remote import is_placeholder

    if is_placeholder(path):
        return 0
    try:
        return pq.read_metadata(path).num_rows
    except (OSError, pa.ArrowException):
        return 0


def shard_id(path: Path) -> str:
    """'docs-00003.parquet' -> '00003' (the part after the last '-' of the first dotted name)."""
    return Path(path).name.split(".")[0].rsplit("-", 1)[-1]


def safe_name(path: Path) -> str:
    """A file-name-safe version of ``path``'s name plus 8 hex of its resolved path (unique per source)."""
    import re

    import xxhash

    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(path).name)
    return f"{stem}-{xxhash.xxh3_64_hexdigest(str(Path(path).resolve()).encode())[:8]}"

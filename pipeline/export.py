"""The text release: one corpus version's final text, as Parquet or JSON Lines, with a card.

    webtext export --format parquet|jsonl [--version N] OUT

In: ``tokens/manifest.json`` (which documents a version holds: the doc_ids of its token
shards), ``clean/`` (their final text, after decontamination), the takedowns in
``state.sqlite``, and the stages' ``_meta/stats.json`` / ``_meta/config.json`` and
``clean/_meta/overlap.json`` for the card.

Out, in a new folder ``OUT``:
- ``OUT/data/{train,val}-NNNNN-of-MMMMM.parquet`` (or ``.jsonl.gz``): one row per
  document of the version, in the version's split, files cut at about ``file_bytes``
  bytes of text (default 256 MiB). Columns: RELEASE below. In JSON Lines the
  timestamps are ISO 8601 strings (``2023-11-14T22:13:20Z``).
- ``OUT/README.md``: a Hugging Face dataset card whose YAML ``configs`` names the data
  files of each split (so ``datasets.load_dataset(OUT)`` loads exactly train and val),
  and a body with the funnel, the overlap report, sources and dates, the filters and
  their settings, licensing notes and how to request removal.

Which text: a page revisited with ``--refetch-after`` has several rows (one per clean
shard it came back in). A version holds the newest revision among the clean shards that
existed when it was cut (its ``source.shards``), so that row is exported.

Takedowns: a release never carries a taken-down document, whatever version it is of.
Left out are the documents of the version that the current version no longer holds
(documents leave the corpus only by a takedown; a revised one keeps its doc_id), and
those that a takedown in the state covers (URL in either scheme, domain or prefix, as
shard matches them), also one recorded with ``remove --no-apply`` that no version has
applied yet.

Memory: the doc_id -> (split, clean shard, row) index of the version (about 100 bytes
a document), plus one record batch and one output file's row group at a time.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import layout
from .errors import ConfigError, MissingInputError

FORMATS = {"parquet": ".parquet", "jsonl": ".jsonl.gz"}
SPLITS = ("train", "val")
UTC_S = pa.timestamp("s", tz="UTC")
RELEASE = pa.schema([
    pa.field("doc_id", pa.string(), nullable=False),
    pa.field("url", pa.string(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("karma", pa.int64(), nullable=False),
    pa.field("subreddits", pa.list_(pa.string()), nullable=False),
    pa.field("first_seen", UTC_S, nullable=False),     # first Reddit submission of the URL
    pa.field("domain", pa.string(), nullable=False),
    pa.field("lang", pa.string()),
    pa.field("extractor", pa.string(), nullable=False),
    pa.field("source", pa.string(), nullable=False),   # live, commoncrawl or wayback
    pa.field("captured_at", UTC_S),                    # the archive's capture time; null when live
])
BATCH = 1024                   # documents read from a clean shard at a time
FILE_BYTES = 256 << 20         # text bytes per output file, about


@dataclass(slots=True)
class Summary:
    """What an export wrote: rows and files per split, and the facts the card reports."""
    version: int
    format: str
    rows: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SPLITS, 0))
    files: dict[str, list[str]] = field(default_factory=lambda: {s: [] for s in SPLITS})
    taken_down: int = 0            # documents of the version left out for a takedown
    missing: int = 0               # documents of the version with no row in clean/ (should be 0)
    first_seen: list[int] = field(default_factory=list)      # [min, max], epoch seconds
    subreddits: dict[str, int] = field(default_factory=dict)
    sources: dict[str, int] = field(default_factory=dict)


def _tokens_dir(workdir: Path) -> Path:
    tokens = Path(workdir) / "tokens"
    if not (tokens / "manifest.json").exists():
        raise MissingInputError(f"no corpus in {workdir} ({tokens / 'manifest.json'} is missing)",
                                "Run `webtext shard` (or `webtext run`) first, or pass the right --workdir")
    return tokens


def _doc_splits(tokens: Path, manifest: dict) -> dict[str, str]:
    """doc_id -> split of every document in ``manifest``'s (one version's) token shards."""
    from webtext.stages.shard import read_tokens

    split_of: dict[str, str] = {}
    for shard in manifest["shards"]:
        for d in read_tokens(tokens / shard["file"])["doc_id"].to_pylist():
            split_of[d] = shard["split"]
    return split_of


def version_docs(workdir: Path, version: int = 0) -> tuple[dict, dict[str, str], set[str]]:
    """(the manifest as of ``version``, doc_id -> split of every document it holds, the
    doc_ids of that version that left the corpus since: in no later version's shards)."""
    from webtext.model.data import read_manifest

    tokens = _tokens_dir(workdir)
    manifest = read_manifest(tokens, version=version)
    split_of = _doc_splits(tokens, manifest)
    latest = read_manifest(tokens, verify=False)
    left = set() if latest["version"] == manifest["version"] else set(split_of) - set(_doc_splits(tokens, latest))
    return manifest, split_of, left


def _clean_shards(workdir: Path, manifest: dict) -> list[Path]:
    shards = sorted((Path(workdir) / "clean").glob("clean-*.parquet"))
    n = (manifest.get("source") or {}).get("shards")
    return shards[:n] if n else shards


def _takedowns(workdir: Path, shards: list[Path]) -> set[str]:
    """The doc_ids in ``shards`` that a takedown in the state covers (URL, either scheme;
    domain; prefix: ``stages.takedowns``, as shard applies them)."""
    from webtext.stages.takedowns import Takedown, matching_docs

    from .state import State

    if not (Path(workdir) / "state.sqlite").exists():
        return set()
    state = State(workdir)
    try:
        takedowns = [Takedown(t["kind"], t["url"]) for t in state.takedowns()]
    finally:
        state.close()
    return set(matching_docs(shards, takedowns)[0]) if takedowns else set()


def _release_table(batch: pa.RecordBatch) -> pa.Table:
    """Document rows -> RELEASE (int64 epochs, or timestamps, become timestamp[s, UTC])."""
    t = pa.Table.from_batches([batch])
    cols = {}
    for f in RELEASE:
        col = t[f.name]
        if f.type == UTC_S and not pa.types.is_timestamp(col.type):
            col = col.cast(pa.int64()).cast(pa.timestamp("s")).cast(UTC_S) if len(col) else col.cast(UTC_S)
        cols[f.name] = col.cast(f.type)
    return pa.table(cols, schema=RELEASE)


def _json_default(x):
    if isinstance(x, dt.datetime):
        return x.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise TypeError(type(x))


class _SplitWriter:
    """One split's output files: a new file once ``file_bytes`` of text went into one."""

    def __init__(self, data: Path, split: str, fmt: str, file_bytes: int):
        self.data, self.split, self.fmt, self.file_bytes = data, split, fmt, file_bytes
        self.paths: list[Path] = []
        self.sink = None
        self.size = 0

    def _open(self) -> None:
        path = self.data / f"{self.split}-{len(self.paths):05d}{FORMATS[self.fmt]}.partial"
        self.paths.append(path)
        self.sink = pq.ParquetWriter(path, RELEASE, compression="zstd") if self.fmt == "parquet" \
            else gzip.open(path, "wt", encoding="utf-8")
        self.size = 0

    def write(self, t: pa.Table) -> None:
        if not t.num_rows:
            return
        if self.sink is None or self.size >= self.file_bytes:
            self.close()
            self._open()
        if self.fmt == "parquet":
            self.sink.write_table(t)
        else:
            for row in t.to_pylist():
                self.sink.write(json.dumps(row, ensure_ascii=False, default=_json_default) + "\n")
        self.size += int(pc.sum(pc.binary_length(t["text"])).as_py() or 0)

    def close(self) -> None:
        if self.sink is not None:
            self.sink.close()
            self.sink = None

    def finish(self) -> list[str]:
        """Rename ``split-NNNNN.ext.partial`` to ``split-NNNNN-of-MMMMM.ext``."""
        self.close()
        names = []
        for i, p in enumerate(self.paths):
            name = f"{self.split}-{i:05d}-of-{len(self.paths):05d}{FORMATS[self.fmt]}"
            p.rename(self.data / name)
            names.append(f"data/{name}")
        return names


def export_text(workdir: Path, out: Path, fmt: str = "parquet", version: int = 0,
                file_bytes: int = FILE_BYTES) -> Summary:
    """Write corpus ``version`` (0 = the current one) of ``workdir`` to the new folder
    ``out``: data files and the dataset card (see the module docstring)."""
    layout.migrate(Path(workdir))   # a work directory from before version 5: sidecars into _meta/
    if fmt not in FORMATS:
        raise ConfigError(f"unknown text export format {fmt!r}", "Use --format parquet or --format jsonl")
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"{out} already exists and is not an empty folder",
                          "Choose a new output folder, or delete this one")
    workdir = Path(workdir)
    manifest, split_of, left = version_docs(workdir, version)
    shards = _clean_shards(workdir, manifest)
    gone = _takedowns(workdir, shards) | left
    summary = Summary(version=manifest["version"], format=fmt)
    summary.taken_down = sum(d in gone for d in split_of)
    wanted = {d: s for d, s in split_of.items() if d not in gone}
    # the newest revision of each document: its last row in the version's clean shards
    where: dict[str, tuple[int, int]] = {}
    for i, path in enumerate(shards):
        ids = pq.read_table(path, columns=["doc_id"])["doc_id"].to_pylist()
        for row, d in enumerate(ids):
            if d in wanted:
                where[d] = (i, row)
    summary.missing = len(wanted) - len(where)
    if summary.missing:
        raise MissingInputError(f"{summary.missing:,} document(s) of corpus version {summary.version} have no row in "
                                f"{workdir / 'clean'}", "Was clean/ rebuilt or edited since? Rerun `webtext shard`")
    # written beside OUT and renamed onto it at the end: a failed export leaves no half release
    staging = out.parent / f".{out.name}.partial-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _write_data(shards, where, wanted, staging / "data", fmt, file_bytes, summary)
        from .exportcard import write_card

        write_card(workdir, staging, manifest, summary)
        staging.rename(out)                 # onto an empty folder too
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return summary


def _write_data(shards: list[Path], where: dict[str, tuple[int, int]], wanted: dict[str, str], data: Path,
                fmt: str, file_bytes: int, summary: Summary) -> None:
    """Stream the chosen rows (``where``: doc_id -> (clean shard, row)) into each split's
    files, one record batch at a time, and count what the card reports."""
    data.mkdir(parents=True)
    writers = {s: _SplitWriter(data, s, fmt, file_bytes) for s in SPLITS}
    lo, hi = None, None
    for i, path in enumerate(shards):
        row0 = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=BATCH):
            ids = batch.column("doc_id").to_pylist()
            picks = {s: [j for j, d in enumerate(ids) if where.get(d) == (i, row0 + j) and wanted[d] == s]
                     for s in SPLITS}
            row0 += len(ids)
            for split, rows in picks.items():
                if not rows:
                    continue
                t = _release_table(batch.take(pa.array(rows, pa.int64())))
                writers[split].write(t)
                summary.rows[split] += t.num_rows
                mm = pc.min_max(t["first_seen"].cast(pa.int64())).as_py()
                lo = mm["min"] if lo is None else min(lo, mm["min"])
                hi = mm["max"] if hi is None else max(hi, mm["max"])
                for sub in t["subreddits"].to_pylist():
                    for s in sub:
                        summary.subreddits[s] = summary.subreddits.get(s, 0) + 1
                for s in t["source"].to_pylist():
                    summary.sources[s] = summary.sources.get(s, 0) + 1
    summary.files = {s: w.finish() for s, w in writers.items()}
    summary.first_seen = [lo, hi] if lo is not None else []

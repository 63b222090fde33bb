"""Where each stage keeps its bookkeeping: the one place that names sidecar paths.

A stage folder holds its data files only (``urls/urls-*.parquet``, ``warc/warc-*.warc.gz`` and
``warc/fetchlog-*.parquet``, ``docs/docs-*.parquet``, ``dedup/dedup-*.parquet``,
``clean/clean-*.parquet``, the token shards), so ``duckdb 'dedup/*.parquet'`` or
``datasets.load_dataset("dedup")`` sees the data and nothing else. Everything else, the
stage's stats, config, completion records and intermediate files, lies under
``<stage>/_meta/``::

    <stage>/_meta/stats.json       merged stats of the last run   (stats_path)
    <stage>/_meta/config.json      the config it ran with         (config_path)
    <stage>/_meta/done/            completion records, one a task (done_dir)
    <stage>/_meta/<name>           a stage's intermediates        (meta(folder, NAME))
    <stage>/README.md              a dataset card whose ``configs`` name the data files
                                   (``DATA_FILES``), for ``datasets.load_dataset``

A Parquet output of no rows is not written at all (``pipeline.io.write_parquet``,
``ParquetSink``); the completion record marks it ``{"absent": true}`` and readers take a
missing file for no rows (``pipeline.io.read_parquet``).

Work directories written before schema version 5 kept these beside the data as ``_<name>``
(``dedup/_clusters.parquet``, ``clean/_removals/``...); ``migrate`` moves them.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from .io import read_json, write_json, write_text_if_changed

META = "_meta"

# Sidecar names under <stage>/_meta/.
STATS = "stats.json"
CONFIG = "config.json"
DONE = "done"
PARTS = "parts"                    # urls/: harvest's map output; tokens/: tokenized parts
SPILL = "spill"                    # urls/: reduce's spilled buckets
FRONTIER = "frontier"              # warc/: fetch's plan
PARTIAL = "partial"                # warc/: fetch tasks in progress
SIGNATURES = "signatures"          # dedup/ phases, in order
BANDS = "bands"
PAIRS = "pairs"
CANDIDATES = "candidates"
VERIFIED = "verified"
COMPONENTS = "components"
RESOLVED = "resolved"
CLUSTERS = "clusters.parquet"
DROPS = "drops"
FILTERS = "filters"                # clean/: decontaminate's n-gram filters
SCAN = "scan"
REMOVALS = "removals"
OVERLAP = "overlap.json"
DECIDED = "decided"                # docs/: the decision settings each shard's split was made with
REFILTER = "refilter.json"         # docs/: what the last `webtext filter` moved

# Data beside a stage's main files, in a subfolder of their own (so `docs/*.parquet` and the
# card's default config see one schema): docs/rejected/ holds the pages extract rejected.
REJECTED_DIR = "rejected"

STAGE_FOLDERS = ("urls", "warc", "docs", "dedup", "clean", "tokens")

# What each stage kept beside its data before version 5, as ``_<name>``. tokens/_versions and
# tokens/manifest.json belong to the token versions' layout and stay where they are.
LEGACY = {
    "urls": (STATS, CONFIG, DONE, PARTS, SPILL),
    "warc": (STATS, CONFIG, DONE, FRONTIER, PARTIAL),
    "docs": (STATS, CONFIG, DONE),
    "dedup": (STATS, CONFIG, DONE, SIGNATURES, BANDS, PAIRS, CANDIDATES, VERIFIED, COMPONENTS, RESOLVED,
              CLUSTERS, DROPS),
    "clean": (STATS, CONFIG, DONE, FILTERS, SCAN, REMOVALS, OVERLAP),
    "tokens": (STATS, CONFIG, DONE, PARTS),
}


# The data files of each stage folder that a dataset card names (tokens/ has its own card).
DATA_FILES = {
    "urls": "urls-*.parquet",
    "warc": "fetchlog-*.parquet",
    "docs": "docs-*.parquet",
    "dedup": "dedup-*.parquet",
    "clean": "clean-*.parquet",
}
CARD = "README.md"
# Further configs of a card: (config name, data files).
EXTRA_CONFIGS = {"docs": (("rejected", f"{REJECTED_DIR}/rejected-*.parquet"),)}

_CARD_TEXT = """---
configs:
- config_name: default
  data_files:
  - split: train
    path: {pattern}
{extra}---
# {folder}/

Written by webtext. The data are the `{pattern}` files of this folder (one Parquet schema,
`webtext.schema` "{schema}" in each file's metadata); `_meta/` holds the stage's bookkeeping
(stats, config, completion records, intermediate files) and is no part of the data.
`datasets.load_dataset("<this folder>")` reads the data files only, as the `configs`
above name them.
{extra_text}"""
_EXTRA_CONFIG = """- config_name: {name}
  data_files:
  - split: train
    path: {pattern}
"""
_EXTRA_TEXT = {"docs": """
`rejected/rejected-*.parquet` (config "rejected", `webtext.schema` "rejected") holds the pages
extract did not keep, with their `reason`, and their text and `signals` where extraction got
that far: `load_dataset("<this folder>", "rejected")`. `webtext filter` moves pages between
the two after a rule changes.
"""}


def write_card(folder: Path) -> Path | None:
    """The dataset card ``<folder>/README.md`` naming the stage's data files (``DATA_FILES``),
    so that Hugging Face ``datasets`` never reads ``_meta/``; None for a folder without one."""
    folder = Path(folder)
    pattern = DATA_FILES.get(folder.name)
    if pattern is None:
        return None
    extra = "".join(_EXTRA_CONFIG.format(name=n, pattern=p) for n, p in EXTRA_CONFIGS.get(folder.name, ()))
    text = _CARD_TEXT.format(pattern=pattern, folder=folder.name, extra=extra,
                             extra_text=_EXTRA_TEXT.get(folder.name, ""),
                             schema="fetchlog" if folder.name == "warc" else folder.name)
    card = folder / CARD
    write_text_if_changed(card, text)
    return card


def meta_dir(folder: Path) -> Path:
    return Path(folder) / META


def meta(folder: Path, name: str) -> Path:
    """``<folder>/_meta/<name>``: a sidecar file or folder of the stage in ``folder``."""
    return Path(folder) / META / name


def stats_path(folder: Path) -> Path:
    return meta(folder, STATS)


def config_path(folder: Path) -> Path:
    return meta(folder, CONFIG)


def done_dir(folder: Path) -> Path:
    return meta(folder, DONE)


def is_meta(rel: str) -> bool:
    """Whether a path relative to the work directory (``dedup/_meta/clusters.parquet``) is bookkeeping."""
    return f"/{META}/" in f"/{rel}"


def legacy_paths(workdir: Path) -> list[Path]:
    """Sidecars of the pre-version-5 layout still beside a stage's data."""
    return [Path(workdir) / folder / f"_{name}" for folder, names in LEGACY.items() for name in names
            if (Path(workdir) / folder / f"_{name}").exists()]


def migrate(workdir: Path) -> list[str]:
    """Move a pre-version-5 work directory's sidecars into ``<stage>/_meta/`` and rename the
    outputs its completion records name accordingly (so finished tasks stay finished).
    Idempotent; returns the paths moved, relative to ``workdir``."""
    workdir = Path(workdir)
    moved: list[str] = []
    if not workdir.is_dir():
        return moved
    for folder, names in LEGACY.items():
        fdir = workdir / folder
        olds = {name for name in names if (fdir / f"_{name}").exists()}
        if not olds:
            continue
        meta_dir(fdir).mkdir(parents=True, exist_ok=True)
        for name in sorted(olds, key=lambda n: n != DONE):        # records first: renamed below
            _move(fdir / f"_{name}", meta(fdir, name))
            moved.append(f"{folder}/_{name}")
        renames = {f"_{name}": f"{META}/{name}" for name in names}
        empties = _remove_empty_parquet(fdir)
        for rec in sorted(done_dir(fdir).glob("*.json")) if done_dir(fdir).is_dir() else []:
            _rename_outputs(rec, renames, empties)
        write_card(fdir)
    return moved


def _remove_empty_parquet(folder: Path) -> set[str]:
    """Delete the Parquet files of no rows that writers before version 5 left (a missing
    file now means no rows); returns their paths relative to ``folder``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    gone = set()
    for p in sorted(folder.rglob("*.parquet")):
        try:
            empty = ".tmp-" not in p.name and pq.read_metadata(p).num_rows == 0
        except (OSError, pa.ArrowException):        # a placeholder or a broken file: left alone
            continue
        if empty:
            p.unlink()
            gone.add(p.relative_to(folder).as_posix())
    return gone


def _move(src: Path, dst: Path) -> None:
    """Rename ``src`` onto ``dst``; a folder already there (a migration cut short) takes src's entries."""
    if not dst.exists():
        os.replace(src, dst)
        return
    if src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _move(child, dst / child.name)
        src.rmdir()
    else:           # both files: the one under _meta/ is the newer
        src.unlink() if src.is_file() else shutil.rmtree(src)


def _rename_outputs(rec_path: Path, renames: dict[str, str], empties: set[str]) -> None:
    """A completion record names outputs relative to its task's first output folder; one that
    lay in an old sidecar (``_removals/removals-00001.parquet``) now lies under ``_meta/``,
    and one of the ``empties`` (paths relative to the stage folder) is recorded absent."""
    try:
        rec = read_json(rec_path)
    except (OSError, ValueError):
        return
    outs = rec.get("outputs", {})
    new = {}
    for name, info in outs.items():
        head, sep, tail = name.partition("/")
        name = renames[head] + sep + tail if head in renames else name
        new[name] = {"absent": True} if any(e == name or e.endswith("/" + name) for e in empties) else info
    if new != outs:
        rec["outputs"] = new
        write_json(rec_path, rec)

"""harvest's map side, shared by both sources (dumps in ``stages.harvest``, the live API in
``stages.reddit_api``): the filter's parameters and ``SubmissionWriter``, which streams
the submissions a filter keeps into a map part ``urls/_meta/parts/<source>.parquet``
(schema SUBMISSIONS).
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from webtext.pipeline.config import HarvestConfig
from webtext.pipeline.errors import MissingInputError
from webtext.pipeline.io import ParquetSink
from webtext.pipeline.schemas import SUBMISSIONS
from webtext.pipeline.stats import Stats

from .reddit import Filter

DATA_DIR = Path(__file__).resolve().parent.parent / "data"


def load_blocklist(path: str) -> frozenset[str]:
    p = Path(path) if path else DATA_DIR / "blocklist_domains.txt"
    if not p.exists():
        raise MissingInputError(f"blocklist {p} not found", "Set [harvest] blocklist to an existing file")
    lines = (ln.strip().lower() for ln in p.read_text().splitlines())
    return frozenset(ln for ln in lines if ln and not ln.startswith("#"))


class SubmissionWriter:
    """Streams kept submissions to a SUBMISSIONS Parquet file in row groups (bounded memory).

    Use as a context manager: the part appears, atomically, when the block ends; ``rows`` counts
    what was written.
    """

    ROW_GROUP = 65536

    def __init__(self, path: Path):
        self.path, self.rows = path, 0
        self.writer = ParquetSink(path, SUBMISSIONS)     # no kept submission: no part file
        self.pending: list[pa.Table] = []
        self.pending_rows = 0

    def __enter__(self) -> "SubmissionWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.flush()
        self.writer.__exit__(*exc)

    def flush(self) -> None:
        if self.pending_rows:
            self.writer.write(pa.concat_tables(self.pending), row_group_size=self.ROW_GROUP)
            self.rows += self.pending_rows
            self.pending, self.pending_rows = [], 0

    def write(self, table: pa.Table) -> None:
        """Append kept rows (a SUBMISSIONS table, as ``Filter.batch`` returns)."""
        if table.num_rows:
            self.pending.append(table)
            self.pending_rows += table.num_rows
            if self.pending_rows >= self.ROW_GROUP:
                self.flush()


def filter_into(keep: Filter, subs: list, stats: Stats, writer: SubmissionWriter) -> None:
    """Filter a batch of submissions: count the drops, write the rest."""
    drops, kept = keep.batch(subs)
    stats.dropped.update(drops)
    writer.write(kept)


def make_filter(p: dict) -> Filter:
    return Filter(p["allow_nsfw"], frozenset(p["blocklist"]), p["media_extensions"],
                  p.get("max_url_length", HarvestConfig.max_url_length))


def filter_params(cfg: HarvestConfig) -> dict:
    return {"allow_nsfw": cfg.allow_nsfw, "blocklist": sorted(load_blocklist(cfg.blocklist)),
            "media_extensions": sorted(cfg.media_extensions), "max_url_length": cfg.max_url_length}

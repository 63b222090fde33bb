"""Streaming statistics for ``webtext report``.

Every number of the report is folded in one record batch at a time (``BATCH_ROWS`` rows
of the named columns of one shard), so memory holds a batch and the accumulators: a
count per distinct value (domains, subreddits, languages, karma, latency in ms, tokens
per document), never a column of the whole corpus and never its text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .io import sorted_files

BATCH_ROWS = 65_536


def batches(folder: Path, pattern: str, columns: list[str],
            upgrade: Callable[[pa.Table], pa.Table] | None = None) -> Iterator[pa.Table]:
    """The named columns of every shard matching ``pattern``, a batch at a time;
    ``upgrade`` adds the columns that older shards lack."""
    for f in sorted_files(folder, pattern):
        pf = pq.ParquetFile(f)
        have = set(pf.schema_arrow.names)
        for b in pf.iter_batches(batch_size=BATCH_ROWS, columns=[c for c in columns if c in have]):
            t = pa.Table.from_batches([b])
            yield (upgrade(t) if upgrade else t).select(columns)


def count_values(counter: Counter, column) -> None:
    """Add a batch's values (null counted as None: an unknown language) to ``counter``;
    ties keep first-seen order, as if the corpus had been counted in one pass."""
    vc = pc.value_counts(column)
    counter.update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))


def top(counter: Counter, n: int = 15) -> list[list]:
    return [[k, v] for k, v in counter.most_common(n)]


class IntHistogram:
    """Exact counts of an integer column (karma, latency in ms, tokens per document),
    merged batch by batch: 16 bytes per distinct value, not per row. ``summary`` gives the
    histogram, median and p90 of the whole column, as numpy would from all of it at once."""

    def __init__(self) -> None:
        self.values = np.empty(0, np.int64)      # sorted, distinct
        self.counts = np.empty(0, np.int64)

    def add(self, column) -> None:
        if isinstance(column, (pa.Array, pa.ChunkedArray)):
            column = pc.drop_null(column).to_numpy()
        v, c = np.unique(np.asarray(column, dtype=np.int64), return_counts=True)
        if not len(v):
            return
        merged, inverse = np.unique(np.concatenate([self.values, v]), return_inverse=True)
        self.counts = np.bincount(inverse, weights=np.concatenate([self.counts, c]),
                                  minlength=len(merged)).astype(np.int64)
        self.values = merged

    def percentile(self, q: float, values: np.ndarray, counts: np.ndarray) -> float:
        """np.percentile's default (linear) rule on the column these counts stand for."""
        cum = np.cumsum(counts)
        h = (cum[-1] - 1) * q / 100
        lo = int(np.floor(h))
        a, b = (float(values[np.searchsorted(cum, k, side="right")]) for k in (lo, min(lo + 1, cum[-1] - 1)))
        return a + (b - a) * (h - lo)

    def summary(self, bins: int = 30, log: bool = False) -> dict:
        v, c = self.values, self.counts
        if log:
            v, c = v[v > 0], c[v > 0]
        if not len(v):
            return {"counts": [], "edges": []}
        edges = np.geomspace(v[0], v[-1] + 1, bins + 1) if log and v[-1] > v[0] else bins
        counts, e = np.histogram(v.astype(float), bins=edges, weights=c)
        return {"counts": counts.astype(np.int64).tolist(), "edges": [float(x) for x in e], "n": int(c.sum()),
                "median": self.percentile(50, v, c), "p90": self.percentile(90, v, c)}


RECOVERY_SOURCES = ("live", "commoncrawl", "wayback")   # fetch's page sources, in plot order


class Recovery:
    """Documents per year of submission (UTC year of ``first_seen``) and per ``source``:
    how much of each year's corpus came live and how much fetch recovered from an archive."""

    def __init__(self) -> None:
        self.counts: Counter = Counter()

    def add(self, first_seen, source) -> None:
        years = np.asarray(first_seen, dtype="datetime64[s]").astype("datetime64[Y]").astype(np.int64) + 1970
        g = pa.table({"year": years, "source": source}).group_by(["year", "source"]).aggregate([([], "count_all")])
        self.counts.update(dict(zip(zip(g["year"].to_pylist(), g["source"].to_pylist()),
                                    g["count_all"].to_pylist())))

    def summary(self) -> dict:
        counts = self.counts
        sources = [*RECOVERY_SOURCES, *sorted({s for _, s in counts} - set(RECOVERY_SOURCES))]
        by_year = [{"year": y, **{s: counts.get((y, s), 0) for s in sources}} for y in sorted({y for y, _ in counts})]
        total = {s: sum(r[s] for r in by_year) for s in sources}
        n = sum(total.values())
        return {"sources": sources, "by_year": by_year, "total": total,
                "recovered_share": round(1 - total["live"] / n, 4) if n else 0.0}


def recovery_by_year(first_seen, source) -> dict:
    """``Recovery`` over one batch."""
    r = Recovery()
    r.add(first_seen, source)
    return r.summary()

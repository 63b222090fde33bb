"""``webtext report`` at scale: its numbers stream over the shards (peak memory does not
grow with the corpus's text), it reads the text of only the documents it shows, and its
dedup examples are near-duplicates with the differing words highlighted."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import ROOT, doc_row, doc_table

from pipeline.report import collect_report, render_html
from pipeline.schemas import CLUSTERS

WORDS = 3_000            # words per document (~20 kB of text)


def _long_texts(rng: np.random.Generator, n: int, words: int) -> list[str]:
    """``n`` distinct texts of ``words`` random words each (a 5,000-word vocabulary)."""
    vocab = np.array(["".join(rng.choice(list("abcdefghijklmnopqrstuvwxyz"), rng.integers(2, 10)))
                      for _ in range(5000)], dtype=object)
    return [" ".join(vocab[rng.integers(0, len(vocab), words)]) for _ in range(n)]


def write_large_docs(workdir: Path, shards: int = 4, docs_per_shard: int = 1500, words: int = WORDS) -> dict:
    """A docs/ folder of long documents and a dedup ``_clusters.parquet`` naming a
    near-duplicate pair and an exact pair among them (the removed ones in the last shard,
    their kept documents in the first). Returns the total text size and the pair's ids."""
    rng = np.random.default_rng(0)
    (workdir / "docs").mkdir(parents=True)
    total = 0
    texts = _long_texts(rng, docs_per_shard, words)       # shards share texts but not ids: cheap to write
    for s in range(shards):
        rows = [doc_row(f"d{s}-{i:04d}", t, first_seen=1_500_000_000 + 86_400 * 40 * i,
                        source="wayback" if i % 3 == 0 else "live") for i, t in enumerate(texts)]
        if s == shards - 1:
            near = texts[5].split(" ")
            near[1500:1503] = ["REPLACED", "BY", "ANOTHER"]          # three words differ
            rows[-1] = doc_row("near-removed", " ".join(near))
            rows[-2] = doc_row("exact-removed", texts[7])
        total += sum(len(r["text"].encode()) for r in rows)
        pq.write_table(doc_table(rows), workdir / "docs" / f"docs-{s:05d}.parquet", compression="zstd")
    clusters = [("d0-0005", "d0-0005", True, None, None, None),
                ("near-removed", "d0-0005", False, "near_duplicate", "d0-0005", 0.99),
                ("d0-0007", "d0-0007", True, None, None, None),
                ("exact-removed", "d0-0007", False, "exact_duplicate", "d0-0007", 1.0)]
    (workdir / "dedup").mkdir()
    pq.write_table(pa.Table.from_pylist([dict(zip(CLUSTERS.names, c)) for c in clusters], schema=CLUSTERS),
                   workdir / "dedup" / "_clusters.parquet")
    return {"text_bytes": total}


PEAK = """
import json, sys
from pipeline.report import collect_report

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

before = status("VmRSS")
r = collect_report(sys.argv[1])
print(json.dumps({"before": before, "peak": status("VmHWM"), "docs": r["documents"]["docs"],
                  "examples": len(r["dedup"]["examples"])}))
"""


def report_peak(workdir: Path) -> dict:
    """collect_report in a fresh interpreter (its imports done first): its RSS before and
    its high-water mark after, in bytes, from /proc/self/status."""
    out = subprocess.run([sys.executable, "-c", PEAK, str(workdir)], capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_report_memory_is_bounded_by_a_shard_not_by_the_corpus_text(tmp_path):
    """Three times the text (58 -> 174 MB in 2 -> 6 shards of 20 kB documents) must not
    raise the report's peak memory: reading the text column of every shard would add at
    least the added text itself; streaming holds a batch of a shard's small columns and
    the row groups of the example documents, the same in both."""
    small, large = write_large_docs(tmp_path / "small", shards=2), write_large_docs(tmp_path / "large", shards=6)
    assert large["text_bytes"] > 170e6
    m_small, m_large = report_peak(tmp_path / "small"), report_peak(tmp_path / "large")
    assert (m_small["docs"], m_large["docs"]) == (3000, 9000)
    assert m_small["examples"] == m_large["examples"] == 1           # the near-duplicate, read from two shards
    added = large["text_bytes"] - small["text_bytes"]
    grew_small, grew_large = (m["peak"] - m["before"] for m in (m_small, m_large))
    assert grew_large - grew_small < added / 10, (grew_small, grew_large, added)
    assert grew_large < large["text_bytes"], (grew_large, large["text_bytes"])

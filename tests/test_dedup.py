"""dedup: exact and near duplicates removed, the kept document chosen by karma, clusters auditable."""

import random

import pyarrow.parquet as pq

from pipeline.demoweb import docstring_paragraphs
from pipeline.schemas import CLUSTERS, DEDUP
from stages import dedup
from stages.ngrams import shingles, words

from conftest import doc_row, doc_table, make_context


def _edit(text, n, seed):
    rng = random.Random(seed)
    words = text.split()
    for i in rng.sample(range(len(words)), n):
        words[i] = f"changed{i}"
    return " ".join(words)


def _jaccard(a, b):
    sa, sb = set(shingles(words(a), 5)), set(shingles(words(b), 5))
    return len(sa & sb) / len(sa | sb)


def test_exact_and_near_duplicates(tmp_path):
    paras = docstring_paragraphs()
    base = " ".join(paras[0:6])        # ~300 words
    other = " ".join(paras[10:16])
    distinct = " ".join(paras[20:26])
    rows_a = [doc_row("a1", base, karma=5), doc_row("a2", other, karma=50)]
    rows_b = [
        doc_row("b1", base.upper() + "  ", karma=40),              # exact after normalization, more karma
        doc_row("b2", _edit(other, 3, 1), karma=5),                 # near duplicate of a2
        doc_row("b3", _edit(distinct, 60, 2), karma=5),             # far from everything
        doc_row("b4", distinct, karma=5, first_seen=1_600_000_000),
    ]
    (tmp_path / "docs").mkdir()
    pq.write_table(doc_table(rows_a), tmp_path / "docs" / "docs-00000.parquet")
    pq.write_table(doc_table(rows_b), tmp_path / "docs" / "docs-00001.parquet")
    ctx = make_context(tmp_path)
    stats = dedup.run(ctx)
    assert stats["in"] == 6 and stats["out"] == 4
    assert stats["dropped"] == {"exact_duplicate": 1, "near_duplicate": 1}
    assert (stats["info"]["lsh_bands"], stats["info"]["lsh_rows"]) == (9, 13)
    kept = pq.read_table(sorted((tmp_path / "dedup").glob("dedup-*.parquet")))
    assert kept.schema.equals(DEDUP)
    assert sorted(kept["doc_id"].to_pylist()) == ["a2", "b1", "b3", "b4"]    # b1 beats a1 on karma
    clusters = pq.read_table(tmp_path / "dedup" / "_clusters.parquet")
    assert clusters.schema.equals(CLUSTERS)
    got = {(r["doc_id"], r["cluster_id"], r["kept"], r["reason"]) for r in clusters.to_pylist()}
    assert got == {("a1", "b1", False, "exact_duplicate"), ("b1", "b1", True, None),
                   ("a2", "a2", True, None), ("b2", "a2", False, "near_duplicate")}
    again = dedup.run(ctx)                                  # nothing recomputed
    assert again["tasks_run"] == 0 and again["out"] == 4


def test_near_duplicate_threshold_boundaries(tmp_path):
    """Pairs built at measured Jaccard ~0.9 merge; ~0.6 do not (threshold 0.8)."""
    paras = docstring_paragraphs()
    rows = []
    for k in range(6):
        text = " ".join(paras[30 + 6 * k: 36 + 6 * k])
        words = text.split()
        rows.append(doc_row(f"o{k}", text))
        rows.append(doc_row(f"near{k}", _edit(text, max(1, len(words) // 120), k)))   # J ~ 0.92
        rows.append(doc_row(f"far{k}", _edit(text, len(words) // 12, k + 100)))       # J ~ 0.55
    (tmp_path / "docs").mkdir()
    pq.write_table(doc_table(rows), tmp_path / "docs" / "docs-00000.parquet")
    by_id = {r["doc_id"]: r["text"] for r in rows}
    for k in range(6):     # the premise, measured: exact Jaccard of word 5-gram shingles
        assert _jaccard(by_id[f"o{k}"], by_id[f"near{k}"]) > 0.85
        assert _jaccard(by_id[f"o{k}"], by_id[f"far{k}"]) < 0.7
    dedup.run(make_context(tmp_path))
    c = pq.read_table(tmp_path / "dedup" / "_clusters.parquet").to_pylist()
    dropped = {r["doc_id"] for r in c if not r["kept"]}
    assert {f"near{k}" for k in range(6)} | {f"o{k}" for k in range(6)} >= dropped
    assert not any(d.startswith("far") for d in dropped)
    assert len(dropped) == 6                                 # one of each original/near pair

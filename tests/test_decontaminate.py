"""decontaminate: Wikipedia URLs and benchmark 13-gram overlap removed; filters saved and reused."""

import json

import pyarrow.parquet as pq
from rbloom import Bloom

from pipeline.demoweb import docstring_paragraphs
from pipeline.schemas import CLEAN
from stages import decontaminate as D
from stages.ngrams import ngram_hashes, words

from conftest import doc_row, doc_table, make_context, shared_path


def _setup(tmp_path, passage):
    paras = docstring_paragraphs()
    article = " ".join(paras[40:44])
    contaminated = " ".join(paras[44:46]) + " " + passage + " " + " ".join(paras[46:48])
    rows = [doc_row("clean1", article), doc_row("clean2", " ".join(paras[50:54])),
            doc_row("dirty", contaminated),
            doc_row("wiki", " ".join(paras[60:63]), url="https://en.wikipedia.org/wiki/Python"),
            doc_row("mirror-redirect", " ".join(paras[63:66]), url="http://wp.example/x")]
    rows[-1]["final_url"] = "https://de.wikipedia.org/wiki/X"
    (tmp_path / "dedup").mkdir()
    pq.write_table(doc_table(rows), tmp_path / "dedup" / "dedup-00000.parquet")


def test_lambada_passage_and_wikipedia_removed(tmp_path):
    lambada = shared_path("benchmarks", "lambada", "lambada_test.jsonl")
    passage = json.loads(lambada.read_text().splitlines()[17])["text"]
    _setup(tmp_path, passage)
    ctx = make_context(tmp_path, decontaminate={"benchmarks": [str(lambada)]})
    stats = D.run(ctx)
    assert stats["dropped"] == {"benchmark_overlap": 1, "wikipedia_url": 2}
    assert stats["info"]["overlap_docs:lambada_test"] == 1
    kept = pq.read_table(tmp_path / "clean" / "clean-00000.parquet")
    assert kept.schema.equals(CLEAN)
    assert sorted(kept["doc_id"].to_pylist()) == ["clean1", "clean2"]    # clean text: 100% kept
    bloom_file = next((tmp_path / "clean" / "_filters").glob("*.bloom"))
    assert D.run(ctx)["tasks_run"] == 0                                  # the filter is built once
    # A reloaded filter gives the same verdicts.
    b = Bloom.load(str(bloom_file), int)
    grams = ngram_hashes(words(passage), 13)
    assert grams and all(g in b for g in grams)


def test_plain_text_benchmark_and_short_overlap_ignored(tmp_path):
    paras = docstring_paragraphs()
    bench = tmp_path / "bench.txt"
    bench.write_text(paras[100] + "\n" + paras[101])
    passage = " ".join(paras[100].split()[:12])   # 12 words: below the 13-gram size
    _setup(tmp_path, passage)
    stats = D.run(make_context(tmp_path, decontaminate={"benchmarks": [str(bench)], "drop_wikipedia": False}))
    assert stats["dropped"] == {}
    assert stats["out"] == stats["in"] == 5

"""decontaminate: benchmark overlap removed under both policies on real text, Wikipedia by URL
and by content, filters saved and reloaded, every removal logged, the overlap report."""

import json
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq
import pytest
from rbloom import Bloom

from webtext.pipeline.config import ConfigError
from webtext.pipeline.errors import MissingInputError
from webtext.pipeline.io import read_parquet
from webtext.pipeline.schemas import CLEAN, REMOVALS, stored
from webtext.stages import decontaminate as D
from webtext.stages.benchmarks import load_registry, resolve, segments
from webtext.stages.ngrams import word_ngrams

from conftest import doc_row, doc_table, make_context, shared_path

WIKI_DUMP = ("wikipedia", "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2")


@pytest.fixture(scope="module")
def articles():
    """Real article text: the Wikipedia excerpt's articles, markup stripped (title -> text)."""
    return {t: D.strip_wikitext(m) for t, m in D.wiki_articles(shared_path(*WIKI_DUMP))}


@pytest.fixture(scope="module")
def bench_dir():
    return shared_path("benchmarks")


def _lambada(bench_dir, i=17):
    return json.loads((bench_dir / "lambada" / "lambada_test.jsonl").read_text().splitlines()[i])["text"]


def _write(tmp_path, rows):
    (tmp_path / "dedup").mkdir(parents=True, exist_ok=True)
    pq.write_table(doc_table(rows), tmp_path / "dedup" / "dedup-00000.parquet")


def _run(tmp_path, bench_dir, **cfg):
    cfg = {"benchmarks": ["lambada"], "benchmark_dir": str(bench_dir), "fp_probes": 10_000, **cfg}
    stats = D.run(make_context(tmp_path, decontaminate=cfg))
    kept = {r["doc_id"]: r["text"] for r in read_parquet(tmp_path / "clean" / "clean-00000.parquet", CLEAN).to_pylist()}
    log = read_parquet(tmp_path / "clean" / "_meta" / "removals" / "removals-00000.parquet", REMOVALS)   # absent: none
    assert log.schema.equals(REMOVALS)
    return stats, kept, log.to_pylist()


def _planted(articles, bench_dir):
    """A LAMBADA passage planted in the middle of a real article, with 1,500+ characters of
    the article either side."""
    text = articles["Alabama"]
    cut = text.index(". ", len(text) // 2) + 2
    passage = _lambada(bench_dir)
    return text[:cut] + passage + " " + text[cut:], passage, text[:cut], text[cut:]


def test_planted_lambada_passage_removed_under_both_policies(tmp_path, articles, bench_dir):
    doc, passage, before, after = _planted(articles, bench_dir)
    rows = [doc_row("planted", doc), doc_row("clean", articles["Aristotle"])]
    _write(tmp_path / "spans", rows)
    stats, kept, log = _run(tmp_path / "spans", bench_dir, policy="spans")
    assert set(kept) == {"planted", "clean"} and kept["clean"] == articles["Aristotle"]
    cut = kept["planted"]
    assert passage not in cut and not any(g in cut for g in passage.split(". ") if len(g) > 60)
    assert before[:1000] in cut and after.strip()[-1000:] in cut                # the rest of the article survives
    assert len(doc.strip()) - len(cut) <= len(passage) + 2 * 200 + 4    # the hit, its 200-character windows
    assert stats["info"]["documents_cut"] == 1 and stats["dropped"] == {}
    assert {r["doc_id"] for r in log} == {"planted"} and {r["action"] for r in log} == {"span_removed"}
    for r in log:                                                       # every n-gram logged where it stands
        assert r["benchmark"] == "lambada" and doc[r["start"]:r["end"]] == r["ngram"] and r["ngram"] in passage

    _write(tmp_path / "drop", rows)
    stats, kept, log = _run(tmp_path / "drop", bench_dir, policy="drop")
    assert set(kept) == {"clean"} and stats["dropped"] == {"benchmark_overlap": 1}
    assert {(r["doc_id"], r["action"], r["reason"]) for r in log} == {("planted", "document_dropped", "benchmark_overlap")}
    report = json.loads((tmp_path / "drop" / "clean" / "_meta" / "overlap.json").read_text())
    (row,) = report["benchmarks"]
    assert row["documents_hit"] == 1 and row["documents_removed"] == 1 and row["chars_removed"] == len(doc)
    assert row["ngrams_in_corpus"] == len(set(word_ngrams([passage], 13).hashes.tolist()))


def test_clean_real_text_keeps_every_document(tmp_path, articles, bench_dir):
    """Real articles against every registered benchmark: nothing is cut or dropped."""
    names = ["lambada", "wikitext2", "wikitext2-raw", "ptb", "wsc273"]
    rows = [doc_row(f"a{i}", t) for i, t in enumerate(list(articles.values())[:40]) if len(t) > 500]
    _write(tmp_path, rows)
    stats, kept, log = _run(tmp_path, bench_dir, benchmarks=names)
    assert kept == {r["doc_id"]: r["text"] for r in rows} and log == []
    assert stats["out"] == stats["in"] == len(rows)
    assert stats["info"]["ngrams:ptb"] > 10_000 and stats["info"]["ngrams:wsc273"] == 1_000


def test_fragmented_document_dropped_and_common_ngrams_ignored(tmp_path, articles, bench_dir):
    """spans: eleven passages cut a document into more than 10 pieces, so it goes; an
    n-gram found in more than 10 documents is common and ignored (GPT-3)."""
    text = articles["Aristotle"]
    pieces = [text[i * 600:(i + 1) * 600] for i in range(12)]
    fragmented = " ".join(p + " " + _lambada(bench_dir, 100 + i) for i, p in enumerate(pieces[:11])) + pieces[11]
    common = _lambada(bench_dir, 3)
    rows = [doc_row("fragmented", fragmented)]
    rows += [doc_row(f"c{i}", articles["Alabama"][i * 900:(i + 1) * 900] + " " + common) for i in range(11)]
    _write(tmp_path, rows)
    stats, kept, log = _run(tmp_path, bench_dir)
    assert "fragmented" not in kept and stats["dropped"] == {"benchmark_fragmented": 1}
    assert all(kept[f"c{i}"] == rows[i + 1]["text"] for i in range(11))      # common: in 11 documents
    assert stats["info"]["common_ngrams"] > 0
    assert {r["doc_id"] for r in log} == {"fragmented"}


def test_wikipedia_by_url_and_by_content(tmp_path, articles, bench_dir):
    """A page from the real dump served on an unknown mirror goes by content; wikipedia.org
    (mobile too) and listed mirrors go by URL; other real text stays."""
    dump = shared_path(*WIKI_DUMP)
    rows = [doc_row("copy", articles["Albedo"], url="https://knowledge-copy.example/albedo"),
            doc_row("mobile", "short page", url="https://en.m.wikipedia.org/wiki/X"),
            doc_row("mirror", "another page", url="https://www.wikiwand.com/en/Albedo"),
            doc_row("quote", "As Wikipedia puts it: " + articles["Albedo"][:300] + " " + "own words " * 200),
            doc_row("news", _lambada(bench_dir, 40) * 0 + "A local council approved the new budget on Monday. " * 30)]
    _write(tmp_path, rows)
    stats, kept, log = _run(tmp_path, bench_dir, benchmarks=[], wikipedia_dump=str(dump))
    assert set(kept) == {"quote", "news"}
    assert stats["dropped"] == {"wikipedia_url": 2, "wikipedia_content": 1}
    assert stats["info"]["wikipedia_articles"] == 106
    assert {(r["doc_id"], r["reason"]) for r in log} == {("copy", "wikipedia_content"), ("mobile", "wikipedia_url"),
                                                        ("mirror", "wikipedia_url")}


def test_filters_saved_once_and_reloaded_in_a_new_process(tmp_path, articles, bench_dir):
    doc, passage, _, _ = _planted(articles, bench_dir)
    _write(tmp_path, [doc_row("planted", doc)])
    ctx = make_context(tmp_path, decontaminate={"benchmarks": ["lambada"], "benchmark_dir": str(bench_dir),
                                                "fp_probes": 0})
    D.run(ctx)
    assert D.run(ctx)["tasks_run"] == 0                                   # built once, then reused
    bloom_file = tmp_path / "clean" / "_meta" / "filters" / "lambada.bloom"
    probes = word_ngrams([doc], 13).hashes.tolist()
    here = [p in Bloom.load(str(bloom_file), int) for p in probes]
    code = ("import sys, json; from rbloom import Bloom; b = Bloom.load(sys.argv[1], int); "
            "print(json.dumps([int(x) in b for x in sys.argv[2:]]))")
    there = json.loads(subprocess.run([sys.executable, "-c", code, str(bloom_file), *map(str, probes)],
                                      capture_output=True, text=True, check=True).stdout)
    assert there == here and sum(here) >= len(word_ngrams([passage], 13).hashes)


def test_false_positive_rate_at_ten_million_items(tmp_path):
    """Measured over 1M random probes of a 10M-item filter (at fp 1e-3, so that the rate can
    be seen), the observed rate is within 2x of (1 - e^(-kn/m))^k."""
    items = np.random.default_rng(1).integers(0, 2**63, size=10_000_000, dtype=np.int64).astype(np.uint64) * \
        np.uint64(2)                                                      # even: the probes are odd
    path = tmp_path / "big.bloom"
    D._save_bloom(D._bloom(len(items), 1e-3, lambda lo, n: items[lo:lo + n]), path)
    c = D._fp_check(path, 1_000_000, 1e-3)
    assert c["items"] == pytest.approx(10_000_000, rel=0.01)
    assert c["theoretical"] / 2 <= c["observed"] <= c["theoretical"] * 2


def test_report_only_changes_nothing(tmp_path, articles, bench_dir):
    doc, _, _, _ = _planted(articles, bench_dir)
    _write(tmp_path, [doc_row("planted", doc)])
    stats = D.run(make_context(tmp_path, decontaminate={"benchmarks": ["lambada"], "benchmark_dir": str(bench_dir),
                                                        "fp_probes": 1000}), report_only=True)
    assert not (tmp_path / "clean" / "clean-00000.parquet").exists() and stats["info"]["report_only"] == 1
    report = json.loads((tmp_path / "clean" / "_meta" / "overlap.json").read_text())
    assert report["benchmarks"][0]["documents_hit"] == 1 and report["benchmarks"][0]["documents_removed"] is None
    assert {c["filter"] for c in report["false_positive_check"]} == {"lambada.bloom"}


def test_benchmark_formats_and_a_user_registry(tmp_path, bench_dir):
    reg = load_registry()
    seg = {name: list(segments(resolve(name, str(bench_dir), reg))) for name in reg}
    assert len(seg["lambada"]) == 5153 and len(seg["wsc273-jsonl"]) == 273
    assert seg["wsc273"][0] == "The city councilmen refused the demonstrators a permit because they feared violence."
    assert not any("<unk>" in s for s in seg["wikitext2"] + seg["ptb"])
    assert not any(" N " in f" {s} " for s in seg["ptb"])                # PTB's number token cuts n-grams
    assert sum("= Robert Boulter =" in s for s in seg["wikitext2-raw"]) == 1   # one record per article
    # A user's own benchmark, without code: a registry file and a jsonl with another field.
    (tmp_path / "qa.jsonl").write_text(json.dumps({"question": "What is the capital of France and why?"}) + "\n")
    (tmp_path / "mine.toml").write_text(f'[qa]\nfile = "{tmp_path / "qa.jsonl"}"\nformat = "jsonl"\nfield = "question"\n')
    mine = load_registry(str(tmp_path / "mine.toml"))
    assert list(segments(resolve("qa", "", mine))) == ["What is the capital of France and why?"]
    assert list(segments(resolve(f"{tmp_path / 'qa.jsonl'}:question", "", reg))) == \
        ["What is the capital of France and why?"]
    with pytest.raises(MissingInputError, match="benchmark file .*lambada_test.jsonl not found"):
        resolve("lambada", str(tmp_path), reg)
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(MissingInputError, match=r"bad.jsonl:2 is not JSON with a 'text' field"):
        list(segments(resolve(str(tmp_path / "bad.jsonl"), "", reg)))
    for bad in ({"policy": "erase"}, {"wikipedia_sample": 0}, {"fp_rate": 0}):
        with pytest.raises(ConfigError):
            make_context(tmp_path / "x", decontaminate=bad)


def test_clean_schema(tmp_path, bench_dir):
    _write(tmp_path, [doc_row("a", "plain words " * 100)])
    _run(tmp_path, bench_dir)
    assert pq.read_table(tmp_path / "clean" / "clean-00000.parquet").schema.equals(stored(CLEAN))


def test_no_benchmark_configured_warns(tmp_path):
    """Without a benchmark the stage still runs (Wikipedia by URL), but says that nothing
    was checked for benchmark overlap and how to name one."""
    import io

    from rich.console import Console

    _write(tmp_path, [doc_row("a", "plain words " * 80, url="http://example.com/a")])
    ctx = make_context(tmp_path, decontaminate={"fp_probes": 0})
    ctx.console = Console(file=(buf := io.StringIO()), width=400)
    D.run(ctx)
    out = buf.getvalue()
    assert "warning:" in out and "no benchmark configured" in out and "--benchmark" in out
    assert (tmp_path / "clean" / "clean-00000.parquet").exists()


def test_scan_screen_passes_every_benchmark_ngram_and_few_others():
    """The scan's bit-table screen at a realistic size (450k benchmark n-grams): no false
    negative, and over 2M random folds a pass rate within 10% of 1 - e^(-n/2^bits)."""
    from webtext.stages.ngrams import mix64, unmix64

    rng = np.random.default_rng(3)
    exact = [D.sorted_unique(rng.integers(0, 2**63, size=k, dtype=np.int64).astype(np.uint64) * np.uint64(2))
             for k in (400_000, 50_000)]
    screen = D.Screen(exact)
    for a in exact:
        assert np.array_equal(screen(unmix64(a)), np.arange(len(a)))            # every one passes
        assert np.array_equal(mix64(unmix64(a)), a)
    probes = rng.integers(0, 2**63, size=2_000_000, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    observed = len(screen(probes)) / len(probes)
    expected = 1 - np.exp(-sum(map(len, exact)) / 2**screen.bits)
    assert 0.01 < expected < 0.02 and abs(observed - expected) < 0.1 * expected

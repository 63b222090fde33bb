"""Signals as data (#25): docs carry the signals the filters read, docs/rejected/ holds every
rejected page with its reason, PII is redacted before the signals, and ``webtext filter``
re-decides from the recorded signals without extracting (no trafilatura, no WARC)."""

import gzip
import json
import shutil
import subprocess
import sys
import textwrap

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import make_context, shared_path
from test_extract import _warc
from webtext.pipeline.config import ExtractConfig, to_dict
from webtext.pipeline.demoweb import _html, docstring_paragraphs
from webtext.pipeline.executor import Task
from webtext.pipeline.schemas import DOCS, REJECTED, stored
from webtext.stages import decide, extract, pii, refilter, signals


def _extract(tmp_path, pages, **cfg):
    """One extract shard over ``pages`` ((url, html bytes, content type)): (stats, docs, rejected)."""
    warc, out = tmp_path / "warc-00000-000.warc.gz", tmp_path / "docs-00000.parquet"
    warc.unlink(missing_ok=True)
    _warc(warc, pages)
    stats = extract.extract_shard(Task("extract", "00000", extract.extract_shard, [warc], [out],
                                       {"extract": to_dict(ExtractConfig(**cfg))}))
    docs = pq.read_table(out) if out.exists() else DOCS.empty_table()
    rej_p = refilter.rejected_path(tmp_path, "00000")
    rejected = pq.read_table(rej_p) if rej_p.exists() else REJECTED.empty_table()
    return stats, docs, rejected


def _signal_table(table: pa.Table) -> pa.Table:
    return pa.Table.from_struct_array(table.column("signals").combine_chunks())


def _same_signals(table: pa.Table) -> None:
    """The recorded signals are those of the stored text (the PII counts describe the text
    before redaction, so they are left out)."""
    texts = table.column("text").to_pylist()
    want = pa.Table.from_struct_array(decide.compute(texts, {}, 4))
    got = _signal_table(table)
    for name in [*signals.SCHEMA.names, "short_line_share", "boilerplate_line_share"]:
        assert got.column(name).to_pylist() == want.column(name).to_pylist(), name


@pytest.fixture(scope="module")
def real_pages():
    files = sorted(shared_path("extraction", "trafilatura-eval", "tests", "eval").glob("*.html.gz"))
    return [(f"http://real{i}.example/{f.name[:-8]}", gzip.decompress(f.read_bytes()), "text/html")
            for i, f in enumerate(files[:400:10])]


def test_real_pages_carry_their_signals_and_rejected_pages_their_reason(tmp_path, real_pages):
    stats, docs, rejected = _extract(tmp_path, real_pages, langs=["en", "de"])
    assert docs.schema.equals(stored(DOCS)) and rejected.schema.equals(stored(REJECTED))
    assert docs.num_rows >= 20 and rejected.num_rows >= 5, dict(stats.dropped)
    # every page is in exactly one place, and the stats count what the files hold
    assert stats.records_in == docs.num_rows + rejected.num_rows == len(real_pages)
    assert stats.records_out == docs.num_rows
    assert dict(stats.dropped) == dict(zip(*np.unique(rejected["reason"].to_pylist(), return_counts=True)))
    assert set(docs["doc_id"].to_pylist()).isdisjoint(rejected["doc_id"].to_pylist())
    _same_signals(docs)
    with_text = rejected.filter(rejected["text"].is_valid())
    _same_signals(with_text)
    # pages that never had a text (the language prefilter, a failed extraction) have no signals
    no_text = rejected.filter(rejected["text"].is_null())
    assert no_text["signals"].null_count == no_text.num_rows
    assert set(no_text["reason"].to_pylist()) <= {"wrong_lang", "extract_empty", "extract_error", "html_too_large"}
    assert with_text.num_rows and set(with_text["reason"].to_pylist()) <= set(decide.rule_names())
    # the recorded decision is reproduced from the signals alone, and each rule did what it says
    cfg = ExtractConfig(langs=["en", "de"])
    pages = pa.concat_tables([docs.select(DOCS.names), with_text.select(DOCS.names).cast(docs.select(DOCS.names).schema)])
    assert decide.decide(pages, cfg).to_pylist() == [None] * docs.num_rows + with_text["reason"].to_pylist()
    sig = _signal_table(docs)
    for rule in decide.signal_rules({}):
        if rule.enabled and rule.name not in decide.ENGLISH_ONLY:
            assert not rule.drops(sig.column(rule.signal).to_numpy().astype(float)).any(), rule.name
    rsig = _signal_table(with_text)
    for i, reason in enumerate(with_text["reason"].to_pylist()):
        if reason in signals.RULES:
            r = signals.RULES[reason]
            assert r.drops(np.array([rsig.column(r.signal)[i].as_py()], dtype=float))[0], reason


PLANTED = ("Readers can write to jane.doe@mailbox.org or call +44 20 7946 0958 during office hours; "
           "the archive server answers at 93.184.216.34 and at 2a00:1450:4001:82b::200e for anyone.")


@pytest.mark.parametrize("mode", ["redact", "record", "off"])
def test_planted_pii_is_redacted_before_the_signals_and_counted(tmp_path, mode):
    paras = docstring_paragraphs()[:5]
    pages = [("http://a.example/pii", _html("a.example", "Contact", [paras[0], PLANTED, *paras[1:]]),
              "text/html; charset=utf-8")]
    stats, docs, _ = _extract(tmp_path, pages, pii=mode)
    assert docs.num_rows == 1
    text = docs["text"][0].as_py()
    counts = {f.name: docs["signals"][0].as_py()[f.name] for f in decide.PII_FIELDS}
    if mode == "redact":
        assert "jane.doe" not in text and "93.184.216.34" not in text and "7946" not in text
        assert text.count("<EMAIL>") == 1 and text.count("<IP_ADDRESS>") == 2 and text.count("<PHONE_NUMBER>") == 1
        assert pii.scan(text, "record")[1] == {"pii_email": 0, "pii_ip": 0, "pii_phone": 0}
    else:
        assert PLANTED in text.replace("\n", " ")
    if mode == "off":
        assert counts == {"pii_email": None, "pii_ip": None, "pii_phone": None}
        assert not any(k.startswith("pii_") for k in stats.info)
    else:
        assert counts == {"pii_email": 1, "pii_ip": 2, "pii_phone": 1}
        assert {k: stats.info[k] for k in counts} == counts
    _same_signals(docs)        # the signals describe the stored (redacted) text


def _copy(demo_run, tmp_path):
    w = tmp_path / "w"
    shutil.copytree(demo_run, w, symlinks=True)
    return w


_BLOCKED = textwrap.dedent("""
    import sys
    class Blocked:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("trafilatura", "newspaper", "fastwarc", "htmldate", "warcio") \\
                    or name in ("webtext.stages.isolate", "webtext.stages.pagetext", "webtext.stages.extract"):
                raise ImportError("blocked in this test: " + name)
    sys.meta_path.insert(0, Blocked())
    import builtins
    _open = builtins.open
    def guarded(file, *a, **k):
        if str(file).endswith(".warc.gz"):
            raise AssertionError("a WARC file was opened")
        return _open(file, *a, **k)
    builtins.open = guarded
    from webtext.pipeline.cli import main
    sys.argv = ["webtext", *sys.argv[1:]]
    main()
""")


def _filter(workdir, *args):
    """``webtext filter`` in a process where trafilatura, newspaper3k, the WARC readers and
    extract's modules cannot be imported and no WARC file can be opened."""
    return subprocess.run([sys.executable, "-c", _BLOCKED, "--workdir", str(workdir), "--json", "filter", *args],
                          capture_output=True, text=True, timeout=300)


def _ids(folder, pattern):
    return sorted(duckdb.sql(f"select doc_id from '{folder}/{pattern}'").fetchnumpy()["doc_id"].tolist()) \
        if list(folder.glob(pattern)) else []


def _texts(docs):
    return {r["doc_id"]: r["text"] for p in sorted(docs.glob("docs-*.parquet"))
            for r in pq.read_table(p, columns=["doc_id", "text"]).to_pylist()}


def test_filter_moves_documents_both_ways_without_extracting(demo_run, tmp_path):
    w = _copy(demo_run, tmp_path)
    docs = w / "docs"
    before = _ids(docs, "docs-*.parquet")
    texts = _texts(docs)
    stats = json.loads((docs / "_meta" / "stats.json").read_text())
    assert duckdb.sql(f"select count(*) from '{docs}/docs-*.parquet'").fetchall()[0][0] == stats["out"] == len(before)
    assert duckdb.sql(f"select count(*) from '{docs}/*.parquet'").fetchall()[0][0] == stats["out"]   # rejected/ apart
    n_rej = duckdb.sql(f"select count(*) from '{docs}/rejected/*.parquet'").fetchall()[0][0]
    assert n_rej == sum(v for k, v in stats["dropped"].items() if k != "no_metadata")

    r = _filter(w, "--rule", "c4_sentences.enabled=true", "--rule", "c4_sentences.threshold=8")
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    moved = got["moved_to_rejected"].get("c4_sentences", 0)
    assert moved > 0 and got["moved_to_docs"] == 0 and got["extractions"] == 0
    after = _ids(docs, "docs-*.parquet")
    assert len(after) == len(before) - moved
    stats2 = json.loads((docs / "_meta" / "stats.json").read_text())
    assert stats2["out"] == len(after) == duckdb.sql(f"select count(*) from '{docs}/*.parquet'").fetchall()[0][0]
    assert stats2["dropped"]["c4_sentences"] == moved and stats2["in"] == stats["in"]
    rej = duckdb.sql(f"select doc_id, text, signals.c4_sentence_count as n from '{docs}/rejected/*.parquet' "
                     "where reason = 'c4_sentences'").fetchall()
    assert len(rej) == moved and all(n < 8 and t == texts[d] for d, t, n in rej)

    r = _filter(w)               # the config's rules again: every document comes back, unchanged
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["moved_to_docs"] == moved
    assert _ids(docs, "docs-*.parquet") == before
    assert _texts(docs) == texts
    assert json.loads((docs / "_meta" / "stats.json").read_text())["dropped"] == stats["dropped"]


def test_extract_after_filter_and_after_a_rule_change_extracts_nothing(demo_run, tmp_path, monkeypatch):
    """The completion records follow the rewritten files; a rule changed in the config is
    re-decided from the signals by ``webtext extract`` itself; dedup sees the new inputs."""
    from webtext.pipeline.run import run_stage

    w = _copy(demo_run, tmp_path)

    class NoExtraction:
        def __init__(self, *a, **k):
            raise AssertionError("extract ran trafilatura")

    monkeypatch.setattr(extract, "Isolated", NoExtraction)
    assert _filter(w, "--rule", "c4_sentences.enabled=true", "--rule", "c4_sentences.threshold=8").returncode == 0
    ctx = make_context(w)
    res = run_stage(ctx, "extract")            # the config's rules: re-decided back, nothing extracted
    assert res["tasks_run"] == 0 and "c4_sentences" not in res["dropped"]
    strict = {"rules": {"c4_sentences": {"enabled": True, "threshold": 8}}}
    ctx = make_context(w, extract=strict)
    res = run_stage(ctx, "extract")
    assert res["tasks_run"] == 0 and res["dropped"]["c4_sentences"] > 0
    assert duckdb.sql(f"select count(*) from '{w}/docs/*.parquet'").fetchall()[0][0] == res["out"]
    ded = run_stage(ctx, "dedup")
    assert ded["in"] == res["out"]            # dedup read the rewritten shards
    ctx.close()


def test_quality_pareto_reads_the_classifier_column_and_keeps_it(demo_run, tmp_path):
    w = _copy(demo_run, tmp_path)
    for p in sorted((w / "docs").glob("docs-*.parquet")):
        t = pq.read_table(p)
        pq.write_table(t.append_column("quality_score", pa.array([0.0] * t.num_rows, pa.float32())), p)
    r = _filter(w, "--rule", "quality_pareto.enabled=true")
    assert r.returncode == 0, r.stderr
    moved = json.loads(r.stdout)["moved_to_rejected"]["quality_pareto"]
    total = json.loads((w / "docs" / "_meta" / "stats.json").read_text())["out"] + moved
    assert moved >= total - 3           # kept with probability 2**-9 at score 0
    for p in sorted((w / "docs").glob("docs-*.parquet")):
        assert "quality_score" in pq.read_schema(p).names


@pytest.mark.parametrize("args, needle", [
    (["--rule", "nope.threshold=1"], "unknown filter rule 'nope'"),
    (["--rule", "gopher_stopwords.threshold=99"], "outside"),
    (["--rule", "gopher_stopwords=3"], "is not NAME.KEY=VALUE"),
    (["--rule", "short_lines.threshold=2"], "not allowed"),
])
def test_bad_rule_settings_exit_2_with_one_line(demo_run, tmp_path, args, needle):
    r = _filter(_copy(demo_run, tmp_path), *args)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bad_rule_in_the_config_file_exits_2(tmp_path):
    cfg = tmp_path / "webtext.toml"
    cfg.write_text('[extract]\nrules = { gopher_stopwords = { treshold = 3 } }\n')
    r = subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(tmp_path / "w"),
                        "--config", str(cfg), "filter"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "has no setting 'treshold'" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_docs_without_signals_ask_for_extract_again(demo_run, tmp_path):
    w = _copy(demo_run, tmp_path)
    for p in sorted((w / "docs").glob("docs-*.parquet")):
        pq.write_table(pq.read_table(p).drop_columns(["signals"]), p)       # as version 5 wrote them
    r = _filter(w)
    assert r.returncode == 2 and "before extract recorded signals" in r.stderr and "webtext extract" in r.stderr


def test_signals_struct_reads_from_duckdb(demo_run):
    docs = demo_run / "docs"
    n, words = duckdb.sql(f"select count(*), sum(signals.word_count) from '{docs}/docs-*.parquet'").fetchall()[0]
    assert n > 0 and words > 0


def test_report_shows_each_rules_rejection_rate_and_the_pii_counts(demo_run, tmp_path):
    from webtext.pipeline.report import collect_report, render_html

    w = _copy(demo_run, tmp_path)
    assert _filter(w, "--rule", "c4_sentences.enabled=true", "--rule", "c4_sentences.threshold=8").returncode == 0
    f = collect_report(w)["filters"]
    rules = {r["rule"]: r for r in f["rules"]}
    stats = json.loads((w / "docs" / "_meta" / "stats.json").read_text())
    assert rules["c4_sentences"]["first"] == stats["dropped"]["c4_sentences"] > 0
    assert rules["c4_sentences"]["alone"] >= rules["c4_sentences"]["first"]
    assert rules["too_short"]["first"] == stats["dropped"]["too_short"]
    assert f["pii"] == {"pii_email": 0, "pii_ip": 0, "pii_phone": 0} and f["pii_mode"] == "redact"
    assert f["pages_with_text"] == f["pages"] - sum(v for k, v in stats["dropped"].items()
                                                     if k not in decide.rule_names())
    page = render_html(collect_report(w))
    assert "Filters and PII" in page and "c4_sentences" in page

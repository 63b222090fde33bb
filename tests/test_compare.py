"""webtext compare: a reference built from half of the demo corpus (some documents lightly
edited, some heavily) plus unrelated texts (Python's own docstrings) and bad lines, in the
gpt-2-output-dataset format (id, ended, length, text). The shares reported are checked
against a brute-force oracle: every reference x corpus pair's exact Jaccard of
``ngrams.doc_shingles`` sets (the dedup stage's shingles, made the slow, plain way).
"""

from __future__ import annotations

import inspect
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from webtext.pipeline.compare import CompareConfig, compare
from webtext.pipeline.config import DedupConfig
from webtext.stages.ngrams import doc_shingles

N_UNRELATED = 12


def corpus(workdir: Path) -> list[dict]:
    rows = []
    for f in sorted((workdir / "clean").glob("clean-*.parquet")):
        rows += pq.read_table(f, columns=["doc_id", "url", "text"]).to_pylist()
    return sorted(rows, key=lambda r: r["doc_id"])


def edit(text: str, words: int, rng: random.Random) -> str:
    """The text with ``words`` consecutive words from its middle replaced: one word is a
    light edit (J ~ 0.9 for a 100-word text), a quarter of them a heavy one (J ~ 0.6)."""
    w = text.split(" ")
    at = len(w) // 2 - words // 2
    w[at:at + words] = [f"zq{rng.randrange(10**6)}" for _ in range(words)]
    return " ".join(w)


def unrelated_texts() -> list[str]:
    """English paragraphs that no demo page holds: docstrings of standard modules the demo
    web (``pipeline.demoweb``) does not draw its articles from."""
    import importlib
    import warnings

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in ("fileinput", "webbrowser", "poplib", "zipapp", "compileall", "code", "codeop", "pyclbr",
                     "getpass", "wsgiref.simple_server", "xml.dom.minidom", "tomllib", "venv", "nntplib"):
            try:
                mod = importlib.import_module(name)
            except ImportError:
                continue
            for _, obj in sorted(vars(mod).items()):
                doc = inspect.getdoc(obj) if callable(obj) else None
                if doc and len(doc.split()) >= 40 and doc not in out:
                    out.append(doc)
    return out


def jaccard(a: str, b: str) -> float:
    x, y = set(doc_shingles(a, 5)), set(doc_shingles(b, 5))
    return len(x & y) / len(x | y)


@pytest.fixture(scope="module")
def world(demo_run, tmp_path_factory):
    """A copy of the demo's clean/ and tokens/, and a reference: every other corpus document
    (a third unchanged, a third with one word changed, a third with a quarter), unrelated texts,
    and four bad lines. Also the oracle's best Jaccard of each side."""
    work = tmp_path_factory.mktemp("cmp") / "work"
    for folder in ("clean", "tokens"):
        shutil.copytree(demo_run / folder, work / folder)
    docs, rng = corpus(work), random.Random(0)
    texts = []
    for k, d in enumerate(docs[::2]):
        texts.append(d["text"] if k % 3 == 0 else edit(d["text"], 1 if k % 3 == 1 else len(d["text"].split()) // 4, rng))
    texts += [t for t in unrelated_texts() if max(jaccard(t, d["text"]) for d in docs) < 0.3][:N_UNRELATED]
    assert len(texts) == len(docs[::2]) + N_UNRELATED
    ref = work.parent / "webtext.test.jsonl"
    with ref.open("w") as f:
        for i, t in enumerate(texts):
            f.write(json.dumps({"id": 255000 + i, "ended": i % 2 == 0, "length": len(t.split()), "text": t}) + "\n")
            if i == 3:
                f.write("{not json\n" + json.dumps({"id": 9, "ended": True, "length": 0}) + "\n")
                f.write(json.dumps({"id": 10, "text": "  \n "}) + "\n\n" + json.dumps([1, 2]) + "\n")
    pairs = [[jaccard(t, d["text"]) for d in docs] for t in texts]
    ref_best = [max(row) for row in pairs]
    corpus_best = [max(col) for col in zip(*pairs)]
    return work, ref, docs, texts, ref_best, corpus_best


def test_planted_shares_match_the_oracle(world):
    work, ref, docs, texts, ref_best, corpus_best = world
    r = compare(work, ref, CompareConfig(workers=2))
    planted = len(docs[::2])
    assert r["reference_docs"] == len(texts) == planted + N_UNRELATED
    assert r["corpus_docs"] == len(docs)
    assert r["bad"] == {"not_json": 1, "no_text": 2, "empty_text": 1} and r["bad_lines"] == 4
    # the edits are what they claim: a third exact, a third near (one word), a third far (a quarter)
    light, heavy = ref_best[1:planted:3], ref_best[2:planted:3]
    assert all(0.8 <= j < 1 for j in light) and all(0.3 < j < 0.8 for j in heavy)
    assert all(j < 0.3 for j in ref_best[planted:])
    by_t = {t["jaccard"]: t for t in r["thresholds"]}
    assert sorted(by_t) == [0.5, 0.7, 0.8, 0.9]
    for t, row in by_t.items():
        assert row["reference_found"] == sum(j >= t for j in ref_best), t
        assert row["corpus_in_reference"] == sum(j >= t for j in corpus_best), t
    # at the dedup threshold: exactly the exact and lightly edited plants
    found = by_t[0.8]["reference_found"]
    assert found == len(range(0, planted, 3)) + len(light)
    assert by_t[0.8]["reference_found_share"] == found / len(texts)
    assert abs(by_t[0.5]["corpus_in_reference_share"] - 0.5) < 0.1
    m = r["missing"]
    assert m["docs"] == len(texts) - found and m["examples"][0] in {255000 + i for i in range(len(texts))}
    assert m["domains"] == [] and "OpenWebText2" in m["domains_note"]
    assert "docs.python.org" not in json.dumps(m)      # no url field: nothing made up
    assert json.loads((work / "reports" / "compare.json").read_text()) == json.loads(json.dumps(r))


def test_estimate_mode_and_thresholds(world):
    work, ref, _, _, ref_best, _ = world
    r = compare(work, ref, CompareConfig(dedup=DedupConfig(threshold=0.85), thresholds=[0.6], verify="estimate", workers=1))
    assert [t["jaccard"] for t in r["thresholds"]] == [0.6, 0.85]          # the dedup threshold added
    for t in r["thresholds"]:          # the MinHash estimate's sd is ~0.03: only a pair near t could differ
        if not any(abs(j - t["jaccard"]) < 0.1 for j in ref_best):
            assert t["reference_found"] == sum(j >= t["jaccard"] for j in ref_best)


def test_url_field_names_missing_domains(world, tmp_path):
    work, _, docs, texts, ref_best, _ = world
    ref = tmp_path / "owt2.jsonl"
    with ref.open("w") as f:
        for i, t in enumerate(texts):
            url = docs[2 * i]["url"] if i < len(docs[::2]) else f"https://www.docs.python.org/3/library/{i}.html"
            f.write(json.dumps({"text": t, "url": url}) + "\n")
    m = compare(work, ref, CompareConfig(workers=1))["missing"]
    assert m["with_domain"] == len(texts)
    top = {d["domain"]: d for d in m["domains"]}
    assert top["docs.python.org"]["missing"] == top["docs.python.org"]["reference"] == N_UNRELATED
    assert top["docs.python.org"]["found_share"] == 0
    assert sum(d["missing"] for d in m["domains"]) == m["docs"] == sum(j < 0.8 for j in ref_best)


def webtext(*args):
    return subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", *args], capture_output=True, text=True, timeout=300)


def test_cli_with_a_run_reports_perplexity(world):
    work, ref, *_ = world
    t = webtext("--workdir", str(work), "train", "--model", "tiny", "--steps", "2", "--batch-size", "2",
                "--block-size", "32", "--device", "cpu", "--compile", "off", "--run-name", "demo")
    assert t.returncode == 0, t.stderr[-2000:]
    r = webtext("--workdir", str(work), "compare", "--reference", str(ref), "--run-name", "demo", "--ppl-docs", "8",
                "--device", "cpu", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    p = json.loads(r.stdout)["perplexity"]
    assert p["run_name"] == "demo" and p["docs"] == 8 and p["tokens"] > 0
    assert math.isfinite(p["token_ppl"]) and p["token_ppl"] > 1 and math.isfinite(p["bits_per_byte"])
    assert p["found"]["docs"] + p["missing"]["docs"] == 8
    human = webtext("--workdir", str(work), "compare", "--reference", str(ref))
    assert human.returncode == 0 and "reference found" in human.stdout and "(dedup threshold)" in human.stdout


def test_missing_or_empty_reference_is_one_line_exit_2(world, tmp_path):
    work = world[0]
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    only_bad = tmp_path / "bad.jsonl"
    only_bad.write_text("nope\n{}\n")
    for path, words in ((tmp_path / "absent.jsonl", "not found"), (empty, "is empty"), (only_bad, "no line with a text")):
        r = webtext("--workdir", str(work), "compare", "--reference", str(path))
        assert r.returncode == 2, r.stderr
        assert words in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_lsh_recall_at_the_lowest_threshold_matches_theory(tmp_path):
    """2,000 pairs at J ~ 0.503 (300 random words, 94 of them replaced as a block): the share
    found is the LSH's chance for such a pair, 1 - (1 - J^r)^b (0.993), within sampling error,
    and no unrelated document is matched."""
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(100_000)])
    n, words, cut = 2000, 300, 94
    base = rng.integers(0, len(vocab), (n, words))
    edited = base.copy()
    edited[:, 100:100 + cut] = rng.integers(0, len(vocab), (n, cut))
    j = (words - 4 - cut - 4) / (words - 4 + cut + 4)
    (tmp_path / "clean").mkdir()
    texts = [" ".join(vocab[row]) for row in edited]
    pq.write_table(pa.table({"doc_id": [f"d{i}" for i in range(n)], "text": texts}), tmp_path / "clean" / "clean-00000.parquet")
    ref = tmp_path / "ref.jsonl"
    with ref.open("w") as f:
        for row in base:
            f.write(json.dumps({"text": " ".join(vocab[row])}) + "\n")
        for _ in range(500):                              # unrelated
            f.write(json.dumps({"text": " ".join(vocab[rng.integers(0, len(vocab), words)])}) + "\n")
    cfg = CompareConfig(thresholds=[0.5], workers=2)
    r = compare(tmp_path, ref, cfg)
    t = r["thresholds"][0]
    p = 1 - (1 - j ** cfg.rows) ** cfg.bands
    assert t["jaccard"] == 0.5 and abs(t["lsh_recall"] - 1 + (1 - 0.5 ** cfg.rows) ** cfg.bands) < 1e-12
    sd = math.sqrt(n * p * (1 - p))
    assert abs(t["reference_found"] - n * p) <= 4 * sd + 1, (t["reference_found"], n * p)
    assert t["reference_found"] < n                                  # some are missed, as theory says
    assert t["reference_found"] == t["corpus_in_reference"]        # one-to-one pairs
    assert r["thresholds"][1]["reference_found"] == 0               # J 0.503 < the dedup threshold 0.8

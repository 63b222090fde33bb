"""``webtext report`` at scale: its numbers stream over the shards (peak memory does not
grow with the corpus's text), it reads the text of only the documents it shows, and its
dedup examples are near-duplicates with the differing words highlighted."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import ROOT, doc_row, doc_table, make_context

from webtext.pipeline.demoweb import docstring_paragraphs
from webtext.pipeline.report import collect_report, render_html
from webtext.pipeline.reportdedup import word_diff
from webtext.pipeline.reportstats import IntHistogram
from webtext.pipeline.schemas import CLUSTERS
from webtext.stages import dedup

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
    (workdir / "dedup" / "_meta").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([dict(zip(CLUSTERS.names, c)) for c in clusters], schema=CLUSTERS),
                   workdir / "dedup" / "_meta" / "clusters.parquet")
    return {"text_bytes": total}


PEAK = """
import json, sys
from webtext.pipeline.report import collect_report

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
    out = subprocess.run([sys.executable, "-c", PEAK, str(workdir)], check=False, capture_output=True, text=True,
                         cwd=ROOT, timeout=600)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_report_memory_is_bounded_by_a_shard_not_by_the_corpus_text(tmp_path):
    """Three times the text (58 -> 174 MB in 2 -> 6 shards of 20 kB documents) must not
    raise the report's peak memory: reading the text column of every shard adds at least
    the added text itself; streaming holds a batch of a shard's small columns and the row
    groups of the example documents, the same in both."""
    small, large = write_large_docs(tmp_path / "small", shards=2), write_large_docs(tmp_path / "large", shards=6)
    assert large["text_bytes"] > 170e6
    m_small, m_large = report_peak(tmp_path / "small"), report_peak(tmp_path / "large")
    assert (m_small["docs"], m_large["docs"]) == (3000, 9000)
    assert m_small["examples"] == m_large["examples"] == 1           # the near-duplicate, read from two shards
    added = large["text_bytes"] - small["text_bytes"]
    grew_small, grew_large = (m["peak"] - m["before"] for m in (m_small, m_large))
    # Measured: ~155 MiB for both (imports of compute kernels and thread pools, and decoding
    # the dictionary page of the two row groups holding an example), +-15 MiB from run to
    # run; reading every shard's text column grew by 310 and 554 MiB (the previous report).
    assert grew_large - grew_small < added / 4, (grew_small, grew_large, added)


def _all(folder: Path, pattern: str, columns: list[str]) -> pa.Table:
    return pa.concat_tables(pq.read_table(f, columns=columns) for f in sorted(folder.glob(pattern)))


def test_near_duplicate_examples_show_the_differing_words(demo_run):
    """On a real pipeline output: the examples are the near-duplicate removals with the
    lowest similarity, each beside its kept document, the words that differ in <del>/<ins>;
    the cluster sizes streamed as run lengths equal a count over the whole audit table."""
    import html

    r = collect_report(demo_run)["dedup"]
    clusters = pq.read_table(demo_run / "dedup" / "_meta" / "clusters.parquet").to_pylist()
    assert r["cluster_sizes"] == sorted(Counter(Counter(c["cluster_id"] for c in clusters).values()).items())
    near = sorted((c for c in clusters if c["reason"] == "near_duplicate"), key=lambda c: (c["similarity"], c["doc_id"]))
    assert len(near) >= 3 and r["examples_of"] == "near_duplicate"
    assert [(e["removed_id"], e["kept_id"]) for e in r["examples"]] == [(c["doc_id"], c["duplicate_of"]) for c in near[:3]]
    docs = _all(demo_run / "docs", "docs-*.parquet", ["doc_id", "text"])
    text = dict(zip(docs["doc_id"].to_pylist(), docs["text"].to_pylist()))
    page = render_html(collect_report(demo_run))
    section = page.split('<section id="dedup">', 1)[1].split("</section>", 1)[0]
    for e in r["examples"]:
        removed, kept = text[e["removed_id"]], text[e["kept_id"]]
        changed = [seg for seg in e["diff"] if seg["op"] in ("replace", "delete", "insert")]
        assert changed
        for seg in e["diff"]:
            if seg["op"] == "skip":
                continue
            assert seg["removed"] in removed and seg["kept"] in kept
            assert (seg["removed"].lower().split() == seg["kept"].lower().split()) == (seg["op"] == "equal")
        for seg in changed:
            if seg["removed"]:
                assert f"<del>{html.escape(seg['removed'])}</del>" in section
            if seg["kept"]:
                assert f"<ins>{html.escape(seg['kept'])}</ins>" in section
    assert "lowest similarity" in section


def test_exact_duplicates_are_shown_only_without_near_duplicates(tmp_path):
    paras = docstring_paragraphs()
    base, other = " ".join(paras[0:6]), " ".join(paras[10:16])
    (tmp_path / "docs").mkdir()
    pq.write_table(doc_table([doc_row("a1", base, karma=5), doc_row("b1", other)]),
                   tmp_path / "docs" / "docs-00000.parquet")
    pq.write_table(doc_table([doc_row("a2", base.upper() + "  ", karma=40)]), tmp_path / "docs" / "docs-00001.parquet")
    dedup.run(make_context(tmp_path, dedup={"partitions": 2}))
    r = collect_report(tmp_path)["dedup"]
    assert r["examples_of"] == "exact_duplicate" and r["reasons"] == [["exact_duplicate", 1]]
    (e,) = r["examples"]
    assert (e["removed_id"], e["kept_id"]) == ("a1", "a2")
    assert {seg["op"] for seg in e["diff"]} <= {"equal", "skip"}     # the same words, upper-cased
    assert e["diff"][0]["removed"].lower().split() == e["diff"][0]["kept"].lower().split() != e["diff"][0]["kept"].split()
    assert "removed no near-duplicate" in render_html(collect_report(tmp_path))


def test_word_diff_keeps_context_around_differences_and_escapes_html():
    words = [f"w{i}" for i in range(1000)]
    kept = " ".join(words)
    removed = " ".join(words[:500] + ["<script>alert(1)</script>"] + words[501:])
    diff = word_diff(removed, kept)
    assert [seg["op"] for seg in diff] == ["skip", "equal", "replace", "equal", "skip"]
    assert diff[0]["words"] == 500 - 12 and diff[-1]["words"] == 499 - 12
    assert diff[2] == {"op": "replace", "removed": "<script>alert(1)</script> ", "kept": "w500 "}
    from webtext.pipeline.reportdedup import render_examples

    page = render_examples({"examples_of": "near_duplicate", "examples": [
        {"removed_id": "x", "kept_id": "y", "reason": "near_duplicate", "similarity": 0.9, "diff": diff}]}, str)
    assert "<script>" not in page and "<del>&lt;script&gt;alert(1)&lt;/script&gt; </del>" in page
    assert "[… 488 words …]" in page


def test_streamed_histogram_equals_numpy_over_the_whole_column():
    rng = np.random.default_rng(1)
    chunks = [rng.integers(-5, 100_000, size=n) ** (1 + (i % 2)) % 3_000_000 for i, n in enumerate((1, 7, 5000, 300))]
    h = IntHistogram()
    for c in chunks:
        h.add(pa.array(c))
    v = np.concatenate(chunks)
    for log in (False, True):
        got = h.summary(log=log)
        x = v[v > 0] if log else v
        edges = np.geomspace(x.min(), x.max() + 1, 31) if log else 30
        counts, e = np.histogram(x.astype(float), bins=edges)
        assert got["counts"] == counts.tolist() and got["edges"] == [float(y) for y in e] and got["n"] == len(x)
        for q, k in ((50, "median"), (90, "p90")):
            assert got[k] == pytest.approx(np.percentile(x, q), rel=1e-12)


def test_cluster_sizes_are_right_even_when_a_cluster_is_split_across_the_file(tmp_path, monkeypatch):
    """Run lengths count a cluster whose rows are apart twice; the check against the rows
    that name their own cluster catches it and counts per cluster_id."""
    from webtext.pipeline import reportdedup, reportstats

    rows = [("a", "a", True, None, None, None), ("b", "a", False, "near_duplicate", "a", 0.9),
            ("c", "c", True, None, None, None), ("d", "c", False, "exact_duplicate", "c", 1.0),
            ("e", "a", False, "near_duplicate", "a", 0.8)]                 # cluster a again, after c
    (tmp_path / "dedup" / "_meta").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([dict(zip(CLUSTERS.names, r)) for r in rows], schema=CLUSTERS),
                   tmp_path / "dedup" / "_meta" / "clusters.parquet")
    monkeypatch.setattr(reportstats, "BATCH_ROWS", 2)                     # runs cross batches
    s = reportdedup.scan_clusters(tmp_path / "dedup" / "_meta" / "clusters.parquet")
    assert s["cluster_sizes"] == [(2, 1), (3, 1)] and s["removed"] == 3
    assert [c["doc_id"] for c in s["candidates"]] == ["e", "b"] and s["examples_of"] == "near_duplicate"
    assert s["reasons"] == [["near_duplicate", 2], ["exact_duplicate", 1]]


def test_numbers_do_not_depend_on_the_batch_size(demo_run, monkeypatch):
    """Folding 7 rows at a time gives the report of whole shards (counts, ties in first-seen
    order, histograms, medians, cluster sizes and examples)."""
    from webtext.pipeline import reportstats

    whole = collect_report(demo_run)
    monkeypatch.setattr(reportstats, "BATCH_ROWS", 7)
    again = collect_report(demo_run)
    again["meta"]["generated_utc"] = whole["meta"]["generated_utc"]        # the only clock reading
    assert again == whole
    assert whole["sources"]["urls"] > 7 and whole["documents"]["docs"] > 7


# --- the page: header, units, drop reasons, axis labels, alt text, MFU -------------------

IMG = re.compile(r'<img alt="([^"]*)" src="data:image/png;base64,')


def _record_axes(monkeypatch) -> list[list[tuple[str, str]]]:
    """Every figure the report embeds, as the (xlabel, ylabel) of each of its axes."""
    from webtext.pipeline import reportplots

    seen, png = [], reportplots.png

    def recording(fig, alt):
        seen.append([(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes])
        return png(fig, alt)

    monkeypatch.setattr(reportplots, "png", recording)
    return seen


def test_report_page_is_headed_labelled_and_described(demo_run, monkeypatch):
    """The demo's report: a header with the time, work directory and each stage's config;
    the funnel in each stage's units; one drop-reason chart per stage that dropped
    anything; every axis labelled and every plot described in its alt text."""
    from datetime import UTC, datetime

    axes = _record_axes(monkeypatch)
    page = render_html(collect_report(demo_run))
    header = page.split("<header>", 1)[1].split("</header>", 1)[0]
    stamp = re.search(r"generated (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", header).group(1)
    age = datetime.now(UTC) - datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    assert 0 <= age.total_seconds() < 300
    assert f"<code>{html.escape(str(demo_run.resolve()))}</code>" in header
    dedup_cfg = json.loads((demo_run / "dedup" / "_meta" / "config.json").read_text())["dedup"]
    config = header.split("<details>", 1)[1].split("</details>", 1)[0]
    assert "[dedup]" in config and "[harvest]" in config and "[run]" in config
    assert all(f"{k} = {html.escape(json.dumps(v))}" in config for k, v in dedup_cfg.items())

    alts = IMG.findall(page)
    assert page.count("<img") == len(alts) == len(axes) > 10
    assert all(len(a) > 30 and ":" in a for a in alts)                  # what it shows, then its numbers
    assert all(x and y for fig in axes for x, y in fig), axes

    stats = {s: json.loads((demo_run / f / "_meta" / "stats.json").read_text())
             for s, f in (("harvest", "urls"), ("fetch", "warc"), ("extract", "docs"), ("dedup", "dedup"),
                          ("decontaminate", "clean"), ("shard", "tokens"))}
    units = {"harvest": ("submissions", "URLs"), "fetch": ("URLs", "pages"), "extract": ("pages", "documents")}
    funnel = page.split('<section id="funnel">', 1)[1].split("</section>", 1)[0]
    (funnel_alt,) = [a for a in alts if a.startswith("Funnel")]
    for stage, st in stats.items():
        u_in, u_out = units.get(stage, ("documents", "documents"))
        assert f"<td>{st['in']:,} {u_in}</td><td>{st['out']:,} {u_out}</td>" in funnel
        assert f"{stage}: {st['in']:,} {u_in} in, {st['out']:,} {u_out} out" in funnel_alt
        charts = [a for a in alts if a.startswith(f"Bar chart of {u_in} dropped by reason in {stage}:")]
        assert len(charts) == (1 if st["dropped"] else 0), stage
        for reason, n in st["dropped"].items():
            assert f"{reason} {n:,}" in charts[0]
    assert sum(bool(st["dropped"]) for st in stats.values()) >= 4         # the demo drops in most stages
    assert ("submissions in, URLs out", "URLs in, pages out", "pages in, documents out") == tuple(
        y for fig in axes if len(fig) == len(stats) for _, y in fig[:3])  # the funnel's panels


def test_header_names_the_bucket_and_its_local_scratch(demo_run):
    r = collect_report(demo_run, source="s3://corpus/demo")
    assert r["meta"]["workdir"] == "s3://corpus/demo" and r["meta"]["scratch"] == str(demo_run.resolve())
    header = render_html(r).split("</header>", 1)[0]
    assert (f"work directory <code>s3://corpus/demo</code> (local scratch "
            f"<code>{html.escape(str(demo_run.resolve()))}</code>)") in header


def test_terminal_funnel_gives_each_number_its_unit(demo_run):
    import io

    from rich.console import Console

    from webtext.pipeline.funnel import collect, render

    out = io.StringIO()
    f = collect(demo_run)
    render(f, Console(file=out, width=300))
    harvest, fetch, extract = f["stages"][:3]
    for s, u_in, u_out in ((harvest, "submissions", "URLs"), (fetch, "URLs", "pages"), (extract, "pages", "documents")):
        assert (s["unit_in"], s["unit_out"]) == (u_in, u_out)
        assert f"{s['in']:,} {u_in}" in out.getvalue() and f"{s['out']:,} {u_out}" in out.getvalue()


def test_mfu_absent_names_the_reason():
    from webtext.pipeline.report import mfu_absent

    assert mfu_absent({"device": "cpu"}).startswith("MFU not recorded: a CPU run")
    assert "peak FLOP/s of this GPU (cuda:0) is not known" in mfu_absent({"device": "cuda:0"})
    assert "no summary.json" in mfu_absent({})


def test_every_plot_needs_its_axis_labels_and_alt_text():
    from webtext.pipeline import reportplots

    fig, ((ax,),) = reportplots.figure()
    ax.plot([1, 2], [3, 4])
    ax.set_xlabel("step")
    with pytest.raises(ValueError, match="axis label"):
        reportplots.png(fig, "Line chart of something")
    fig, ((ax,),) = reportplots.figure()
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    with pytest.raises(ValueError, match="alt text"):
        reportplots.png(fig, " ")


def test_training_shows_mfu_or_says_why_not(demo_run, tmp_path, monkeypatch):
    """Two real CPU runs on the demo's tokens: without a peak FLOP/s the metrics have no
    MFU and the page says it was a CPU run; with ``peak_tflops`` set the MFU is plotted
    (that run's metrics in CSV, read as the JSONL ones are)."""
    from webtext.model.train import train
    from webtext.pipeline.config import TrainConfig

    base = {"model": "tiny", "steps": 4, "batch_size": 2, "block_size": 32, "warmup_steps": 1, "eval_every": 2,
            "eval_tokens": 64, "log_every": 1}
    for name, peak, fmt in (("cpu-plain", 0.0, "jsonl"), ("cpu-peak", 0.01, "csv")):
        train(demo_run / "tokens", tmp_path / "runs",
              TrainConfig(**base, run_name=name, peak_tflops=peak, metrics_format=fmt), log=lambda *_: None)
    axes = _record_axes(monkeypatch)
    r = collect_report(tmp_path)
    assert r["training"]["cpu-plain"]["mfu_absent"].startswith("MFU not recorded: a CPU run")
    assert "mfu_absent" not in r["training"]["cpu-peak"] and len(r["training"]["cpu-peak"]["mfu"]) == 4
    assert [s for s, _ in r["training"]["cpu-peak"]["val_loss"]] == [2, 4]
    page = render_html(r)
    assert '<p class="absent">MFU not recorded: a CPU run' in page and page.count("MFU not recorded") == 1
    alts = IMG.findall(page)
    (mfu,) = [a for a in alts if "model FLOPs utilization" in a]
    assert "run cpu-peak" in mfu and "% at step 4" in mfu
    assert ("step", "MFU (% of peak FLOP/s)") in [lab for fig in axes for lab in fig]
    assert [a.split(" by step for run ")[1].split(":")[0] for a in alts if a.startswith("Line chart")] == \
        ["cpu-peak"] * 3 + ["cpu-plain"] * 2                            # loss, tokens/s (and MFU) per run

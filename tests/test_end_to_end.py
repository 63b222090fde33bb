"""The demo pipeline end to end: funnel, schemas, reruns that do nothing, and SIGKILL recovery."""

import os
import shutil
import signal
import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from webtext.pipeline import schemas
from webtext.pipeline.config import load_config
from webtext.pipeline.demo import demo_overrides
from webtext.pipeline.demoweb import DemoProxy, build_demo_web
from webtext.pipeline.executor import Context
from webtext.pipeline.funnel import collect
from webtext.pipeline.run import run_all
from webtext.stages.urls import normalize_url_id

ROOT = Path(__file__).resolve().parent.parent


def _cli(workdir, *args, **kw):
    return [sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(workdir), *args]


def test_demo_funnel_and_schemas(demo_run):
    f = collect(demo_run)
    stages = {s["stage"]: s for s in f["stages"]}
    assert list(stages) == ["harvest", "fetch", "extract", "dedup", "decontaminate", "shard"]
    for s in stages.values():
        assert s["in"] == s["out"] + sum(s["dropped"].values()), s["stage"]
    chain = ["harvest", "fetch", "extract", "dedup", "decontaminate", "shard"]
    for a, b in zip(chain, chain[1:]):
        assert stages[a]["out"] == stages[b]["in"]
    # The planted problems are found.
    assert stages["fetch"]["dropped"]["http_4xx"] >= 3 and stages["fetch"]["dropped"]["not_html"] == 2
    assert stages["fetch"]["dropped"]["robots_disallowed"] == 2
    assert stages["extract"]["dropped"]["too_short"] >= 3
    assert stages["dedup"]["dropped"]["exact_duplicate"] >= 3 and stages["dedup"]["dropped"]["near_duplicate"] >= 2
    assert stages["decontaminate"]["info"]["documents_cut"] == 1       # spans policy: the planted passage cut out
    assert stages["decontaminate"]["dropped"]["wikipedia_url"] >= 3
    assert f["tokens"]["train"]["tokens"] > 10_000 and f["tokens"]["val"]["docs"] >= 1
    # Every folder opens with plain pyarrow and has its schema.
    for folder, pattern in [("urls", "urls-*.parquet"), ("docs", "docs-*.parquet"),
                            ("dedup", "dedup-*.parquet"), ("clean", "clean-*.parquet")]:
        for p in sorted((demo_run / folder).glob(pattern)):
            assert pq.read_table(p).schema.equals(schemas.stored(schemas.BY_FOLDER[folder]), check_metadata=True)
    for p in sorted((demo_run / "tokens").glob("v*/*.arrow")):
        assert pa.ipc.open_file(pa.memory_map(str(p))).schema.equals(schemas.TOKENS, check_metadata=True)
    for folder in ("urls", "warc", "docs", "dedup", "clean", "tokens"):
        assert (demo_run / folder / "_meta" / "config.json").exists()
    assert (demo_run / "state.sqlite").exists()


def _fetchlog(workdir: Path) -> dict[str, dict]:
    """url_id -> the URL's fetch log row (the demo fetches each URL once)."""
    rows = _table(workdir / "warc", "fetchlog-*.parquet").to_pylist()
    assert len({r["url_id"] for r in rows}) == len(rows)
    return {r["url_id"]: r for r in rows}


def _ids(urls) -> set[str]:
    return {normalize_url_id(u)[0] for u in urls}


def test_demo_recovers_dead_links_from_the_archives(demo_run, tmp_path):
    """Each planted dead link with a capture is recovered from its archive (Common Crawl
    first), reaches the corpus, and is no fetch drop; the misses stay drops; live pages
    are never looked up."""
    p = build_demo_web(tmp_path, n_articles=60, months=2).planted     # what run_demo planted (seeded)
    log = _fetchlog(demo_run)
    recovered = {"commoncrawl": _ids(p["recovered_cc"] + p["parked"]),
                 "wayback": _ids(p["recovered_wayback"] + p["soft_404"])}
    misses = _ids(p["dead"] + p["error"] + p["archive_miss"])
    for source, ids in recovered.items():
        for i in ids:
            r = log[i]
            assert (r["archive"], r["source"], r["error"], r["status"]) == ("recovered", source, None, 200), r
            assert r["captured_at"].timestamp() < 1767225600            # captured in December 2025, before the submission
    for i in misses:
        assert log[i]["archive"] == "miss" and log[i]["error"] in ("http_4xx", "http_5xx") and not log[i]["source"]
    looked_up = set().union(*recovered.values()) | misses
    assert {i for i, r in log.items() if r["archive"]} == looked_up          # no lookup for a live page
    assert all(r["source"] == "live" for i, r in log.items() if i not in looked_up and not r["error"])
    f = {s["stage"]: s for s in collect(demo_run)["stages"]}["fetch"]
    assert f["dropped"]["http_4xx"] == len(p["dead"] + p["archive_miss"]) and f["dropped"]["http_5xx"] == 2
    assert "soft_404" not in f["dropped"] and "parked_domain" not in f["dropped"]
    assert (f["info"]["recovered_commoncrawl"], f["info"]["recovered_wayback"]) == (3, 3)
    assert f["info"]["archive_miss"] == len(misses) and "archive_error" not in f["info"]
    docs = _table(demo_run / "clean", "clean-*.parquet").to_pylist()
    in_corpus = {d["doc_id"]: d for d in docs}
    for source, ids in recovered.items():                 # the recovered articles pass every filter
        assert all(in_corpus[i]["source"] == source for i in ids)
    assert not misses & set(in_corpus)


def test_docs_folders_schemas_match_code():
    page = (ROOT / "docs" / "folders.md").read_text()
    block = page.split("<!-- schemas:begin -->\n", 1)[1].split("<!-- schemas:end -->", 1)[0]
    assert block == schemas.markdown()


def test_second_run_does_no_work(demo_run):
    inp = demo_run / "demo_input"
    r = subprocess.run(_cli(demo_run, "run", "--skip-train", "--dumps", str(inp / "RS_2026-01.zst"),
                            "--benchmark", str(inp / "demo_benchmark.jsonl")),
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "Nothing to do: every stage is up to date" in r.stderr
    assert "shard(s) done" not in r.stderr.replace("already done", "")


def _table(folder: Path, pattern: str) -> pa.Table:
    return pa.concat_tables([pq.read_table(p) for p in sorted(folder.glob(pattern))])


def _asked(requests: list[tuple[str, str]]) -> dict[str, set[str]]:
    """archive service -> the page URLs its requests asked about (data: the WARC files)."""
    from urllib.parse import parse_qs, urlsplit

    out: dict[str, set[str]] = {"cc_index": set(), "cc_data": set(), "wayback": set()}
    for service, path in requests:
        if path.startswith("/web/"):
            out[service].add(path.split("id_/", 1)[1])
        elif service == "cc_data":
            out[service].add(urlsplit(path).path)
        elif "url" in (q := parse_qs(urlsplit(path).query)):
            out[service].add(q["url"][0])
    return out


def test_sigkill_during_extract_then_rerun_gives_identical_corpus(tmp_path):
    web = build_demo_web(tmp_path / "input", n_articles=60)
    ref = tmp_path / "ref"
    with DemoProxy(web.pages, web.archive) as proxy:
        overrides = demo_overrides(web, proxy.url, steps=1, workers=1)
        overrides["harvest"]["num_shards"] = 8
        ctx = Context(ref, load_config(None, overrides))
        run_all(ctx, ["harvest", "fetch"])
        ctx.close()
    # The archives were asked about the dead links only: Common Crawl about each, the
    # Wayback Machine about those Common Crawl lacks; one record read per CC recovery.
    p = web.planted
    dead = set(p["dead"] + p["error"] + p["archive_miss"] + p["recovered_cc"] + p["recovered_wayback"]
               + p["parked"] + p["soft_404"])
    asked = _asked(proxy.archive_requests)
    assert asked["cc_index"] == dead and asked["wayback"] == dead - set(p["recovered_cc"] + p["parked"])
    assert len([s for s, _ in proxy.archive_requests if s == "cc_data"]) == 3
    killed = tmp_path / "killed"
    killed.mkdir()
    for folder in ("urls", "warc"):        # the same fetched bytes for both runs
        shutil.copytree(ref / folder, killed / folder)
    ctx = Context(ref, load_config(None, overrides))
    run_all(ctx, ["extract", "dedup", "decontaminate", "shard"])
    ctx.close()

    config = tmp_path / "webtext.toml"
    config.write_text("[harvest]\nnum_shards = 8\n")
    args = _cli(killed, "--workers", "1", "--config", str(config), "run", "--skip-train",
                "--dumps", str(web.dump), "--benchmark", str(web.benchmark))
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    done_dir = killed / "docs" / "_meta" / "done"
    deadline = time.time() + 120
    while time.time() < deadline and not list(done_dir.glob("extract-*.json")):
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = len(list(done_dir.glob("extract-*.json")))
    assert 1 <= finished < 8, f"{finished} extract shards done at kill time"

    r = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{finished} already done" in r.stderr          # only unfinished shards reran
    for folder, pattern in [("docs", "docs-*.parquet"), ("clean", "clean-*.parquet")]:
        assert _table(killed / folder, pattern).equals(_table(ref / folder, pattern)), folder
    names = sorted(p.relative_to(ref / "tokens").as_posix() for p in (ref / "tokens").glob("v*/*.arrow")) + ["manifest.json"]
    assert names == sorted(p.relative_to(killed / "tokens").as_posix()
                           for p in (killed / "tokens").glob("v*/*.arrow")) + ["manifest.json"]
    for name in names:
        assert (killed / "tokens" / name).read_bytes() == (ref / "tokens" / name).read_bytes()
    assert not list(killed.rglob("*.tmp-*"))


def test_report_html_is_self_contained_and_has_every_section(demo_run):
    import re

    r = subprocess.run(_cli(demo_run, "report"), capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    page = (demo_run / "reports" / "report.html").read_text()
    sections = re.findall(r'<section id="(\w+)"', page)
    # the demo fixture stops at shard: no training run yet, everything else is there
    assert sections == ["funnel", "sources", "fetch", "documents", "filters", "dedup", "decontamination", "tokens",
                        "refresh"]
    assert not re.findall(r'(?:src|href)\s*=\s*["\']?(?:https?:)?//', page)    # nothing external
    assert page.count("data:image/png;base64,") >= 8
    assert "demo_benchmark" in page and "near_duplicate" in page
    r = subprocess.run(_cli(demo_run, "report", "--json"), capture_output=True, text=True, timeout=300, cwd=ROOT)
    data = json.loads((demo_run / "reports" / "report.json").read_text())
    assert r.returncode == 0 and data["tokens"]["versions"][-1]["version"] == 2
    assert data["fetch"]["pages"] == data["funnel"]["stages"][1]["in"]


def test_report_training_section_and_terminal_progress(tmp_path):
    import io

    from rich.console import Console

    from webtext.pipeline.config import load_config
    from webtext.pipeline.executor import Context, _Progress
    from webtext.pipeline.report import collect_report, render_html

    run = tmp_path / "runs" / "r1"
    run.mkdir(parents=True)
    run.joinpath("metrics.jsonl").write_text("".join(json.dumps(
        {"step": i, "loss": 10 - i, "tokens_per_s": 1000.0, "mfu": 0.4, **({"val_loss": 9.5} if i == 5 else {})}) + "\n"
        for i in range(1, 6)))
    r = collect_report(tmp_path)
    assert r["training"]["r1"]["val_loss"] == [[5, 9.5]] and r["training"]["r1"]["mfu"][-1] == [5, 0.4]
    assert "<section id=\"training\">" in render_html(r)
    out = io.StringIO()
    ctx = Context(tmp_path / "w", load_config(None, {}), Console(file=out, force_terminal=True, width=120))
    with _Progress(ctx, "extract", 3, "", None) as bar:      # tasks that do not count records: shards
        for _ in range(3):
            bar.task_done()
    ctx.close()
    assert "extract: 3 shard(s) done" in out.getvalue()


def _corpus_ids(workdir: Path, version: int = 0) -> set[str]:
    from webtext.model.data import read_manifest
    from webtext.stages.shard import read_tokens

    m = read_manifest(workdir / "tokens", version=version)
    return {d for f in m["shards"] for d in read_tokens(workdir / "tokens" / f["file"])["doc_id"].to_pylist()}


def test_takedown_removes_a_page_recovered_from_an_archive(demo_run, tmp_path):
    """`webtext remove` takes a recovered page out of the next corpus version like any
    other; the fetch log still says where it came from, and the earlier version keeps it."""
    from typer.testing import CliRunner

    from webtext.pipeline.cli import app

    work = tmp_path / "w"
    shutil.copytree(demo_run, work)
    before = _corpus_ids(work)
    old = json.loads((work / "tokens" / "manifest.json").read_text())["version"]
    log = _fetchlog(work)
    recovered = sorted((r for r in log.values() if r["archive"] == "recovered" and r["url_id"] in before),
                       key=lambda r: r["url_id"])
    assert {r["source"] for r in recovered} == {"commoncrawl", "wayback"}
    row = next(r for r in recovered if r["source"] == "wayback")
    config = tmp_path / "webtext.toml"
    config.write_text("[shard]\nval_fraction = 0.05\n")             # the demo's split
    r = CliRunner().invoke(app, ["--workdir", str(work), "--config", str(config), "remove", "--url", row["url"],
                                 "--reason", "owner request"])
    assert r.exit_code == 0, r.output
    assert json.loads((work / "tokens" / "manifest.json").read_text())["version"] == old + 1
    assert _corpus_ids(work) == before - {row["url_id"]}
    assert row["url_id"] in _corpus_ids(work, version=old)          # the earlier version is untouched
    after = _fetchlog(work)[row["url_id"]]
    assert (after["archive"], after["source"], after["error"]) == ("recovered", "wayback", None)


def test_funnel_prints_the_recovered_dead_links(demo_run):
    """The funnel says how many dead links each archive gave back, as the fetch log has them."""
    import io
    from collections import Counter

    from rich.console import Console

    from webtext.pipeline.funnel import render

    logs = pa.concat_tables(pq.read_table(p) for p in sorted((demo_run / "warc").glob("fetchlog-*.parquet")))
    rows = logs.to_pylist()
    got = Counter(r["source"] for r in rows if r["archive"] == "recovered")
    miss = sum(r["archive"] == "miss" for r in rows)
    assert got["commoncrawl"] and got["wayback"] and miss
    out = io.StringIO()
    render(collect(demo_run), Console(file=out, width=300))
    assert (f"dead links recovered from web archives: commoncrawl {got['commoncrawl']}, "
            f"wayback {got['wayback']}; in no archive: {miss}") in out.getvalue()

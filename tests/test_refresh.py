"""Refresh: two months refreshed in two runs equal one run over both; the second run
fetches only new URLs and drops a near-duplicate of an old document; locks; takedowns."""

import json
import os
import shutil
import signal
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from webtext.model.data import read_manifest
from webtext.pipeline.config import load_config
from webtext.pipeline.demo import demo_overrides
from webtext.pipeline.demoweb import DemoProxy, build_demo_web
from webtext.pipeline.executor import Context
from webtext.pipeline.lock import LOCKED_EXIT, LockedError, WorkdirLock
from webtext.pipeline.refresh import refresh
from webtext.pipeline.run import ORDER, run_all
from webtext.stages import shard as S
from webtext.stages.urls import normalize_url_id

from conftest import ROOT


def _ctx(workdir, web, proxy, dumps, **fetch):
    over = demo_overrides(web, proxy.url, steps=1, workers=1)
    over["harvest"]["dumps"] = [str(d) for d in dumps]
    over["fetch"].update(fetch)
    return Context(workdir, load_config(None, over))


def _corpus(workdir, version=0):
    m = read_manifest(workdir / "tokens", version=version)
    docs = {d for f in m["shards"] for d in S.read_tokens(workdir / "tokens" / f["file"])["doc_id"].to_pylist()}
    return docs, m["totals"]["train"]["tokens"] + m["totals"]["val"]["tokens"]


@pytest.fixture(scope="module")
def refreshed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("refresh")
    web = build_demo_web(tmp / "web", n_articles=40, months=2)
    inbox = tmp / "inbox"                          # the dumps folder a cron job watches
    inbox.mkdir()
    shutil.copy(web.dumps[0], inbox)
    out = {"web": web, "tmp": tmp}
    with DemoProxy(web.pages, web.archive) as proxy:
        ctx = _ctx(tmp / "incr", web, proxy, [inbox])
        out["diff1"] = refresh(ctx)
        out["month1_requests"], out["month1_archive"] = list(proxy.requests), list(proxy.archive_requests)
        proxy.requests.clear()
        proxy.archive_requests.clear()
        shutil.copy(web.dumps[1], inbox)
        out["diff2"] = refresh(ctx)
        out["month2_requests"], out["month2_archive"] = list(proxy.requests), list(proxy.archive_requests)
        out["diff3"] = refresh(ctx)                # nothing new
        ctx.close()
        full = _ctx(tmp / "full", web, proxy, web.dumps)
        run_all(full, ORDER[:-1])
        full.close()
    return out


def test_two_refreshes_equal_one_full_run(refreshed):
    tmp = refreshed["tmp"]
    docs, tokens = _corpus(tmp / "incr")
    full_docs, full_tokens = _corpus(tmp / "full")
    assert docs == full_docs and tokens == full_tokens
    d1, d2, d3 = refreshed["diff1"], refreshed["diff2"], refreshed["diff3"]
    assert d1["updated"] and d2["updated"] and not d3["updated"]
    assert (d1["corpus_version"], d2["corpus_version"], d3["corpus_version"]) == (1, 2, 2)
    assert d1["documents_added"] + d2["documents_added"] == len(docs)
    assert d2["tokens_added"] > 0 and d1["tokens_added"] + d2["tokens_added"] == tokens
    assert set(d2["wall_s"]) == {"harvest", "fetch", "extract", "dedup", "decontaminate", "shard"}
    assert d3["new_urls"] == 0 and d3["fetched"] == 0 and d3["tokens_added"] == 0
    assert json.loads((tmp / "incr" / "refresh" / "latest.json").read_text())["run_id"] == d3["run_id"]
    v1_docs, _ = _corpus(tmp / "incr", version=1)                   # the first version stays readable
    assert v1_docs < docs and len(v1_docs) == d1["documents_added"]


def test_second_refresh_fetches_only_new_urls(refreshed):
    pages = lambda reqs: {u for u in reqs if not u.endswith(("/robots.txt", "/.well-known/tdmrep.json"))}  # noqa: E731
    first, second = pages(refreshed["month1_requests"]), pages(refreshed["month2_requests"])
    assert first and second and not (first & second)
    web = refreshed["web"]
    assert set(web.planted["near_dup"]) <= second                   # February's republications
    assert refreshed["diff2"]["fetched"] == len(second) + refreshed["diff2"]["drops"].get("fetch", {}).get(
        "robots_disallowed", 0)
    # January's dead links were looked up in the archives; February brought none.
    asked = {path for _, path in refreshed["month1_archive"]}
    for url in web.planted["recovered_cc"] + web.planted["recovered_wayback"] + web.planted["dead"]:
        assert any(url in path for path in asked), url
    assert refreshed["month2_archive"] == []


def test_near_duplicate_of_an_old_document_is_dropped(refreshed):
    d2 = refreshed["diff2"]
    assert d2["duplicates"].get("near_duplicate", 0) >= 1 and d2["duplicates"].get("exact_duplicate", 0) >= 1
    docs, _ = _corpus(refreshed["tmp"] / "incr")
    for url in refreshed["web"].planted["near_dup"]:
        assert normalize_url_id(url)[0] not in docs


def test_takedown_leaves_the_next_version_only(refreshed, tmp_path):
    from typer.testing import CliRunner

    from webtext.pipeline.cli import app

    work = tmp_path / "w"
    shutil.copytree(refreshed["tmp"] / "incr", work)
    url = refreshed["web"].planted["articles"][0]
    doc_id = normalize_url_id(url)[0]
    before, _ = _corpus(work)
    assert doc_id in before
    r = CliRunner().invoke(app, ["--workdir", str(work), "remove", "--url", url, "--reason", "owner request"])
    assert r.exit_code == 0, r.output
    after, _ = _corpus(work)
    assert after == before - {doc_id}
    assert doc_id in _corpus(work, version=2)[0]                    # the earlier version is untouched
    m = json.loads((work / "tokens" / "manifest.json").read_text())
    assert m["version"] == 3 and m["versions"][-1]["removed_docs"] == 1
    record = json.loads((work / "tokens" / "_versions" / "v0003.json").read_text())
    assert [t["url"] for t in record["takedowns"]] == [normalize_url_id(url)[1]] and record["created"] > 0
    r = CliRunner().invoke(app, ["--workdir", str(work), "remove", "--url", "ftp://x"])
    assert r.exit_code != 0


def _doc_tokens(workdir, doc_id, version=0):
    m = read_manifest(workdir / "tokens", version=version)
    for f in m["shards"]:
        t = S.read_tokens(workdir / "tokens" / f["file"])
        if doc_id in (ids := t["doc_id"].to_pylist()):
            return t["tokens"][ids.index(doc_id)].as_py()
    return None


def test_refetch_after_revisits_with_conditional_get(refreshed, tmp_path):
    """--refetch-after: every old URL is revisited; unchanged pages answer 304 to the
    conditional GET and cost nothing downstream; a rewritten page replaces its document
    in a new version (the old version keeps the old text); a page edited by two words
    stays as it was (a near-duplicate of itself); a taken-down URL is never revisited."""
    from webtext.pipeline.demoweb import Page, _html, docstring_paragraphs

    work = tmp_path / "w"
    shutil.copytree(refreshed["tmp"] / "incr", work)
    web = refreshed["web"]
    docs, _ = _corpus(work)
    in_corpus = [u for u in web.planted["articles"] if normalize_url_id(u)[0] in docs]
    rewritten, edited, taken = in_corpus[3], in_corpus[4], in_corpus[5]
    pages = dict(web.pages)
    fresh = docstring_paragraphs()[300:304]                         # text no demo page carries
    pages[rewritten] = Page(200, _html("dailybyte.example", "Rewritten", fresh))
    body = pages[edited].body.decode()
    pages[edited] = Page(200, body.replace("<p>", "<p>Updated: ", 1).encode())
    ctx0 = Context(work, load_config(None, {}))
    assert ctx0.state.add_takedown(*normalize_url_id(taken), "owner request")
    ctx0.close()
    before = {u: _doc_tokens(work, normalize_url_id(u)[0]) for u in (rewritten, edited)}
    with DemoProxy(pages, web.archive) as proxy:
        ctx = _ctx(work, web, proxy, web.dumps, refetch_after_days=1e-9)
        diff = refresh(ctx)
        requested = {u for u in proxy.requests if not u.endswith("/robots.txt")}
        ctx.close()
        ctx = _ctx(work, web, proxy, web.dumps, refetch_after_days=1)  # nothing is a day old yet
        proxy.requests.clear()
        again = refresh(ctx)
        ctx.close()
        assert not again["updated"] and again["revisits"] == 0 and not proxy.requests
        assert not proxy.archive_requests                          # revisits are never looked up
    fetched_before = set(requested) - {rewritten}
    assert rewritten in requested and edited in requested and taken not in requested
    urls = pa.concat_tables(pq.read_table(f) for f in (work / "urls").glob("urls-*.parquet"))
    assert normalize_url_id(taken)[1] not in urls["url"].to_pylist()            # harvest dropped the takedown
    assert diff["revisits"] == urls.num_rows                                       # all the others
    assert diff["new_urls"] == 0 and diff["drops"]["harvest"]["taken_down"] >= 1    # the takedown left, none came
    assert diff["updated"] and diff["documents_revised"] == 1 and diff["documents_added"] == 0
    assert set(proxy.not_modified) >= {u for u in fetched_before if u in in_corpus and u != edited}
    assert diff["not_modified"] == len(proxy.not_modified)
    rid = normalize_url_id(rewritten)[0]
    assert _doc_tokens(work, rid) not in (None, before[rewritten])
    assert _doc_tokens(work, rid, version=2) == before[rewritten]    # the earlier version is untouched
    assert _doc_tokens(work, normalize_url_id(edited)[0]) == before[edited]
    after, _ = _corpus(work)
    assert after == docs - {normalize_url_id(taken)[0]}
    m = read_manifest(work / "tokens")
    assert m["totals"]["train"]["docs"] + m["totals"]["val"]["docs"] == len(after)   # one revision per document
    assert diff["duplicates"].get("near_duplicate", 0) >= 1                        # the two-word edit
    revisions = pa.concat_tables(pq.read_table(f) for f in sorted((work / "docs").glob("docs-*.parquet")))
    texts = [r["text"] for r in revisions.to_pylist() if r["doc_id"] == rid]
    assert len(texts) == 2 and fresh[0][:60] not in texts[0] and fresh[0][:60] in texts[1]
    log = pa.concat_tables(pq.read_table(f) for f in sorted((work / "warc").glob("fetchlog-*.parquet")))
    rows = {(r["url"], r["error"]): r for r in log.to_pylist()}
    assert rows[(rewritten, None)]["etag"] and rows[(rewritten, None)]["fetched_at"].timestamp() > 0
    assert rows[(edited, None)]["status"] == 200
    assert all(rows[(u, "not_modified")]["status"] == 304 for u in proxy.not_modified)


def _webtext(*args, **kw):
    return subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, **kw)


def test_lock_refuses_a_second_run_and_recovers_after_sigkill(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; sys.path.insert(0, '.'); from webtext.pipeline.lock import WorkdirLock; "
        f"WorkdirLock({str(tmp_path)!r}, 'refresh').acquire(); print('held', flush=True); time.sleep(60)")],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        r = _webtext("--workdir", str(tmp_path), "refresh")
        assert r.returncode == LOCKED_EXIT and f"in use by pid {holder.pid}" in r.stderr
        with pytest.raises(LockedError):
            WorkdirLock(tmp_path, "test").acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)                          # a crashed run
        holder.wait()
    assert json.loads((tmp_path / ".lock").read_text())["pid"] == holder.pid   # stale record left behind
    logs = []
    with WorkdirLock(tmp_path, "test", log=logs.append) as lock:
        assert lock.recovered["pid"] == holder.pid and f"stale lock from pid {holder.pid}" in logs[0]
    assert (tmp_path / ".lock").read_text() == ""                   # a clean exit leaves no holder


def test_schedule_writes_and_removes_a_crontab_entry(tmp_path):
    from crontab import CronTab
    from typer.testing import CliRunner

    from webtext.pipeline.cli import app

    tab = tmp_path / "crontab"
    tab.write_text("MAILTO=ops@example.org\n15 1 * * * /usr/bin/backup\n")
    work = tmp_path / "my work"                                     # a space: quoted in the command
    run = lambda *a: CliRunner().invoke(app, ["--workdir", str(work), "schedule", *a, "--tabfile", str(tab)])  # noqa: E731
    r = run("install", "--cron", "0 3 * * *")
    assert r.exit_code == 0, r.output
    jobs = [j for j in CronTab(tabfile=str(tab)) if "refresh" in j.command]
    assert len(jobs) == 1 and str(jobs[0].slices) == "0 3 * * *"
    assert f"'{work.resolve()}'" in jobs[0].command and "refresh.log" in jobs[0].command
    assert run("install", "--cron", "30 4 * * 1").exit_code == 0      # replaces, never duplicates
    assert [str(j.slices) for j in CronTab(tabfile=str(tab)) if "refresh" in j.command] == ["30 4 * * 1"]
    assert "30 4 * * 1" in run("show").output
    assert "not a cron schedule" in str(run("install", "--cron", "every day").exception)
    assert run("remove").exit_code == 0
    assert "refresh" not in tab.read_text() and "/usr/bin/backup" in tab.read_text()   # others' entries kept
    r = CliRunner().invoke(app, ["--workdir", str(work), "schedule", "install", "--systemd"])
    assert "OnCalendar=*-*-* 03:00:00" in r.output and "SuccessExitStatus=3 75" in r.output


def test_refresh_exit_codes_and_json_logs(refreshed, tmp_path):
    work = tmp_path / "w"
    shutil.copytree(refreshed["tmp"] / "incr", work)
    (work / ".lock").unlink(missing_ok=True)
    cfg = tmp_path / "webtext.toml"
    inbox = refreshed["tmp"] / "inbox"
    cfg.write_text(f'[harvest]\ndumps = ["{inbox}"]\n[fetch]\nallow_private = true\n')
    r = _webtext("--workdir", str(work), "--config", str(cfg), "refresh", "--log-json", "--refetch-after", "30")
    assert r.returncode == 3, r.stderr[-2000:]                      # nothing new, nothing 30 days old
    lines = [json.loads(x) for x in r.stderr.splitlines() if x.startswith("{")]
    assert lines and lines[-1]["msg"] == "refresh done" and lines[-1]["diff"]["updated"] is False
    assert all(set(x) >= {"level", "msg"} for x in lines)


def test_status_on_empty_partial_and_complete_work_directories(refreshed, tmp_path):
    from webtext.pipeline.status import collect_status

    empty = collect_status(tmp_path / "none")
    assert not empty["exists"] and not (tmp_path / "none").exists()          # never creates one
    partial = tmp_path / "partial"
    shutil.copytree(refreshed["tmp"] / "incr" / "urls", partial / "urls")
    st = collect_status(partial)
    assert [s["done"] for s in st["stages"]] == [True] + [False] * 5 and st["versions"] == []
    work = tmp_path / "w"
    shutil.copytree(refreshed["tmp"] / "incr", work)
    st = collect_status(work)
    assert all(s["done"] for s in st["stages"]) and [v["version"] for v in st["versions"]] == [1, 2]
    assert st["versions"][-1]["docs"] == len(_corpus(work)[0]) and st["runs"][0]["command"] == "refresh"
    assert st["last_refresh"]["updated"] is False and st["lock"]["state"] == "free"
    with WorkdirLock(work, "refresh"):
        assert collect_status(work)["lock"]["state"] == "held"
    for args in ([str(tmp_path / "none")], [str(partial)], [str(work)]):
        r = _webtext("--workdir", *args, "status")
        assert r.returncode == 0, r.stderr
    assert "corpus: version 2 of 2" in _webtext("--workdir", str(work), "status").stdout

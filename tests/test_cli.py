"""The CLI as a user runs it: help text, one-line errors, exit codes."""

import json
import re
import subprocess
import sys

import pytest
import typer
from pathlib import Path

from webtext.pipeline import cli

COMMANDS = ["harvest", "fetch", "extract", "dedup", "decontaminate", "shard", "train", "run", "demo", "report"]


def webtext(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_documents_every_option(command):
    r = webtext(command, "--help")
    assert r.returncode == 0
    out = re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", r.stdout))
    params = typer.main.get_command(cli.app).commands[command].params     # wherever the command is defined
    assert params
    for param in params:
        flag = max(param.opts, key=len)                  # --ignore-robots, not a short alias
        assert flag in out, f"{flag} missing from `webtext {command} --help`"


@pytest.mark.parametrize("args, needle", [
    (["dedup"], "no document shards in"),
    (["fetch"], "Run `webtext harvest` first"),
    (["harvest"], "no dumps given"),
    (["train"], "Run `webtext shard` first"),
    (["report"], "Run `webtext run` or `webtext demo` first"),
    (["run", "--stages", "dedupe"], "unknown stage(s) 'dedupe'"),
])
def test_missing_input_is_one_line_and_exit_2(tmp_path, args, needle):
    r = webtext("--workdir", str(tmp_path / "w"), *args)
    assert r.returncode == 2
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0]
    assert "Traceback" not in r.stderr


def test_bad_config_file(tmp_path):
    cfg = tmp_path / "webtext.toml"
    cfg.write_text("[dedup]\nthreshhold = 0.7\n")
    r = webtext("--workdir", str(tmp_path), "--config", str(cfg), "dedup")
    assert r.returncode == 2 and "unknown key 'threshhold' in [dedup]" in r.stderr


def test_tokenizer_train_then_shard_with_it(tmp_path):
    import pyarrow.parquet as pq

    from webtext.pipeline.demoweb import docstring_paragraphs

    from conftest import doc_row, doc_table

    (tmp_path / "clean").mkdir()
    rows = [doc_row(f"d{i}", p, url=f"http://s{i}.example/") for i, p in enumerate(docstring_paragraphs()[:300])]
    pq.write_table(doc_table(rows), tmp_path / "clean" / "clean-00000.parquet")
    r = webtext("--workdir", str(tmp_path), "tokenizer", "train", "--vocab-size", "600")
    assert r.returncode == 0, r.stderr
    tok = tmp_path / "tokenizers" / "bpe-600.json"
    assert tok.is_file() and "webtext shard --tokenizer" in r.stdout
    r = webtext("--workdir", str(tmp_path), "shard", "--tokenizer", str(tok))
    assert r.returncode == 0, r.stderr
    m = json.loads((tmp_path / "tokens" / "manifest.json").read_text())
    assert (m["tokenizer"], m["backend"], m["vocab_size"], m["dtype"]) == ("bpe-600.json", "hf", 600, "uint16")
    r = webtext("--workdir", str(tmp_path), "shard", "--tokenizer", str(tmp_path / "missing.json"))
    assert r.returncode == 2 and "tokenizer" in r.stderr and "not found" in r.stderr


def test_bad_option_value_is_one_line(tmp_path):
    r = webtext("--workdir", str(tmp_path), "dedup", "--verify", "maybe")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "dedup.verify must be one of exact, estimate, off, not 'maybe'" in r.stderr


def test_example_config_is_complete_and_valid():
    """webtext.example.toml loads, and lists every key of every section."""
    import dataclasses
    import tomllib
    from pathlib import Path

    from webtext.pipeline.config import Config, load_config

    path = Path(__file__).resolve().parent.parent / "webtext.example.toml"
    cfg = load_config(path)
    assert cfg == Config()                               # it shows the defaults
    text = path.read_text()
    data = tomllib.loads(text)
    from webtext.pipeline.train_recipes import SIZED

    # [train]'s sized settings are commented out: set, they would override every size's default
    data["train"].update({k: None for k in SIZED if f"\n# {k} = " in text})
    for f in dataclasses.fields(Config):
        assert set(data[f.name]) == {x.name for x in dataclasses.fields(getattr(cfg, f.name))}


# ---- values a user can get wrong: one line on stderr, exit code 2, never a hang or a traceback ----

def _one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, r.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


@pytest.mark.parametrize("args, needle", [
    (["fetch", "--concurrency", "-5"], "fetch.concurrency must be >= 1"),
    (["fetch", "--retries", "-3"], "fetch.retries must be >= 0"),
    (["fetch", "--timeout", "-1"], "fetch.timeout_s must be > 0"),
    (["fetch", "--timeout", "0"], "fetch.timeout_s must be > 0"),
    (["fetch", "--per-host", "0"], "fetch.per_host must be >= 1"),
    (["--workers", "-1", "dedup"], "run.workers must be >= 0"),
    (["dedup", "--threshold", "1.5"], "dedup.threshold must be"),
    (["train", "--model", "gpt3"], "unknown model size 'gpt3'"),
    (["train", "--steps", "0"], "train.steps must be >= 1"),
    (["sample", "--temperature", "0"], "--temperature"),
    (["tokenizer", "train", "--vocab-size", "10"], "--vocab-size"),
    (["demo", "--articles", "0"], "--articles"),
])
def test_out_of_range_flags_are_one_line_errors(tmp_path, args, needle):
    r = webtext("--workdir", str(tmp_path / "w"), *args)
    _one_line_error(r, needle)


def test_train_unknown_model_lists_the_sizes(tmp_path):
    r = webtext("--workdir", str(tmp_path / "w"), "train", "--model", "gpt3")
    _one_line_error(r, "tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


def test_out_of_range_config_value_is_one_line_error(tmp_path):
    cfg = tmp_path / "webtext.toml"
    cfg.write_text("[fetch]\nmax_bytes = -1\n")
    r = webtext("--workdir", str(tmp_path / "w"), "--config", str(cfg), "fetch")
    _one_line_error(r, "fetch.max_bytes must be >= 1024")


def test_workdir_that_is_a_file_or_under_one(tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    _one_line_error(webtext("--workdir", str(f), "dedup"), "is a file")
    _one_line_error(webtext("--workdir", str(f / "sub"), "dedup"), "cannot be created", str(f))
    _one_line_error(webtext("--workdir", str(f), "status"), "is a file")


def test_usage_errors_are_one_line(tmp_path):
    _one_line_error(webtext("fetch", "--concurency", "5"), "No such option: --concurency", "fetch --help")
    _one_line_error(webtext("fetch", "--concurrency", "many"), "--concurrency")
    _one_line_error(webtext("nosuch"), "No such command 'nosuch'")
    r = webtext()
    assert r.returncode == 2 and "Usage: " in r.stdout and "harvest" in r.stdout     # bare `webtext`: the help


def test_read_only_workdir(tmp_path):
    import os
    import shutil
    import tempfile

    if os.geteuid() == 0 and not shutil.which("setpriv"):
        pytest.skip("running as root without setpriv: permissions cannot be dropped")
    base = Path(tempfile.mkdtemp(prefix="webtext-ro-"))     # a place another user can reach
    try:
        base.chmod(0o755)
        ro = base / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        argv = [sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(ro), "dedup"]
        cwd = Path(__file__).resolve().parent.parent
        if os.geteuid() == 0:               # root ignores permissions: run as nobody
            nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
            probe = subprocess.run([*nobody, sys.executable, "-c", "import webtext.pipeline.cli"], cwd=cwd,
                                   capture_output=True, timeout=120)
            if probe.returncode:            # e.g. a checkout under a 0700 temporary directory
                pytest.skip("this checkout or its Python cannot be read by an unprivileged user")
            argv = [*nobody, *argv]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=cwd)
        _one_line_error(r, "not writable", str(ro))
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_schedule_without_crontab_program(tmp_path):
    import os

    env = {**os.environ, "PATH": str(tmp_path)}          # no crontab program on the PATH
    r = subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(tmp_path / "w"), "schedule",
                        "install", "--cron", "0 3 * * *"], capture_output=True, text=True, timeout=120, env=env)
    _one_line_error(r, "no crontab program", "apt-get install cron", "--tabfile", "--systemd")


@pytest.mark.parametrize("command", [["export", "--hf"], ["sample"], ["eval"]])
def test_checkpoint_commands_list_the_runs(tmp_path, command):
    for name in ("demo", "other"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "ckpt.pt").write_bytes(b"")
    (tmp_path / "runs" / "empty").mkdir()                  # no checkpoint: not listed
    _one_line_error(webtext("--workdir", str(tmp_path), *command), "run 'default'", "demo, other")
    assert "empty" not in webtext("--workdir", str(tmp_path), *command).stderr


def test_status_checks_its_config(tmp_path):
    _one_line_error(webtext("--workdir", str(tmp_path), "status", "--config", "nope.toml"),
                    "--config is a global option: put it before the command")
    _one_line_error(webtext("--workdir", str(tmp_path), "--config", str(tmp_path / "nope.toml"), "status"),
                    "not found")
    cfg = tmp_path / "webtext.toml"
    cfg.write_text("[fetch]\nconcurrency = 8\n")
    r = webtext("--workdir", str(tmp_path), "--config", str(cfg), "status", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["config"] == str(cfg)


# ---- what a command prints: a summary for a person, or with --json one JSON document on stdout ----

def _docs_world(root: Path, folder: str = "docs") -> Path:
    """A work directory whose ``folder`` holds 40 documents, 6 of them exact copies of others."""
    import pyarrow.parquet as pq

    from webtext.pipeline.demoweb import docstring_paragraphs

    from conftest import doc_row, doc_table

    texts = docstring_paragraphs()[:34]
    rows = [doc_row(f"d{i}", t, url=f"http://s{i}.example/") for i, t in enumerate(texts + texts[:6])]
    (root / folder).mkdir(parents=True)
    pq.write_table(doc_table(rows), root / folder / f"{folder}-00000.parquet")
    return root


def _not_json(text: str) -> None:
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_stage_prints_a_summary_and_json_only_when_asked(tmp_path):
    import shutil

    from webtext.pipeline.run import run_stage
    from webtext.pipeline.summary import shown

    from conftest import make_context

    world = _docs_world(tmp_path / "world")
    for name in ("human", "after", "before", "direct", "run"):
        shutil.copytree(world, tmp_path / name)
    human = webtext("--workdir", str(tmp_path / "human"), "--workers", "1", "dedup")
    after = webtext("--workdir", str(tmp_path / "after"), "--workers", "1", "dedup", "--json")
    before = webtext("--workdir", str(tmp_path / "before"), "--workers", "1", "--json", "dedup")
    for r in (human, after, before):
        assert r.returncode == 0, r.stderr[-2000:]
        assert "dedup" in r.stderr                  # progress stays on stderr
    data = json.loads(after.stdout)                 # one JSON document, on stdout
    assert json.loads(before.stdout) == data        # --json before or after the command: the same
    ctx = make_context(tmp_path / "direct", workers=1)
    try:
        assert data == shown(run_stage(ctx, "dedup"))      # what the stage returns, unchanged
    finally:
        ctx.close()
    assert (data["in"], data["out"], data["dropped"].get("exact_duplicate")) == (40, 34, 6)
    _not_json(human.stdout)
    out = human.stdout
    assert "{" not in out and '"stage"' not in out
    assert "dedup: 40 documents in -> 34 documents out (6 dropped) in " in out
    assert "dropped: exact_duplicate 6" in out
    assert f"output: {tmp_path / 'human'}/dedup/" in out
    assert len(out.splitlines()) <= 8
    r = webtext("--workdir", str(tmp_path / "run"), "--workers", "1", "run", "--stages", "dedup", "--json")
    assert r.returncode == 0, r.stderr[-2000:]
    ran = json.loads(r.stdout)                      # webtext run: every stage's result and the funnel
    assert ran["results"] == [data] and [s["stage"] for s in ran["funnel"]["stages"]] == ["dedup"]


def test_shard_summary_names_the_version_and_tokens(tmp_path):
    import shutil

    world = _docs_world(tmp_path / "world", "clean")
    shutil.copytree(world, tmp_path / "j")
    human = webtext("--workdir", str(world), "--workers", "1", "shard")
    data = json.loads(webtext("--workdir", str(tmp_path / "j"), "--workers", "1", "shard", "--json").stdout)
    assert human.returncode == 0, human.stderr[-2000:]
    info = data["info"]
    assert info["tokens_train"] >= 1000                    # so the count needs a thousands separator
    assert f"shard: {data['in']:,} documents in -> {data['out']:,} documents out" in human.stdout
    assert (f"corpus version 1: {info['docs_train']:,} train / {info['docs_val']:,} val documents, "
            f"{info['tokens_train']:,} train / {info['tokens_val']:,} val tokens") in human.stdout
    assert f"output: {world}/tokens/{info['folder']}/" in human.stdout


def test_summary_lines_use_each_stage_units():
    from webtext.pipeline.summary import drops, stage_lines

    fetch = {"stage": "fetch", "in": 12_345, "out": 12_000, "dropped": {"http_4xx": 300, "robots_disallowed": 45},
             "info": {"new_urls": 1_000, "bytes": 2_500_000, "recovered_wayback": 7, "archive_miss": 3},
             "tasks_run": 3, "tasks_skipped": 5}
    lines = stage_lines(fetch, "s3://b/w/", 75.0)
    assert lines[0] == "fetch: 12,345 URLs in -> 12,000 pages out (345 dropped) in 1 min 15 s"
    assert "  dropped: http_4xx 300, robots_disallowed 45" in lines
    assert "  new URLs: 1,000, revisits: 0, downloaded: 2.5 MB" in lines
    assert any("wayback 7" in x for x in lines) and lines[-1] == "  output: s3://b/w/warc/"
    harvest = stage_lines({"stage": "harvest", "in": 9, "out": 1, "dropped": {"nsfw": 8}, "info": {}}, "w", 1)
    assert harvest[0].startswith("harvest: 9 submissions in -> 1 URLs out")
    assert stage_lines({"stage": "extract", "in": 2, "out": 2, "dropped": {}, "info": {}}, "w", 1)[0] \
        .startswith("extract: 2 pages in -> 2 documents out")
    many = {f"r{i}": 10 - i for i in range(7)}
    assert drops(many) == "r0 10, r1 9, r2 8, r3 7, and 3 more reason(s) 15"


def test_other_commands_print_json_only_with_json(tmp_path):
    from typer.testing import CliRunner

    tab = tmp_path / "crontab"
    base = ["--workdir", str(tmp_path / "w"), "schedule"]
    r = CliRunner().invoke(cli.app, [*base, "install", "--cron", "0 3 * * *", "--tabfile", str(tab)])
    assert r.exit_code == 0 and "crontab entry written" in r.stdout
    _not_json(r.stdout)
    human = CliRunner().invoke(cli.app, [*base, "show", "--tabfile", str(tab)])
    _not_json(human.stdout)
    for args in ([*base, "show", "--tabfile", str(tab), "--json"], ["--json", *base, "show", "--tabfile", str(tab)]):
        r = CliRunner().invoke(cli.app, args)
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout) == {"entries": human.stdout.splitlines()}
    r = webtext("--workdir", str(tmp_path / "w"), "--json", "pull")
    assert r.returncode == 0 and json.loads(r.stdout)["downloaded"] is False


# ---- --help: flags show no metavar, values a meaningful one, never a Python type name ----

def _command_tree():
    """Every command and group of the CLI as (argv path, click command), the app itself first."""
    import typer

    root = typer.main.get_command(cli.app)
    out, todo = [], [((), root)]
    while todo:
        path, cmd = todo.pop(0)
        out.append((path, cmd))
        if hasattr(cmd, "list_commands"):
            ctx = cmd.make_context("webtext", [], resilient_parsing=True)
            todo += [((*path, name), cmd.get_command(ctx, name)) for name in cmd.list_commands(ctx)]
    return out


def test_help_has_no_type_metavars():
    from typer.testing import CliRunner

    tree = _command_tree()
    names = {" ".join(p) for p, _ in tree}
    assert {"", "fetch", "tokenizer", "tokenizer train", "schedule install", "remove", "eval"} <= names
    for path, cmd in tree:
        r = CliRunner().invoke(cli.app, [*path, "--help"], env={"COLUMNS": "200"})
        assert r.exit_code == 0, (path, r.output)
        for bad in ("<bool>", "<str>", "<int>", "<float>", "<path>", "<list", " range>"):
            assert bad not in r.output, f"{bad} in `webtext {' '.join(path)} --help`"
        ctx = cmd.make_context("webtext", [], resilient_parsing=True)
        for p in cmd.get_params(ctx):
            if getattr(p, "is_flag", False):
                assert p.metavar == "", (path, p.name)          # a flag: no metavar at all
            elif p.param_type_name == "option":
                assert p.metavar and p.metavar == p.metavar.upper() or "|" in p.metavar, (path, p.name, p.metavar)
    fetch = CliRunner().invoke(cli.app, ["fetch", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--timeout\s+SECONDS", fetch) and re.search(r"--ignore-robots\s+Do not fetch", fetch)
    train = CliRunner().invoke(cli.app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert re.search(r"--device\s+auto\|cpu\|cuda", train) and re.search(r"--steps\s+N\s", train)


def test_flags_still_take_no_value():
    import typer

    root = typer.main.get_command(cli.app)
    ctx = root.make_context("webtext", ["--json", "fetch"], resilient_parsing=True)
    assert ctx.params["as_json"] is True
    fetch = root.get_command(ctx, "fetch")
    sub = fetch.make_context("fetch", ["--ignore-robots", "--allow-private", "--concurrency", "3", "--json"])
    assert (sub.params["ignore_robots"], sub.params["allow_private"], sub.params["concurrency"],
            sub.params["as_json"]) == (True, True, 3, True)
    extract = root.get_command(ctx, "extract")
    assert extract.make_context("extract", ["--no-dates"]).params["dates"] is False
    r = webtext("fetch", "--ignore-robots", "yes")
    _one_line_error(r, "yes")                               # a flag given a value: a usage error


def test_train_and_eval_summaries():
    from webtext.pipeline.summary import eval_lines, train_lines

    run = {"steps": 1_200, "final_train_loss": 3.21, "final_val_loss": 3.5, "tokens_per_s": 45_678.9, "mfu": None,
           "device": "cuda", "world_size": 8, "params": 124_439_808, "model": "gpt2", "tokens_seen": 589_824_000,
           "_trained": True}
    lines = train_lines(run, "work/runs/gpt2", 3_725)
    assert lines[0] == ("train: gpt2 model (124.44M parameters) on 8 x cuda: 1,200 steps, 589,824,000 tokens "
                        "in 1 h 02 min")
    assert lines[1] == "  loss: train 3.210, val 3.500; 45,679 tokens/s"
    assert "work/runs/gpt2/" in lines[2]
    assert train_lines({**run, "_trained": False}, "w/runs/x", 0.1) == ["train: w/runs/x already at step 1,200: nothing to do"]
    lines = eval_lines([{"benchmark": "wikitext2", "task": "perplexity", "tokens": 12_345, "words": 9_000,
                         "token_ppl": 1234.5, "word_ppl": 2345.6, "bits_per_byte": 1.5},
                        {"benchmark": "lambada", "task": "last word", "examples": 500, "accuracy": 0.25, "ppl": 99.0}],
                       "w/runs/x/eval.json")
    assert lines == ["wikitext2: word perplexity 2,345.60, token perplexity 1,234.50, 1.500 bits/byte over 12,345 tokens",
                     "lambada: last-word accuracy 25.0% over 500 passages (perplexity 99.00)",
                     "written: w/runs/x/eval.json"]


def test_json_before_a_subcommand_group_says_where_it_goes():
    _one_line_error(webtext("tokenizer", "--json", "train"), "--json is a global option", "webtext --json")

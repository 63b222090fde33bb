"""The CLI as a user runs it: help text, one-line errors, exit codes."""

import inspect
import json
import re
import subprocess
import sys

import pytest

from pipeline import cli

COMMANDS = ["harvest", "fetch", "extract", "dedup", "decontaminate", "shard", "train", "run", "demo", "report"]


def webtext(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=120)


@pytest.mark.parametrize("command", COMMANDS)
def test_help_documents_every_option(command):
    r = webtext(command, "--help")
    assert r.returncode == 0
    out = re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", r.stdout))
    for name in inspect.signature(getattr(cli, command)).parameters:
        flag = {"as_json": "--json", "lang": "--lang"}.get(name, "--" + name.replace("_", "-"))
        flag = {"ignore_robots": "--ignore-robots"}.get(name, flag)
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

    from pipeline.demoweb import docstring_paragraphs

    from conftest import doc_row, doc_table

    (tmp_path / "clean").mkdir()
    rows = [doc_row(f"d{i}", p, url=f"http://s{i}.example/") for i, p in enumerate(docstring_paragraphs()[:300])]
    pq.write_table(doc_table(rows), tmp_path / "clean" / "clean-00000.parquet")
    r = webtext("--workdir", str(tmp_path), "tokenizer", "train", "--vocab-size", "600")
    assert r.returncode == 0, r.stderr
    tok = tmp_path / "tokenizers" / "bpe-600.json"
    assert tok.is_file() and "webtext shard --tokenizer" in r.stderr
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

    from pipeline.config import Config, load_config

    path = Path(__file__).resolve().parent.parent / "webtext.example.toml"
    cfg = load_config(path)
    assert cfg == Config()                               # it shows the defaults
    data = tomllib.loads(path.read_text())
    for f in dataclasses.fields(Config):
        assert set(data[f.name]) == {x.name for x in dataclasses.fields(getattr(cfg, f.name))}

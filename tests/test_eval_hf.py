"""``webtext eval --hf``: a random tiny ``GPT2LMHeadModel`` saved to a folder is loaded into
our GPT class, and its logits and every score match transformers' own forward run
through the same harness; errors are one line and exit 2. No hub access
(HF_HUB_OFFLINE=1, an empty HF cache)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from test_evalsets import write_fixtures

from webtext.model import evaluate as E
from webtext.model.hf import hf_state_dict, load_hf
from webtext.stages.benchmarks import load_registry, resolve

transformers = pytest.importorskip("transformers")


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))


@pytest.fixture
def tiny_hf(tmp_path):
    torch.manual_seed(0)
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=32, n_positions=64, vocab_size=50257)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    model.save_pretrained(tmp_path / "tiny-gpt2")
    return model, tmp_path / "tiny-gpt2"


class HFInHarness(torch.nn.Module):
    """transformers' forward behind our GPT's interface (``cfg``, ``(logits, loss)``)."""

    def __init__(self, hf, cfg):
        super().__init__()
        self.hf, self.cfg = hf, cfg

    def forward(self, x):
        return self.hf(x).logits, None


def test_hf_weights_give_our_model_the_same_logits_and_scores(tiny_hf, tmp_path):
    hf, folder = tiny_hf
    spec, ours, where = load_hf(str(folder))
    assert where == folder and spec.name == "gpt2" and ours.cfg.block_size == 64 and ours.cfg.n_layer == 2
    x = torch.randint(0, 50257, (3, 40))
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0][..., :50257], hf(x).logits, rtol=1e-4, atol=1e-4)
    # The round trip: our export of the loaded model is the checkpoint's weights.
    theirs = hf.state_dict()
    for k, v in hf_state_dict(ours).items():
        torch.testing.assert_close(v, theirs[k])
    bench = write_fixtures(tmp_path / "benchmarks")
    reg = load_registry(evalsets=True)
    twin = HFInHarness(hf, ours.cfg)
    for name in E.EVAL_SETS:
        b = resolve(name, str(bench), reg)
        with torch.no_grad():
            a = E.evaluate_benchmark(ours, b, spec, stride=16)
            h = E.evaluate_benchmark(twin, b, spec, stride=16)
        assert a.keys() == h.keys(), name
        for k in a:
            assert a[k] == (h[k] if isinstance(h[k], str) else pytest.approx(h[k], rel=1e-4)), (name, k)


def test_cli_eval_hf_prints_the_table_beside_the_paper(tiny_hf, tmp_path):
    from typer.testing import CliRunner

    from webtext.pipeline.cli import app

    _, folder = tiny_hf
    bench = write_fixtures(tmp_path / "benchmarks")
    work = tmp_path / "w"
    r = CliRunner().invoke(app, ["--workdir", str(work), "eval", "--hf", str(folder), "--benchmark-dir", str(bench),
                                 "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "paper 117M" in r.output and "LAMBADA (PPL)" in r.output and "35.13" in r.output
    for label in ("CBT-CN (ACC)", "CBT-NE (ACC)", "WikiText2 (PPL)", "PTB (PPL)", "enwik8 (BPB)", "text8 (BPC)",
                  "WikiText103 (PPL)", "1BW (PPL)", "HellaSwag (acc_norm)", "LAMBADA (ACC, stop-word filter)"):
        assert label in r.output
    doc = json.loads((work / "runs" / "hf-tiny-gpt2" / "eval.json").read_text())
    assert doc["paper_column"] == "117M" and doc["source"] == str(folder)
    assert {x["benchmark"] for x in doc["results"]} == set(E.EVAL_SETS)


def _cli(*args, env_home):
    import os

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(env_home)}
    return subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def test_hf_errors_are_one_line_exit_2(tmp_path):
    bad = tmp_path / "llama"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "llama", "architectures": ["LlamaForCausalLM"]}))
    cases = [(str(tmp_path / "no" / "such" / "folder"), "is not a Hugging Face model folder"),
             ("openai-community/gpt2-not-cached", "neither a folder nor a model in the local Hugging Face cache"),
             (str(bad), "holds a llama model; --hf scores GPT-2")]
    for source, message in cases:
        r = _cli("--workdir", str(tmp_path / "w"), "eval", "--hf", source, env_home=tmp_path / "home")
        assert r.returncode == 2, r.stderr
        lines = (r.stdout + r.stderr).strip().splitlines()
        assert len(lines) == 1 and message in lines[0], lines

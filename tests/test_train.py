"""The GPT-2 model and trainer on CPU: architecture, samplers, learning, exact resume,
DDP on gloo, gradient accumulation, eval, sample and the Hugging Face export."""

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from webtext.model import evaluate as E
from webtext.model.data import EpochWindows, RandomWindows, load_split
from webtext.model.gpt import GPT, config_for
from webtext.model.train import load_checkpoint, model_from_checkpoint, train
from webtext.pipeline.config import TrainConfig
from webtext.pipeline.demoweb import docstring_paragraphs
from webtext.pipeline.errors import ConfigError
from webtext.stages import shard as S
from webtext.stages.benchmarks import Benchmark
from webtext.stages.tokenizer import resolve_tokenizer

from conftest import ROOT, doc_row, doc_table, free_port, make_context, shared_path


def test_architecture():
    cfg = config_for("tiny")
    assert cfg.padded_vocab % 64 == 0 and cfg.padded_vocab >= 50257
    m = GPT(cfg)
    assert m.lm_head.weight is m.wte.weight                                     # tied
    assert m.blocks[0].attn.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * cfg.n_layer), rel=0.2)
    assert m.blocks[0].attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.2)
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, 50257, (4, 32), generator=g) for _ in range(2))
    logits, loss = m(x[:2, :8], y[:2, :8])
    assert logits.shape == (2, 8, cfg.padded_vocab)
    _, loss = m(x, y)
    assert loss.item() == pytest.approx(math.log(cfg.padded_vocab), rel=0.05)  # near-uniform at init
    sizes = {name: (c.n_layer, c.n_embd) for name in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")
             for c in [config_for(name)]}
    assert sizes == {"gpt2": (12, 768), "gpt2-medium": (24, 1024), "gpt2-large": (36, 1280), "gpt2-xl": (48, 1600)}
    big = config_for("gpt2")
    assert big.block_size == 1024
    assert 123e6 < GPT(big).num_params(non_embedding=False) < 125e6 + 2e6


def _tokens(tmp_path, paragraphs: int, val_fraction=0.1) -> Path:
    paras = docstring_paragraphs()[:paragraphs]
    (tmp_path / "clean").mkdir()
    rows = [doc_row(f"d{i}", p, url=f"http://x{i}.example/") for i, p in enumerate(paras)]
    pq.write_table(doc_table(rows), tmp_path / "clean" / "clean-00000.parquet")
    S.run(make_context(tmp_path, shard={"val_fraction": val_fraction}))
    return tmp_path / "tokens"


@pytest.fixture
def tokens_dir(tmp_path):
    return _tokens(tmp_path, 60)


def tiny(**kw) -> TrainConfig:
    base = dict(model="tiny", steps=12, batch_size=4, block_size=32, lr=3e-3, warmup_steps=3, eval_every=6,
                eval_tokens=256, log_every=1, run_name="t")
    return TrainConfig(**{**base, **kw})


def losses(run_dir: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())}


def test_tiny_model_overfits_one_small_shard(tmp_path):
    tokens = _tokens(tmp_path, 6)
    cfg = tiny(steps=100, lr=1e-2, warmup_steps=5, eval_every=50, log_every=10, sampling="epoch")
    logs = []
    s = train(tokens, tmp_path / "runs", cfg, log=logs.append)
    first = losses(tmp_path / "runs" / "t")[10]
    assert s["_trained"] and s["steps"] == 100 and first > 3.0
    assert s["final_train_loss"] < 1.0                 # memorised (10.8 at init)
    assert s["final_val_loss"] is not None and s["final_val_loss"] > s["final_train_loss"]
    again = train(tokens, tmp_path / "runs", cfg, log=logs.append)       # finished: no work
    assert not again["_trained"] and "nothing to do" in logs[-1]
    with pytest.raises(ConfigError, match="different lr"):
        train(tokens, tmp_path / "runs", dataclasses.replace(cfg, lr=1e-4), log=logs.append)


@pytest.mark.parametrize("kw", [dict(sampling="random"), dict(sampling="epoch", tokens_per_step=256)])
def test_resume_continues_exactly_as_an_uninterrupted_run(tokens_dir, tmp_path, kw):
    whole = train(tokens_dir, tmp_path / "a", tiny(**kw), log=lambda *_: None)
    part = train(tokens_dir, tmp_path / "b", tiny(**kw), log=lambda *_: None, stop_after=5)   # "preempted"
    assert part["steps"] == 5 and not (tmp_path / "b" / "t" / "summary.json").read_text() == ""
    ck = load_checkpoint(tmp_path / "b" / "t" / "ckpt.pt")
    assert ck["step"] == 5 and set(ck) >= {"model", "optimizer", "schedule", "data", "rng"}
    with open(tmp_path / "b" / "t" / "metrics.jsonl", "a") as f:          # written after the checkpoint, then a crash
        f.write(json.dumps({"step": 6, "loss": 99.0}) + "\n")
    rest = train(tokens_dir, tmp_path / "b", tiny(**kw), log=lambda *_: None)
    a, b = losses(tmp_path / "a" / "t"), losses(tmp_path / "b" / "t")
    assert sorted(b) == list(range(1, 13))                                # the crashed row was dropped
    np.testing.assert_allclose([b[k] for k in sorted(b)], [a[k] for k in sorted(a)], rtol=1e-6)
    assert rest["final_val_loss"] == pytest.approx(whole["final_val_loss"], rel=1e-6)


def test_gradient_accumulation_matches_one_big_batch(tokens_dir, tmp_path):
    one = train(tokens_dir, tmp_path / "a", tiny(steps=3, batch_size=8, sampling="epoch"), log=lambda *_: None)
    acc = train(tokens_dir, tmp_path / "b", tiny(steps=3, batch_size=4, tokens_per_step=256, sampling="epoch"),
                log=lambda *_: None)
    assert acc["tokens_seen"] == one["tokens_seen"] == 3 * 256
    np.testing.assert_allclose(list(losses(tmp_path / "b" / "t").values()),
                               list(losses(tmp_path / "a" / "t").values()), rtol=1e-4)
    with pytest.raises(ConfigError, match="not a multiple"):
        train(tokens_dir, tmp_path / "c", tiny(tokens_per_step=100), log=lambda *_: None)


def _covered(windows, T):
    """The (array, position) of every token a window makes the model predict."""
    return {(w, s + i) for w, s in windows for i in range(1, T + 1)}


@pytest.mark.parametrize("cls", [RandomWindows, EpochWindows])
def test_samplers_give_each_rank_disjoint_tokens(tokens_dir, cls, monkeypatch):
    import webtext.model.data as D

    arrays = load_split(tokens_dir, "train")
    T, world, seen = 16, 3, []
    real = D._gather

    def recording(arrays, which, starts, length):
        seen[-1].extend(zip(which.tolist(), starts.tolist()))
        return real(arrays, which, starts, length)

    monkeypatch.setattr(D, "_gather", recording)
    for rank in range(world):
        seen.append([])
        s = cls(arrays, T, 4, seed=7, rank=rank, world=world)
        batches = 20 if cls is RandomWindows else s.per_rank // 4        # epoch: disjoint within an epoch
        for _ in range(batches):
            x, y = s.batch()
            assert x.shape == y.shape == (4, T) and torch.equal(x[:, 1:], y[:, :-1])
    covered = [_covered(g, T) for g in seen]
    assert all(len(g) >= 4 for g in seen)
    assert all(not (covered[i] & covered[j]) for i in range(world) for j in range(i + 1, world))


def test_epoch_sampling_covers_every_window_once_per_epoch(tokens_dir):
    s = EpochWindows(load_split(tokens_dir, "train"), 16, 5, seed=1)
    ids = s.window_ids(s.per_rank)
    assert sorted(ids.tolist()) == list(range(s.n_windows)) and s.epoch == 1 and s.pos == 0
    s.set_state({"kind": "epoch", "epoch": 0, "pos": 3})
    assert s.window_ids(2).tolist() == ids[3:5].tolist()
    with pytest.raises(ConfigError):
        s.set_state({"kind": "random", "rng": {}})


@pytest.mark.parametrize("nodes", [1, 2], ids=["one-node", "two-nodes"])
def test_ddp_gloo_two_processes_train_on_disjoint_data(tokens_dir, tmp_path, nodes):
    """Two ranks: one torchrun with two processes, or two torchrun "nodes" (--nnodes 2,
    one process each, as on two machines) reading the same work directory."""
    work = tokens_dir.parent
    env = {**os.environ, "PROBE_OUT": str(tmp_path), "MASTER_ADDR": "127.0.0.1", "OMP_NUM_THREADS": "1"}
    port = str(free_port())
    probe = [str(ROOT / "tests" / "ddp_probe.py"), "--workdir", str(work),
             "train", "--model", "tiny", "--steps", "4", "--batch-size", "2", "--block-size", "16",
             "--device", "cpu", "--run-name", "ddp"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--master_addr", "127.0.0.1", "--master_port", port]
    if nodes == 1:
        cmds = [launch + ["--nproc_per_node", "2"] + probe]
    else:
        cmds = [launch + ["--nnodes", "2", "--node_rank", str(n), "--nproc_per_node", "1"] + probe for n in range(2)]
    procs = [subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
             for c in cmds]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    ranks = [json.loads((tmp_path / f"rank{i}.json").read_text()) for i in range(2)]
    assert all(x["world"] == 2 and len(x["windows"]) >= 8 for x in ranks)
    a, b = (_covered(x["windows"], 16) for x in ranks)
    assert not (a & b)                                                    # no token trained on by both ranks
    ck = load_checkpoint(work / "runs" / "ddp" / "ckpt.pt")
    assert ck["step"] == 4 and len(ck["data"]) == len(ck["rng"]) == 2          # every rank's position
    summary = json.loads((work / "runs" / "ddp" / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["tokens_seen"] == 4 * 2 * 16 * 2


def test_checkpoint_loads_into_sample_and_eval(tokens_dir, tmp_path):
    from typer.testing import CliRunner

    from webtext.pipeline.cli import app

    train(tokens_dir, tokens_dir.parent / "runs", tiny(steps=2), log=lambda *_: None)
    work = str(tokens_dir.parent)
    r = CliRunner().invoke(app, ["--workdir", work, "sample", "--run-name", "t", "--prompt", "The pipeline",
                                 "--max-new-tokens", "8", "--num-samples", "2", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert r.output.count("The pipeline") == 2 and "--- sample 2" in r.output
    bench = shared_path("benchmarks")
    r = CliRunner().invoke(app, ["--workdir", work, "eval", "--run-name", "t", "--benchmark-dir", str(bench),
                                 "--limit", "300", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = {x["benchmark"]: x for x in json.loads((tokens_dir.parent / "runs" / "t" / "eval.json").read_text())["results"]}
    assert set(res) == {"wikitext2", "ptb", "lambada"}
    assert res["wikitext2"]["tokens"] == 300 and 1 < res["wikitext2"]["token_ppl"] < 1e6
    assert res["lambada"]["examples"] == 300 and 0 <= res["lambada"]["accuracy"] <= 1


def test_stream_perplexity_scores_every_token_once_with_context():
    torch.manual_seed(0)
    m = GPT(config_for("tiny", block_size=16)).eval()
    ids = torch.randint(0, 50257, (50,)).tolist()
    nll, n = E.stream_nll(m, ids, 50256, stride=4, batch_size=3)
    assert n == 50
    full, n1 = E.stream_nll(m, ids[:15], 50256, stride=16)               # fits one window: plain NLL
    logits, _ = m(torch.tensor([[50256] + ids[:14]]))
    loss = torch.nn.functional.cross_entropy(logits[0, :, :50257], torch.tensor(ids[:15]))   # real vocabulary
    assert n1 == 15 and full / n1 == pytest.approx(loss.item(), rel=1e-5)
    with pytest.raises(ConfigError):
        E.stream_nll(m, ids, 50256, stride=17)


def test_detokenizers_on_real_benchmark_lines():
    wt = shared_path("benchmarks", "wikitext-2", "wiki.test.tokens").read_text(encoding="utf-8")
    out = E.detokenize_wikitext(wt[:20000])
    assert " @-@ " in wt[:20000] and " @-@ " not in out and " , " not in out and " 's" not in out
    assert E.detokenize_wikitext(" = = Gameplay = = \n") == "== Gameplay ==\n"
    assert E.detokenize_ptb("the company 's shares do n't rise , he said .") == "the company's shares don't rise, he said."
    assert E.detokenize_ptb("a 3\\/4 stake in <unk> N") == "a 3/4 stake in <unk> N"


def test_lambada_scores_the_last_word(tmp_path):
    torch.manual_seed(0)
    m = GPT(config_for("tiny")).eval()
    spec = resolve_tokenizer("gpt2")
    f = tmp_path / "l.jsonl"
    f.write_text("\n".join(json.dumps({"text": t}) for t in ["the cat sat on the mat", "one two three four"]))
    r = E.evaluate_benchmark(m, Benchmark("lambada", f, "jsonl"), spec)
    assert r["examples"] == 2 and r["accuracy"] == 0.0 and r["ppl"] > 1000          # untrained


def test_export_matches_transformers_logits(tokens_dir, tmp_path):
    transformers = pytest.importorskip("transformers")
    train(tokens_dir, tokens_dir.parent / "runs", tiny(steps=2), log=lambda *_: None)
    from typer.testing import CliRunner

    from webtext.pipeline.cli import app

    r = CliRunner().invoke(app, ["--workdir", str(tokens_dir.parent), "export", "--hf", "--run-name", "t",
                                 "--out", str(tmp_path / "hf")])
    assert r.exit_code == 0, r.output
    ours = model_from_checkpoint(load_checkpoint(tokens_dir.parent / "runs" / "t" / "ckpt.pt"))
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "hf").eval()
    x = torch.randint(0, 50257, (2, 20))
    with torch.no_grad():
        expected = ours(x)[0][..., :50257]
        got = hf(x).logits
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert transformers.GPT2TokenizerFast.from_pretrained(tmp_path / "hf")("Hello world")["input_ids"] == [15496, 995]


def test_metrics_csv_and_tensorboard_needs_its_package(tokens_dir, tmp_path):
    import csv

    train(tokens_dir, tmp_path / "r", tiny(steps=3, metrics_format="csv"), log=lambda *_: None)
    rows = list(csv.DictReader(open(tmp_path / "r" / "t" / "metrics.csv")))
    assert [int(r["step"]) for r in rows] == [1, 2, 3] and float(rows[-1]["tokens_per_s"]) > 0
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        with pytest.raises(ConfigError, match="tensorboard"):
            train(tokens_dir, tmp_path / "s", tiny(steps=1, tensorboard=True), log=lambda *_: None)
    else:
        train(tokens_dir, tmp_path / "s", tiny(steps=1, tensorboard=True), log=lambda *_: None)
        assert list((tmp_path / "s" / "t" / "tensorboard").iterdir())


@pytest.mark.skipif(not __import__("shutil").which("g++"), reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_matches_eager(tokens_dir, tmp_path):
    """compile = on goes through torch.compile (inductor's CPU backend here; the GPU
    path differs only in the generated kernels)."""
    eager = train(tokens_dir, tmp_path / "e", tiny(steps=2, block_size=16), log=lambda *_: None)
    logs = []
    comp = train(tokens_dir, tmp_path / "c", tiny(steps=2, block_size=16, compile="on"), log=logs.append)
    assert "(compiled)" in logs[0]
    assert comp["final_train_loss"] == pytest.approx(eager["final_train_loss"], rel=1e-4)

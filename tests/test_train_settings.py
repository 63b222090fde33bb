"""The trainer's settings and accounting: each size's defaults (explicit values win), the
learning rate across an extended run, grad_clip, FLOPs per token against PaLM's formula by
hand, the GPU peak table, a val loss independent of the batch layout, the padded
vocabulary, and tokens/s without evaluation and checkpoint time."""

import json
import math
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

import webtext.model.train as T
from webtext.model.data import eval_windows, load_split
from webtext.model.gpt import GPT, config_for
from webtext.model.mfu import PEAK_TFLOPS, device_peak_tflops, peak_flops
from webtext.model.schedule import Schedule
from webtext.pipeline.cli import app
from webtext.pipeline.config import TrainConfig, load_config
from webtext.pipeline.errors import ConfigError

from test_train import _tokens, losses, tiny


@pytest.fixture(scope="module")
def tokens_dir(tmp_path_factory):
    return _tokens(tmp_path_factory.mktemp("tok"), 60)


# ---- each size's defaults; an explicit setting wins ----

def test_gpt2_with_nothing_else_gets_gpt2s_settings():
    c = TrainConfig(model="gpt2")
    assert (c.block_size, c.tokens_per_step, c.lr, c.min_lr, c.warmup_steps) == (1024, 524_288, 6e-4, 6e-5, 715)
    assert (c.steps, c.eval_every, c.ckpt_every, c.eval_tokens) == (19_073, 250, 1000, 10_485_760)
    assert c.tokens_per_step * c.steps == pytest.approx(10e9, rel=1e-4)        # a 10B-token run
    assert set(c.from_size) >= {"block_size", "lr", "warmup_steps", "steps", "min_lr"}
    lrs = {m: TrainConfig(model=m).lr for m in ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")}
    assert lrs == {"gpt2": 6e-4, "gpt2-medium": 3e-4, "gpt2-large": 2.5e-4, "gpt2-xl": 2e-4}   # GPT-3 Table 2.1
    assert TrainConfig(model="gpt2-xl").tokens_per_step == 1_048_576
    t = TrainConfig()
    assert (t.model, t.block_size, t.batch_size, t.lr, t.min_lr, t.warmup_steps) == ("tiny", 128, 8, 1e-3, 1e-4, 20)
    line = T.settings_lines(c)[0]
    assert "block_size 1,024*" in line and "lr 6.00e-04*" in line and "(* = gpt2's defaults)" in line


def test_explicit_settings_win_from_the_file_and_the_cli(tmp_path):
    c = TrainConfig(model="gpt2", lr=1e-4, block_size=512)
    assert (c.lr, c.min_lr, c.block_size, c.warmup_steps) == (1e-4, 1e-5, 512, 715)
    assert "lr" not in c.from_size and "min_lr" in c.from_size
    assert "below gpt2's context 1024" in "\n".join(T.settings_lines(c))
    p = tmp_path / "webtext.toml"
    p.write_text("[train]\nlr = 2e-4\nwarmup_steps = 100\n")
    c = load_config(p, {"train": {"model": "gpt2", "warmup_steps": 50}}).train
    assert (c.lr, c.warmup_steps, c.block_size) == (2e-4, 50, 1024)          # CLI > file > size default


def test_cli_train_passes_every_option(tmp_path, monkeypatch):
    got = []
    monkeypatch.setattr(T, "train", lambda tokens, runs, cfg, log: got.append(cfg) or {"_trained": False})
    r = CliRunner().invoke(app, ["--workdir", str(tmp_path), "train", "--model", "gpt2"])
    assert r.exit_code == 0, r.output
    assert (got[0].block_size, got[0].lr, got[0].warmup_steps) == (1024, 6e-4, 715)
    r = CliRunner().invoke(app, ["--workdir", str(tmp_path), "train", "--model", "gpt2", "--block-size", "256",
                                 "--lr", "1e-4", "--min-lr", "0", "--warmup-steps", "10", "--grad-clip", "0",
                                 "--eval-every", "7", "--eval-tokens", "999", "--checkpoint-every", "3",
                                 "--peak-tflops", "50"])
    assert r.exit_code == 0, r.output
    c = got[1]
    assert (c.block_size, c.lr, c.min_lr, c.warmup_steps, c.grad_clip, c.eval_every, c.eval_tokens, c.ckpt_every,
            c.peak_tflops) == (256, 1e-4, 0.0, 10, 0.0, 7, 999, 3, 50.0)


# ---- grad_clip: 0 is no clipping, negative is an error ----

def test_negative_grad_clip_is_a_one_line_error(tmp_path):
    with pytest.raises(ConfigError, match="train.grad_clip must be >= 0"):
        TrainConfig(grad_clip=-1.0)
    r = subprocess.run([sys.executable, "-m", "webtext.pipeline.cli", "--workdir", str(tmp_path), "train",
                        "--grad-clip", "-1"], capture_output=True, text=True, timeout=120)
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(errors) == 1, r.stderr
    assert "train.grad_clip must be >= 0" in errors[0] and "0 for no clipping" in r.stderr


def test_grad_clip_zero_trains(tokens_dir, tmp_path):
    s = T.train(tokens_dir, tmp_path, tiny(steps=8, grad_clip=0.0, eval_every=100), log=lambda *_: None)
    rows = [json.loads(x) for x in (tmp_path / "t" / "metrics.jsonl").read_text().splitlines()]
    assert all(r["grad_norm"] > 0 for r in rows)
    assert s["final_train_loss"] < rows[0]["loss"] - 0.5                   # it learns (0 used to zero the gradient)


# ---- the learning rate when a run is extended ----

@pytest.mark.parametrize("at", [12, 6, 2])        # finished; mid-decay; during the warmup
def test_extending_a_run_continues_the_schedule(at):
    s = Schedule(lr=3e-3, min_lr=3e-4, warmup_steps=3, steps=12)
    before = [s(i) for i in range(at)]
    s.resize(at, 24)
    after = [s(i) for i in range(at, 24)]
    assert before == [Schedule(3e-3, 3e-4, 3, 12)(i) for i in range(at)]   # the past is unchanged
    if at > 3:
        assert max(after) <= before[-1] + 1e-12                             # no jump up
        assert all(b <= a + 1e-12 for a, b in zip(after, after[1:]))       # decays from where it stood
    assert s(24) == pytest.approx(3e-4) and after[-1] == pytest.approx(3e-4, rel=0.1)


@pytest.mark.parametrize("stop", [6, 12])          # preempted mid-decay, then extended; finished, then extended
def test_extended_run_logs_a_smooth_rate(tokens_dir, tmp_path, stop):
    cfg = tiny(steps=12, warmup_steps=3, eval_every=100)
    T.train(tokens_dir, tmp_path, cfg, log=lambda *_: None, stop_after=stop)
    logs = []
    T.train(tokens_dir, tmp_path, tiny(steps=24, warmup_steps=3, eval_every=100), log=logs.append)
    rows = {r["step"]: r["lr"] for r in map(json.loads, (tmp_path / "t" / "metrics.jsonl").read_text().splitlines())}
    assert sorted(rows) == list(range(1, 25))
    assert max(rows[k] for k in range(stop + 1, 25)) <= rows[stop] + 1e-12
    assert all(rows[k + 1] <= rows[k] + 1e-12 for k in range(stop, 24))
    assert rows[24] == pytest.approx(cfg.min_lr, rel=0.1)
    assert any("steps 12 -> 24" in m and "no new warmup" in m for m in logs)
    ck = T.load_checkpoint(tmp_path / "t" / "ckpt.pt")
    assert ck["schedule"]["segments"][0][0] == stop


# ---- FLOPs per token and the peak table ----

@pytest.mark.parametrize("name", ["tiny", "gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl"])
def test_flops_per_token_is_palms_formula(name):
    c = config_for(name)
    with torch.device("meta"):
        m = GPT(c)
    L, C, H, V = c.n_layer, c.n_embd, c.n_head, c.padded_vocab
    n = V * C + L * (12 * C * C + 13 * C) + 2 * C       # wte (tied lm_head), blocks, ln_f; no wpe (nanoGPT's N)
    assert m.num_params() == n
    for t in (128, 1024):
        assert m.flops_per_token(t) == 6 * n + 12 * L * H * (C // H) * t
    if name == "gpt2":
        assert m.flops_per_token(1024) == 855_383_040                      # 8.55e8, the figure nanoGPT reports


def test_peak_table_matches_exact_device_names(monkeypatch):
    expect = {"NVIDIA H100 80GB HBM3": 989, "NVIDIA H100 PCIe": 756, "NVIDIA H100 NVL": 835, "NVIDIA H200": 989,
              "NVIDIA H800": 989, "NVIDIA B200": 2250, "NVIDIA A100-SXM4-80GB": 312, "NVIDIA A100-PCIE-40GB": 312,
              "NVIDIA L40S": 362, "NVIDIA L40": 181, "NVIDIA L4": 121}
    assert {k: device_peak_tflops(k) for k in expect} == expect
    for unknown in ("NVIDIA H100", "Tesla V100-SXM2-16GB", "NVIDIA L40 (custom)", "H100"):
        assert device_peak_tflops(unknown) is None
    assert all(0 < v < 3000 for v in PEAK_TFLOPS.values())
    assert peak_flops("cpu")[0] is None and peak_flops("cpu", 100.0)[0] == 100e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA H100 PCIe")
    assert peak_flops("cuda:0")[0] == 756e12 and peak_flops("cuda:0", 500.0)[0] == 500e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA Future GPU")
    peak, why = peak_flops("cuda:0")
    assert peak is None and "--peak-tflops" in why


# ---- validation loss: the same windows whatever the layout ----

def test_val_loss_does_not_depend_on_the_batch_layout(tokens_dir, tmp_path):
    T.train(tokens_dir, tmp_path, tiny(steps=2), log=lambda *_: None)
    model = T.model_from_checkpoint(T.load_checkpoint(tmp_path / "t" / "ckpt.pt"))
    val = load_split(tokens_dir, "val")
    w = eval_windows(val, 16, 20 * 16)
    assert len(w[0]) == 20 and len(eval_windows(val, 16, 10**9)[0]) > 20      # 20 of the split's windows
    assert all((a == b).all() for a, b in zip(w, eval_windows(val, 16, 20 * 16)))     # seeded, fixed

    def mean(batch, world):
        parts = [T.eval_sums(model, val, w, 16, batch, "cpu", r, world) for r in range(world)]
        return sum(p[0] for p in parts) / sum(p[1] for p in parts)

    one = mean(5, 1)
    assert mean(3, 1) == pytest.approx(one, rel=1e-6)
    assert mean(4, 2) == pytest.approx(one, rel=1e-6)                     # two ranks, 10 windows each
    assert mean(1, 3) == pytest.approx(one, rel=1e-6)                     # three ranks, uneven shares


# ---- padded vocabulary, position init ----

def test_padded_vocabulary_is_outside_the_softmax():
    torch.manual_seed(0)
    m = GPT(config_for("tiny"))
    assert m.wpe.weight.std().item() == pytest.approx(0.01, rel=0.1)        # OpenAI's wpe init
    x = torch.randint(0, 50257, (2, 16))
    logits, loss = m(x, x)
    logits = logits.detach().clone()
    logits[..., 50257:] = 1e4                                            # mass on the padding would show
    ref = torch.nn.functional.cross_entropy(logits[..., :50257].reshape(-1, 50257), x.reshape(-1))
    assert m.loss(logits, x).item() == pytest.approx(ref.item(), rel=1e-6)
    assert loss.item() < math.log(50304)


# ---- tokens/s leaves evaluation and checkpoints out ----

def test_tokens_per_s_excludes_eval_and_checkpoint_time(tokens_dir, tmp_path, monkeypatch):
    real_eval, real_save = T.evaluate, torch.save
    monkeypatch.setattr(T, "evaluate", lambda *a: time.sleep(0.4) or real_eval(*a))
    monkeypatch.setattr(torch, "save", lambda *a, **k: time.sleep(0.4) or real_save(*a, **k))
    T.train(tokens_dir, tmp_path, tiny(steps=4, eval_every=2), log=lambda *_: None)
    rows = {r["step"]: r for r in map(json.loads, (tmp_path / "t" / "metrics.jsonl").read_text().splitlines())}
    assert rows[2]["eval_s"] >= 0.4 and rows[3]["ckpt_s"] >= 0.4             # the step-2 checkpoint, next line
    for k in (2, 3):        # training time = the wall time between two lines less the pauses in it
        train_s = 4 * 32 / rows[k]["tokens_per_s"]
        assert train_s < rows[k]["elapsed_s"] - rows[k - 1]["elapsed_s"] - 0.35
    assert losses(tmp_path / "t")[4] > 0

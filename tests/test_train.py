"""The GPT-2 model and trainer on CPU: architecture details, learning, checkpoints."""

import math

import pyarrow.parquet as pq
import pytest
import torch

from model.gpt import GPT, config_for
from model.train import train
from pipeline.config import TrainConfig
from pipeline.demoweb import docstring_paragraphs
from pipeline.errors import ConfigError
from stages import shard as S

from conftest import doc_row, doc_table, make_context


def test_architecture():
    cfg = config_for("tiny")
    assert cfg.padded_vocab % 64 == 0 and cfg.padded_vocab >= 50257
    m = GPT(cfg)
    assert m.lm_head.weight is m.wte.weight                                     # tied
    assert m.blocks[0].attn.proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(2 * cfg.n_layer), rel=0.2)
    g = torch.Generator().manual_seed(0)
    x, y = (torch.randint(0, 50257, (4, 32), generator=g) for _ in range(2))
    logits, loss = m(x[:2, :8], y[:2, :8])
    assert logits.shape == (2, 8, cfg.padded_vocab)
    _, loss = m(x, y)
    assert loss.item() == pytest.approx(math.log(cfg.padded_vocab), rel=0.05)  # near-uniform at init
    big = config_for("gpt2")
    assert (big.n_layer, big.n_embd, big.block_size) == (12, 768, 1024)
    assert 123e6 < GPT(big).num_params(non_embedding=False) < 125e6 + 2e6


@pytest.fixture
def tokens_dir(tmp_path):
    paras = docstring_paragraphs()[:60]
    (tmp_path / "clean").mkdir()
    rows = [doc_row(f"d{i}", p, url=f"http://x{i}.example/") for i, p in enumerate(paras)]
    pq.write_table(doc_table(rows), tmp_path / "clean" / "clean-00000.parquet")
    S.run(make_context(tmp_path, shard={"val_fraction": 0.1}))
    return tmp_path / "tokens"


def test_tiny_model_learns_and_checkpoint_resumes(tokens_dir, tmp_path):
    cfg = TrainConfig(model="tiny", steps=60, batch_size=8, block_size=64, lr=3e-3, warmup_steps=5,
                      eval_every=30, eval_batches=2, run_name="t")
    logs = []
    summary = train(tokens_dir, tmp_path / "runs", cfg, log=logs.append)
    assert summary["_trained"] and summary["steps"] == 60
    first = [float(l.split("loss ")[1].split()[0]) for l in logs if "step 30/" in l][0]
    assert summary["final_train_loss"] < 7.0 < first + 1          # from ~10.8 at init
    assert summary["final_val_loss"] is not None
    again = train(tokens_dir, tmp_path / "runs", cfg, log=logs.append)       # finished: no work
    assert not again["_trained"] and "nothing to do" in logs[-1]
    ck = torch.load(tmp_path / "runs" / "t" / "ckpt.pt", weights_only=False)
    m = GPT(config_for("tiny"))
    m.load_state_dict(ck["model"])
    out = m.generate(torch.tensor([[464]]), max_new_tokens=5)
    assert out.shape == (1, 6) and int(out.max()) < 50257
    with pytest.raises(ConfigError, match="different config"):
        train(tokens_dir, tmp_path / "runs", TrainConfig(**{**cfg.__dict__, "lr": 1e-4}), log=logs.append)

"""train: ``tokens/`` -> ``runs/<run_name>/`` (checkpoint, metrics, summary).

Single-process trainer: AdamW (decoupled weight decay on matrices only, fused on CUDA),
linear warmup then cosine decay to ``min_lr``, gradient clipping, bf16 autocast on CUDA.
Every ``eval_every`` steps and at the end it measures validation loss on the same
``eval_batches`` val windows. ``ckpt.pt`` holds model, optimizer, step, config, and the
data sampler's and torch's RNG states; rerunning with the same run name resumes from it,
and a finished run does no work. ``metrics.jsonl`` has one line per logged step.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from pipeline.config import TrainConfig
from pipeline.errors import ConfigError
from pipeline.io import atomic_path, write_json

from .data import RandomWindows, load_split, read_manifest
from .gpt import GPT, config_for


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available", "Use --device cpu or auto")
    return name


def lr_at(step: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.min_lr + 0.5 * (cfg.lr - cfg.min_lr) * (1 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: GPT, cfg: TrainConfig, device: str) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=device == "cuda")


@torch.no_grad()
def evaluate(model: GPT, windows: RandomWindows | None, n: int, device: str, seed: int) -> float | None:
    if windows is None:
        return None
    model.eval()
    saved = windows.state()
    windows.rng = __import__("numpy").random.default_rng(seed)   # the same val windows every time
    losses = []
    for _ in range(n):
        x, y = windows.batch()
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
            _, loss = model(x.to(device), y.to(device))
        losses.append(loss.item())
    windows.set_state(saved)
    model.train()
    return sum(losses) / len(losses)


def train(tokens_dir: Path, runs_dir: Path, cfg: TrainConfig, log=print) -> dict:
    device = pick_device(cfg.device)
    run_dir = Path(runs_dir) / cfg.run_name
    ckpt_path, metrics_path = run_dir / "ckpt.pt", run_dir / "metrics.jsonl"
    manifest = read_manifest(tokens_dir)
    mcfg = config_for(cfg.model, vocab_size=manifest.get("vocab_size", 50257))
    if cfg.block_size > mcfg.block_size:
        raise ConfigError(f"block_size {cfg.block_size} exceeds {cfg.model}'s context {mcfg.block_size}")
    torch.manual_seed(cfg.seed)
    model = GPT(mcfg).to(device)
    opt = make_optimizer(model, cfg, device)
    train_w = RandomWindows(load_split(tokens_dir, "train", manifest), cfg.block_size, cfg.batch_size, cfg.seed)
    val_arrays = load_split(tokens_dir, "val", manifest)
    val_w = None
    if any(len(a) > cfg.block_size + 1 for a in val_arrays):
        val_w = RandomWindows(val_arrays, cfg.block_size, cfg.batch_size, cfg.seed + 1)
    step, summary = 0, {}
    if ckpt_path.exists():
        ck = torch.load(ckpt_path, map_location=device, weights_only=False)
        if ck["train_config"] != dataclasses.asdict(cfg) | {"steps": ck["train_config"]["steps"]}:
            raise ConfigError(f"{ckpt_path} was trained with a different config",
                              "Use another --run-name, or delete the run folder to start over")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        train_w.set_state(ck["data_rng"])
        torch.set_rng_state(ck["torch_rng"])
        step, summary = ck["step"], ck.get("summary", {})
        if step >= cfg.steps:
            log(f"  train: run '{cfg.run_name}' already at step {step}/{cfg.steps}, nothing to do")
            return {**summary, "_trained": False}
        log(f"  train: resuming run '{cfg.run_name}' at step {step}")
    run_dir.mkdir(parents=True, exist_ok=True)
    log(f"  train: {cfg.model} ({model.num_params() / 1e6:.2f}M params) on {device}, {cfg.steps} steps "
        f"of {cfg.batch_size}x{cfg.block_size} tokens")
    flops_tok = model.flops_per_token(cfg.block_size)
    t0, tokens_done, loss_v = time.time(), 0, float("nan")
    with open(metrics_path, "a") as metrics:
        while step < cfg.steps:
            lr = lr_at(step, cfg)
            for g in opt.param_groups:
                g["lr"] = lr
            x, y = train_w.batch()
            with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=device == "cuda"):
                _, loss = model(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            step += 1
            tokens_done += x.numel()
            loss_v = loss.item()
            rec = {"step": step, "loss": loss_v, "lr": lr}
            if step % cfg.eval_every == 0 or step == cfg.steps:
                rec["val_loss"] = evaluate(model, val_w, cfg.eval_batches, device, cfg.seed + 2)
                dt = time.time() - t0
                rec["tokens_per_s"] = tokens_done / dt
                rec["mfu"] = rec["tokens_per_s"] * flops_tok / 989e12 if device == "cuda" else None
                val = f"{rec['val_loss']:.3f}" if rec["val_loss"] is not None else "n/a"
                log(f"  train: step {step}/{cfg.steps} loss {loss_v:.3f} val {val} "
                    f"{rec['tokens_per_s']:.0f} tok/s")
            metrics.write(json.dumps(rec) + "\n")
    summary = {"steps": step, "final_train_loss": loss_v, "final_val_loss": rec.get("val_loss"),
               "tokens_per_s": tokens_done / max(time.time() - t0, 1e-9), "device": device,
               "params": model.num_params(), "model": cfg.model}
    with atomic_path(ckpt_path) as tmp:
        torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                    "model_config": dataclasses.asdict(mcfg), "train_config": dataclasses.asdict(cfg),
                    "data_rng": train_w.state(), "torch_rng": torch.get_rng_state(), "summary": summary}, tmp)
    write_json(run_dir / "summary.json", summary)
    return {**summary, "_trained": True}

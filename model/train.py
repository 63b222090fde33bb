"""train: ``tokens/`` -> ``runs/<run_name>/`` (checkpoint, metrics, summary).

One process, or one per GPU under ``torchrun`` (DDP; NCCL on CUDA, gloo on CPU; the
rank, world size and rendezvous come from torchrun's environment, single- or
multi-node). Each rank reads disjoint data (see ``model.data``).

Settings a config leaves unset take the model size's defaults (``pipeline.train_recipes``:
context 1024, 0.5M tokens a step and GPT-3's learning rates for the GPT-2 sizes); the run
prints its effective settings first and marks those.

A step is ``accum`` micro-batches of ``batch_size`` x ``block_size`` tokens on every rank,
where ``accum = tokens_per_step / (batch_size * block_size * world)`` (1 when
``tokens_per_step`` is 0); gradients are synchronised on the last micro-batch only.
AdamW with decoupled weight decay on matrices only (fused on CUDA), linear warmup then
cosine decay to ``min_lr`` (``model.schedule``; raising ``steps`` continues the decay from
the current rate), gradient clipping (``grad_clip`` 0: none), bf16 autocast and TF32 on
CUDA, ``torch.compile`` when ``compile`` is on (``auto``: on CUDA).

Checkpoints (``ckpt.pt``, written atomically by rank 0 every ``ckpt_every`` steps, or at
every evaluation, and at the end) hold the model, optimizer, LR schedule, step, configs,
the tokenizer, and per rank the data sampler's position and the torch (and CUDA) RNG
state. Rerunning with the same run name resumes from it, and the run continues exactly
as if uninterrupted (a CPU test compares the loss curves); a finished run does no work.
Metrics (``metrics.jsonl`` or ``metrics.csv``, TensorBoard optional) get a line every
``log_every`` steps: step, loss, lr, grad norm, tokens/s, MFU, val loss at evaluations,
and the seconds spent evaluating and checkpointing since the last line (tokens/s and MFU
count training time only). MFU counts PaLM's 6N + 12 L H Q T FLOPs per token (as nanoGPT;
``model.mfu``) against the GPU's dense bf16 peak. Validation loss is over a fixed set of
windows (``model.data.eval_windows``), comparable across runs, batch layouts and machines.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from webtext.pipeline.config import TrainConfig
from webtext.pipeline.errors import ConfigError, MissingInputError
from webtext.pipeline.io import atomic_path, write_json
from webtext.pipeline.train_recipes import SIZE_DEFAULTS

from .data import Prefetcher, eval_windows, load_split, make_sampler, read_manifest, window_batches
from .gpt import GPT, config_for
from .metrics import Metrics
from .mfu import peak_flops
from .schedule import Schedule
# the fields a resumed run must share with its checkpoint (steps may grow)
TRAJECTORY = ("model", "batch_size", "block_size", "tokens_per_step", "sampling", "lr", "min_lr",
              "warmup_steps", "weight_decay", "grad_clip", "seed", "corpus_version")


def pick_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available", "Use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"train.device must be auto, cpu or cuda, not {name!r}")
    return name


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    started: bool = False        # we called init_process_group (and so tear it down)

    @property
    def main(self) -> bool:
        return self.rank == 0


def dist_init(device_pref: str) -> tuple[Dist, str]:
    """(rank info, device) from torchrun's environment; one process when it is absent."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = pick_device(device_pref)
    if world == 1:
        return Dist(), device
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device == "cuda":
        torch.cuda.set_device(local)
        device = f"cuda:{local}"
    started = not dist.is_initialized()
    if started:
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(rank, world, local, started), device


def _all_gather(obj, d: Dist) -> list:
    if d.world == 1:
        return [obj]
    import torch.distributed as dist

    out = [None] * d.world
    dist.all_gather_object(out, obj)
    return out


def _all_mean(values: list[float], d: Dist, device: str) -> list[float]:
    if d.world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return (t / d.world).tolist()


def _all_sum(values: list[float], d: Dist, device: str) -> list[float]:
    if d.world == 1:
        return values
    import torch.distributed as dist

    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def schedule_for(cfg: TrainConfig) -> Schedule:
    return Schedule(cfg.lr, cfg.min_lr, cfg.warmup_steps, cfg.steps)


def settings_lines(cfg: TrainConfig) -> list[str]:
    """The effective settings, those from the model size's defaults marked with *, and
    warnings about combinations that defeat the schedule."""
    shown = ("steps", "block_size", "batch_size", "tokens_per_step", "lr", "min_lr", "warmup_steps", "weight_decay",
             "grad_clip", "eval_every", "eval_tokens", "ckpt_every")

    def fmt(k):
        v = getattr(cfg, k)
        text = f"{v:.2e}" if k in ("lr", "min_lr") else (f"{v:,}" if isinstance(v, int) else f"{v:g}")
        return f"{k} {text}{'*' if k in getattr(cfg, 'from_size', ()) else ''}"

    lines = [f"  train: settings: {', '.join(fmt(k) for k in shown)}"
             + (f" (* = {cfg.model}'s defaults)" if getattr(cfg, "from_size", ()) else "")]
    if cfg.warmup_steps >= cfg.steps:
        lines.append(f"  train: warning: warmup_steps {cfg.warmup_steps:,} >= steps {cfg.steps:,}: the learning rate "
                     f"never reaches lr (set --warmup-steps)")
    ctx = SIZE_DEFAULTS[cfg.model]["block_size"]
    if cfg.block_size < ctx and cfg.model != "tiny":   # e.g. a webtext.toml copied from an older example
        lines.append(f"  train: warning: block_size {cfg.block_size} (given) is below {cfg.model}'s context {ctx}, "
                     f"which its other defaults assume")
    if cfg.min_lr > cfg.lr:
        lines.append(f"  train: warning: min_lr {cfg.min_lr:.2e} > lr {cfg.lr:.2e}: the rate rises as it 'decays'")
    return lines


def accumulation(cfg: TrainConfig, world: int) -> int:
    micro = cfg.batch_size * cfg.block_size * world
    if cfg.tokens_per_step == 0:
        return 1
    if cfg.tokens_per_step % micro:
        raise ConfigError(f"train.tokens_per_step = {cfg.tokens_per_step:,} is not a multiple of batch_size x "
                          f"block_size x ranks = {micro:,}", f"Use a multiple of {micro:,}, or 0")
    return cfg.tokens_per_step // micro


def make_optimizer(model: GPT, cfg: TrainConfig, device: str) -> torch.optim.AdamW:
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=device.startswith("cuda"))


def _autocast(device: str):
    return torch.autocast(device_type="cuda", dtype=torch.bfloat16) if device.startswith("cuda") \
        else contextlib.nullcontext()


@torch.no_grad()
def eval_sums(model: GPT, val_arrays: list[np.ndarray], windows: tuple[np.ndarray, np.ndarray], block_size: int,
              batch_size: int, device: str, rank: int = 0, world: int = 1) -> tuple[float, int]:
    """(summed loss, tokens) over this rank's share of ``windows`` (every world-th one),
    in micro-batches of ``batch_size``: any layout adds up to the same sums."""
    which, starts = windows[0][rank::world], windows[1][rank::world]
    was_training = model.training
    model.eval()
    total, n = 0.0, 0
    for x, y in window_batches(val_arrays, which, starts, block_size, batch_size):
        with _autocast(device):
            logits, _ = model(x.to(device))
        total += model.loss(logits, y.to(device), reduction="none").double().sum().item()
        n += y.numel()
    model.train(was_training)
    return total, n


def evaluate(model: GPT, val_arrays: list[np.ndarray], windows, cfg: TrainConfig, d: Dist, device: str) -> float | None:
    """Mean loss per token over the fixed validation windows; None without any."""
    if not len(windows[0]):
        return None
    total, n = _all_sum(list(eval_sums(model, val_arrays, windows, cfg.block_size, cfg.batch_size, device,
                                       d.rank, d.world)), d, device)
    return total / n


def _rng_state(device: str) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.startswith("cuda"):
        state["cuda"] = torch.cuda.get_rng_state(torch.device(device))
    return state


def _set_rng_state(state: dict, device: str) -> None:
    torch.set_rng_state(state["torch"])
    if device.startswith("cuda") and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], torch.device(device))


def load_checkpoint(path: Path, device: str = "cpu") -> dict:
    """``runs/<name>/ckpt.pt``. A missing one is a MissingInputError that lists the runs
    with a checkpoint beside it (``runs/*/ckpt.pt``)."""
    path = Path(path)
    if not path.is_file():
        runs = sorted(p.parent.name for p in path.parent.parent.glob("*/ckpt.pt"))
        if runs:
            raise MissingInputError(f"no checkpoint for run '{path.parent.name}' ({path})",
                                    f"Runs with a checkpoint: {', '.join(runs)}. Use --run-name NAME")
        raise MissingInputError(f"no checkpoint {path}: no run in {path.parent.parent} has one",
                                "Train first: webtext train --run-name NAME")
    return torch.load(path, map_location=device, weights_only=False)


def model_from_checkpoint(ck: dict, device: str = "cpu") -> GPT:
    from .gpt import GPTConfig

    mc = {k: v for k, v in ck["model_config"].items() if k != "padded_vocab"}
    model = GPT(GPTConfig(**mc)).to(device)
    model.load_state_dict(ck["model"])
    return model.eval()


def train(tokens_dir: Path, runs_dir: Path, cfg: TrainConfig, log=print, stop_after: int | None = None) -> dict:
    """Train (or resume) ``cfg.run_name``. ``stop_after``: leave after that many steps in
    all, with a checkpoint, as a preempted job would (the next call resumes)."""
    d, device = dist_init(cfg.device)
    try:
        return _train(tokens_dir, runs_dir, cfg, d, device, log if d.main else (lambda *_: None), stop_after)
    finally:
        if d.started:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(tokens_dir, runs_dir, cfg: TrainConfig, d: Dist, device: str, log, stop_after) -> dict:
    run_dir = Path(runs_dir) / cfg.run_name
    ckpt_path = run_dir / "ckpt.pt"
    try:                                                   # one rank hashes the shards
        manifest, err = read_manifest(tokens_dir, verify=d.main, version=cfg.corpus_version), None
    except MissingInputError as e:
        manifest, err = None, e
    errors = [e for e in _all_gather(err and (err.what, err.fix), d) if e]
    if errors:                                             # every rank stops, none hangs
        raise MissingInputError(*errors[0])
    mcfg = config_for(cfg.model, vocab_size=manifest.get("vocab_size", 50257))
    if cfg.block_size > mcfg.block_size:
        raise ConfigError(f"block_size {cfg.block_size} exceeds {cfg.model}'s context {mcfg.block_size}")
    accum = accumulation(cfg, d.world)
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed)
    model = GPT(mcfg).to(device)
    opt = make_optimizer(model, cfg, device)
    sched = schedule_for(cfg)
    sampler = make_sampler(cfg.sampling, load_split(tokens_dir, "train", manifest), cfg.block_size,
                           cfg.batch_size, cfg.seed, d.rank, d.world)
    val_arrays = load_split(tokens_dir, "val", manifest)
    windows = eval_windows(val_arrays, cfg.block_size, cfg.eval_tokens)
    step, summary, resized = 0, {}, None
    torch.manual_seed(cfg.seed + d.rank)                   # dropout differs per rank
    if ckpt_path.exists():
        ck = load_checkpoint(ckpt_path, device)
        was = ck["train_config"]
        changed = [k for k in TRAJECTORY if was.get(k, getattr(TrainConfig, k, None)) != getattr(cfg, k)]
        if changed:    # e.g. a run started before the size's defaults existed: its values are listed
            then = ", ".join(f"{k} {was.get(k)!r} (now {getattr(cfg, k)!r})" for k in changed)
            raise ConfigError(f"{ckpt_path} was trained with different {', '.join(changed)}: {then}",
                              "Set those values to continue it, use another --run-name, or delete the run folder")
        if len(ck["data"]) != d.world:
            raise ConfigError(f"{ckpt_path} was trained on {len(ck['data'])} rank(s), this run has {d.world}",
                              "Resume with the same number of processes")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sampler.set_state(ck["data"][d.rank])
        _set_rng_state(ck["rng"][d.rank], device)
        step, summary = ck["step"], ck.get("summary", {})
        if step >= cfg.steps:
            log(f"  train: run '{cfg.run_name}' already at step {step}/{cfg.steps}, nothing to do")
            return {**summary, "_trained": False}
        # checkpoints before model.schedule: the plain warmup + cosine over their steps
        sched = Schedule(**ck["schedule"]) if "schedule" in ck else \
            Schedule(cfg.lr, cfg.min_lr, cfg.warmup_steps, was.get("steps", cfg.steps))
        resized = sched.resize(step, cfg.steps)
        log(f"  train: resuming run '{cfg.run_name}' at step {step}"
            + (f"; steps {was.get('steps', '?')} -> {cfg.steps}: {resized}" if resized else ""))
    if d.main:
        run_dir.mkdir(parents=True, exist_ok=True)
        # the corpus version this run reads (`webtext gc` keeps it while the run is here)
        write_json(run_dir / "corpus.json", {"corpus_version": manifest.get("version", 1),
                                             "folder": manifest.get("folder"), "source": manifest.get("source")})
    use_compile = cfg.compile == "on" or (cfg.compile == "auto" and device.startswith("cuda"))
    net = torch.compile(model) if use_compile else model
    if d.world > 1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(net, device_ids=[d.local_rank] if device.startswith("cuda") else None)
    tokens_step = cfg.batch_size * cfg.block_size * accum * d.world
    log(f"  train: {cfg.model} ({model.num_params() / 1e6:.2f}M params) on {d.world} x {device}"
        f"{' (compiled)' if use_compile else ''}, {cfg.steps} steps of {tokens_step:,} tokens "
        f"({cfg.batch_size} x {cfg.block_size} x {accum} micro-batch(es) x {d.world} rank(s)), "
        f"{cfg.sampling} sampling")
    for line in settings_lines(cfg):
        log(line)
    flops_tok = model.flops_per_token(cfg.block_size)
    peak, peak_note = peak_flops(device, cfg.peak_tflops)
    log(f"  train: MFU = tokens/s x {flops_tok:.3g} FLOPs/token (PaLM's 6N + 12 L H Q T, N = {model.num_params():,}, "
        f"T = {cfg.block_size}) / peak; {peak_note}")
    log(f"  train: validation: {len(windows[0]):,} fixed windows of {cfg.block_size} tokens "
        f"({len(windows[0]) * cfg.block_size:,} tokens; eval_tokens {cfg.eval_tokens:,})"
        if len(windows[0]) else "  train: validation: none (the val split holds no window)")
    tokenizer = {k: manifest.get(k) for k in ("tokenizer", "backend", "vocab_size", "eot", "vocab_sha256",
                                                "tokenizer_path")}
    metrics = Metrics(run_dir, cfg, step, d.main)
    loader = Prefetcher(sampler, device)
    data_state = sampler.state()
    t_start = t_log = time.time()
    tokens_log, last, rec = 0, step, {}
    paused = {"eval_s": 0.0, "ckpt_s": 0.0}       # since the last metrics line; not training time
    end = cfg.steps if stop_after is None else min(cfg.steps, stop_after)

    def checkpoint() -> None:
        t0 = time.time()
        states, rngs = _all_gather(data_state, d), _all_gather(_rng_state(device), d)
        if not d.main:
            return
        with atomic_path(ckpt_path) as tmp:
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "schedule": sched.state(),
                        "step": step, "model_config": dataclasses.asdict(mcfg),
                        "train_config": dataclasses.asdict(cfg), "tokenizer": tokenizer,
                        "source": manifest.get("source"), "corpus_version": manifest.get("version", 1),
                        "data": states, "rng": rngs, "summary": summary}, tmp)
        paused["ckpt_s"] += time.time() - t0

    try:
        while step < end:
            loss_sum = torch.zeros((), device=device)
            for micro in range(accum):
                x, y, data_state = loader.next()
                sync = micro == accum - 1 or d.world == 1
                with (contextlib.nullcontext() if sync else net.no_sync()):
                    with _autocast(device):
                        _, loss = net(x, y)
                    (loss / accum).backward()
                loss_sum += loss.detach()
            # grad_clip 0 = no clipping (as in nanoGPT): the norm is still measured and logged
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip or float("inf"))
            lr = sched(step)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.step()
            opt.zero_grad(set_to_none=True)
            step += 1
            tokens_log += tokens_step
            is_eval = step % cfg.eval_every == 0 or step == cfg.steps
            if step % cfg.log_every == 0 or is_eval or step == end:
                loss_v, gn = _all_mean([loss_sum.item() / accum, float(grad_norm)], d, device)
                now = time.time()
                # training time only: the last line's evaluation and checkpoints are left out
                tps = tokens_log / max(now - t_log - paused["eval_s"] - paused["ckpt_s"], 1e-9)
                rec = {"step": step, "loss": loss_v, "lr": lr, "grad_norm": gn, "tokens_per_s": tps,
                       "mfu": tps * flops_tok / (peak * d.world) if peak else None}
                if is_eval:
                    t0 = time.time()
                    rec["val_loss"] = evaluate(model, val_arrays, windows, cfg, d, device)
                    paused["eval_s"] += time.time() - t0
                rec.update(eval_s=paused["eval_s"], ckpt_s=paused["ckpt_s"], elapsed_s=time.time() - t_start)
                metrics.write(rec)
                val = f" val {rec['val_loss']:.3f} ({paused['eval_s']:.1f} s)" if rec.get("val_loss") is not None else ""
                mfu = f" mfu {rec['mfu']:.1%}" if rec["mfu"] is not None else ""
                ck = f" ckpt {paused['ckpt_s']:.1f} s" if paused["ckpt_s"] else ""
                log(f"  train: step {step}/{cfg.steps} loss {loss_v:.3f}{val} lr {lr:.2e} "
                    f"{tps:,.0f} tok/s{mfu}{ck}")
                t_log, tokens_log = time.time(), 0
                paused.update(eval_s=0.0, ckpt_s=0.0)
                summary = {"steps": step, "final_train_loss": loss_v,
                           "final_val_loss": rec.get("val_loss", summary.get("final_val_loss")),
                           "tokens_per_s": tps, "mfu": rec["mfu"], "device": device, "world_size": d.world,
                           "params": model.num_params(), "model": cfg.model, "tokens_seen": step * tokens_step}
            if step == end or (step % cfg.ckpt_every == 0 if cfg.ckpt_every else is_eval):
                checkpoint()
    finally:
        loader.close()
        metrics.close()
    if d.main:
        write_json(run_dir / "summary.json", summary)
    return {**summary, "_trained": step > last}

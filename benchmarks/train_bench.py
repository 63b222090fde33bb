"""Trainer speed: the loader's maximum delivery rate on CPU, and on a GPU the trainer's
tokens/s and MFU for GPT-2 124M at context 1024 (bf16 autocast, torch.compile, flash
attention through scaled_dot_product_attention, fused AdamW) on the largest micro-batch
that fits.

    python benchmarks/train_bench.py [--tokens 50_000_000] [--steps 60] [--model gpt2]

The token shards are synthetic (uniform random GPT-2 ids, in documents of about 1,000
tokens) written by ``webtext shard``'s own writer, with a real manifest, so the run goes
through ``model.train.train`` unchanged: memory-mapped shards, the prefetching loader,
pinned memory and non-blocking copies. MFU = tokens/s x FLOPs per token / peak, with the
trainer's own FLOPs per token (PaLM's 6N + 12 L H Q T, as nanoGPT: 8.55e8 for 124M at
context 1024) and the device's dense bf16 peak from ``model.mfu`` (989 TFLOP/s for the
H100 SXM and H200). Without CUDA the script measures the loader only and compares it with
what 124M at 45% MFU on an H100 SXM would consume.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def write_tokens(out: Path, n_tokens: int, seed: int = 0) -> Path:
    """A train shard and a small val shard of random ids, plus manifest.json."""
    import pyarrow as pa

    from webtext.pipeline.io import sha256_file, write_json
    from webtext.stages.shard import write_ipc
    from webtext.stages.tokenizer import resolve_tokenizer

    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    shards = []
    for split, n in (("train", n_tokens), ("val", max(200_000, n_tokens // 100))):
        flat = rng.integers(0, 50256, n, dtype=np.uint16)
        offsets = np.arange(0, n + 1, 1000, dtype=np.int32)
        if offsets[-1] != n:
            offsets = np.append(offsets, np.int32(n))
        tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat))
        table = pa.table({"doc_id": pa.array([f"{split}{i}" for i in range(len(offsets) - 1)]), "tokens": tokens})
        path = out / f"{split}-00000.arrow"
        write_ipc(table, path)
        shards.append({"file": path.name, "split": split, "docs": table.num_rows, "tokens": n,
                       "sha256": sha256_file(path)})
    spec = resolve_tokenizer("gpt2")
    write_json(out / "manifest.json", {"tokenizer": spec.name, "backend": spec.backend, "vocab_size": spec.vocab_size,
                                       "eot": spec.eot, "vocab_sha256": spec.vocab_sha256, "tokenizer_path": "",
                                       "dtype": "uint16", "shards": shards, "source": {"synthetic": True}})
    return out


def loader_rate(tokens_dir: Path, batch: int, block: int, seconds: float = 3.0) -> dict:
    import torch

    from webtext.model.data import EpochWindows, Prefetcher, RandomWindows, load_split

    arrays = load_split(tokens_dir, "train")
    out = {}
    for name, cls in (("random", RandomWindows), ("epoch", EpochWindows)):
        s = cls(arrays, block, batch, seed=0)
        s.batch_array()
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            s.batch_array()
            n += batch * block
        out[name] = n / (time.perf_counter() - t)
    p = Prefetcher(RandomWindows(arrays, block, batch, seed=0), "cuda" if torch.cuda.is_available() else "cpu")
    p.next()
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        p.next()
        n += batch * block
    out["prefetcher"] = n / (time.perf_counter() - t)
    p.close()
    return out


def largest_batch(model_name: str, block: int, candidates=(64, 48, 32, 24, 16, 12, 8, 4)) -> int:
    """The largest micro-batch whose forward and backward fit in GPU memory (bf16, uncompiled;
    compiled graphs need less)."""
    import torch

    from webtext.model.gpt import GPT, config_for

    model = GPT(config_for(model_name)).cuda()
    for b in candidates:
        try:
            x = torch.randint(0, 50257, (b, block), device="cuda")
            with torch.autocast("cuda", dtype=torch.bfloat16):
                _, loss = model(x, x)
            loss.backward()
            model.zero_grad(set_to_none=True)
            del x, loss
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            return b
        except torch.cuda.OutOfMemoryError:
            model.zero_grad(set_to_none=True)
            torch.cuda.empty_cache()
    raise SystemExit("not even a micro-batch of 4 fits")


def flops_per_token(model_name: str, block: int) -> float:
    """The trainer's FLOPs per token (``GPT.flops_per_token``), on a weightless model."""
    import torch

    from webtext.model.gpt import GPT, config_for

    with torch.device("meta"):
        return GPT(config_for(model_name)).flops_per_token(block)


def main() -> None:
    import torch

    from webtext.model.mfu import PEAK_TFLOPS

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens", type=int, default=50_000_000, help="synthetic train tokens")
    ap.add_argument("--model", default="gpt2")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--batch-size", type=int, default=0, help="micro-batch (0 = the largest that fits)")
    ap.add_argument("--compile", default="on", choices=("on", "off"))
    ap.add_argument("--block-size", type=int, default=1024)
    ap.add_argument("--device", default="auto", choices=("auto", "cpu"),
                    help="cpu: run the trainer part on CPU too (a smoke run of this script, e.g. with --model tiny)")
    args = ap.parse_args()
    block = args.block_size
    with tempfile.TemporaryDirectory() as tmp:
        tokens = write_tokens(Path(tmp) / "tokens", args.tokens)
        rates = loader_rate(tokens, 32, block)
        print(f"train benchmark: {args.tokens:,} synthetic tokens, context {block}, torch {torch.__version__}")
        print(f"  loader, batch 32 x {block + 1}, one CPU thread: random windows {rates['random'] / 1e6:7.1f} M tokens/s, "
              f"epoch windows {rates['epoch'] / 1e6:7.1f} M tokens/s, through the prefetcher "
              f"{rates['prefetcher'] / 1e6:7.1f} M tokens/s")
        on_gpu = torch.cuda.is_available() and args.device == "auto"
        if not on_gpu and args.device != "cpu":
            need = 0.45 * PEAK_TFLOPS["NVIDIA H100 80GB HBM3"] * 1e12 / flops_per_token("gpt2", 1024)
            print(f"  no CUDA device: trainer tokens/s and MFU not measured. For reference, 124M at 45% MFU on an "
                  f"H100 SXM consumes {need / 1e6:.2f} M tokens/s ({flops_per_token('gpt2', 1024):.3g} FLOPs/token); "
                  f"the prefetching loader delivers {rates['prefetcher'] / need:,.0f}x that")
            return
        from webtext.model.train import train
        from webtext.pipeline.config import TrainConfig

        name = torch.cuda.get_device_name() if on_gpu else "CPU"
        b = args.batch_size or (largest_batch(args.model, block) if on_gpu else 8)
        cfg = TrainConfig(model=args.model, steps=args.steps, batch_size=b, block_size=block, tokens_per_step=0,
                          lr=6e-4, min_lr=6e-5, warmup_steps=10, eval_every=10**9, eval_tokens=block, ckpt_every=0,
                          log_every=10, compile=args.compile, device="cuda" if on_gpu else "cpu", run_name="bench")
        t = time.time()
        train(tokens, Path(tmp) / "runs", cfg, log=lambda m: print(m, flush=True))
        rows = [json.loads(x) for x in (Path(tmp) / "runs" / "bench" / "metrics.jsonl").read_text().splitlines()]
        steady = [r for r in rows if r["step"] > 20]              # after compilation and warm-up
        tps = float(np.median([r["tokens_per_s"] for r in steady]))
        if not steady:
            raise SystemExit("no steady-state steps: use --steps above 30")
        mfu = float(np.median([r["mfu"] for r in steady])) if steady[0]["mfu"] is not None else None
        print(f"  device: {name}; {args.model}, micro-batch {b} x {block}, {'bf16' if on_gpu else 'fp32'}, compile {args.compile}")
        print(f"  trainer: {tps:,.0f} tokens/s (median of steps 21-{args.steps}), "
              f"MFU {mfu:.1%} (target >= 45%; llm.c/modded-nanogpt ~38%, nanochat 41%)" if mfu is not None else
              f"  trainer: {tps:,.0f} tokens/s; no MFU (peak FLOP/s of {name} unknown)")
        print(f"  loader delivery / trainer consumption: {rates['prefetcher'] / tps:,.0f}x (target >= 100x); "
              f"wall {time.time() - t:.0f} s"
              + (f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if on_gpu else ""))


if __name__ == "__main__":
    main()

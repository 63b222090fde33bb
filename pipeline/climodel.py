"""``webtext train``, ``eval`` and ``sample``: thin commands over ``webtext.model``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from .clibase import AsJson, G, _json, _mirrored, _one, app
from .config import load_config
from .summary import emit

SIZED_HELP = "(default: the model size's, see docs/train.md)"


@app.command()
def train(
    model: Annotated[Optional[str], typer.Option(metavar="tiny|gpt2|gpt2-medium|gpt2-large|gpt2-xl", help="tiny | gpt2 | gpt2-medium | gpt2-large | gpt2-xl.")] = None,
    steps: Annotated[Optional[int], typer.Option(help=f"Optimizer steps {SIZED_HELP}.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help=f"Sequences per micro-batch, per rank {SIZED_HELP}.")] = None,
    block_size: Annotated[Optional[int], typer.Option(help=f"Tokens per sequence {SIZED_HELP}.")] = None,
    tokens_per_step: Annotated[Optional[int], typer.Option(
        help=f"Tokens per optimizer step, reached by gradient accumulation (0 = one micro-batch per rank) {SIZED_HELP}.")] = None,
    sampling: Annotated[Optional[str], typer.Option(metavar="random|epoch", help="random (nanoGPT-style windows) | epoch (no replacement).")] = None,
    corpus_version: Annotated[Optional[int], typer.Option(help="tokens/ corpus version to train on (0 = the latest).")] = None,
    lr: Annotated[Optional[float], typer.Option(metavar="RATE", help=f"Peak learning rate {SIZED_HELP}.")] = None,
    min_lr: Annotated[Optional[float], typer.Option(metavar="RATE", help="Rate the cosine decays to (default: lr / 10).")] = None,
    warmup_steps: Annotated[Optional[int], typer.Option(help=f"Linear warmup steps {SIZED_HELP}.")] = None,
    grad_clip: Annotated[Optional[float], typer.Option(metavar="NORM", help="Max gradient norm; 0 = no clipping (default 1.0).")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help=f"Validation loss every N steps {SIZED_HELP}.")] = None,
    eval_tokens: Annotated[Optional[int], typer.Option(help=f"Validation tokens per evaluation (fixed windows) {SIZED_HELP}.")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help=f"Checkpoint every N steps; 0 = at each evaluation {SIZED_HELP}.")] = None,
    peak_tflops: Annotated[Optional[float], typer.Option(metavar="TFLOPS", help="Device peak for MFU (default: the known GPUs' dense bf16 peak).")] = None,
    compile: Annotated[Optional[str], typer.Option(metavar="auto|on|off", help="torch.compile: auto (on for CUDA) | on | off.")] = None,
    device: Annotated[Optional[str], typer.Option(metavar="auto|cpu|cuda", help="auto | cpu | cuda.")] = None,
    run_name: Annotated[Optional[str], typer.Option(metavar="NAME", help="Folder under runs/; rerunning resumes it.")] = None,
    as_json: AsJson = False,
):
    """tokens/ -> runs/<run-name>/ (GPT-2 trained for N steps; checkpoint and metrics).

    Settings not given here or in webtext.toml take the model size's defaults (gpt2:
    context 1024, 524,288 tokens a step, lr 6e-4, warmup 715, 19,073 steps); the run
    prints its effective settings first. Multi-GPU: torchrun --nproc_per_node 8
    --no-python webtext train ... (add --nnodes, --node_rank and --rdzv_endpoint for
    several machines)."""
    opts = {"model": model, "steps": steps, "batch_size": batch_size, "block_size": block_size,
            "tokens_per_step": tokens_per_step, "sampling": sampling, "corpus_version": corpus_version, "lr": lr,
            "min_lr": min_lr, "warmup_steps": warmup_steps, "grad_clip": grad_clip, "eval_every": eval_every,
            "eval_tokens": eval_tokens, "ckpt_every": checkpoint_every, "peak_tflops": peak_tflops,
            "compile": compile, "device": device, "run_name": run_name}
    if int(os.environ.get("RANK", "0")) != 0:      # torchrun's other ranks: no state database, no JSON
        from webtext.model.train import train as train_model

        cfg = load_config(G.config, {"train": opts})
        train_model(G.workdir / "tokens", G.workdir / "runs", cfg.train, log=lambda *_: None)
        return
    _one("train", as_json=as_json, train=opts)


def _checkpoint(run_name: Optional[str], device: str):
    from webtext.model.train import load_checkpoint, model_from_checkpoint, pick_device

    cfg = load_config(G.config, {})
    name = run_name or cfg.train.run_name
    dev = pick_device(device)
    ck = load_checkpoint(G.workdir / "runs" / name / "ckpt.pt", dev)
    return name, dev, ck, model_from_checkpoint(ck, dev)


RunName = Annotated[Optional[str], typer.Option(metavar="NAME", help="The run under runs/ (default: [train] run_name).")]
Device = Annotated[str, typer.Option(metavar="auto|cpu|cuda", help="auto | cpu | cuda.")]


@app.command("eval")
@_mirrored()
def eval_(
    run_name: RunName = None,
    hf: Annotated[Optional[str], typer.Option(
        "--hf", metavar="PATH|NAME", help="Score a Hugging Face GPT-2 checkpoint instead of a run: a folder, or a "
                                          "name in the local Hugging Face cache (never downloaded).")] = None,
    benchmark: Annotated[Optional[list[str]], typer.Option(
        "--benchmark", metavar="NAME|FILE", help="lambada | cbt-cn | cbt-ne | wikitext2 | ptb | enwik8 | text8 | "
                            "wikitext103 | 1bw | hellaswag, another registry name, or a file (repeatable). "
                            "Default: those of these whose files are under --benchmark-dir.")] = None,
    benchmark_dir: Annotated[Optional[str], typer.Option(
        metavar="PATH", help="Folder of the registry's files (default: [decontaminate] benchmark_dir).")] = None,
    stride: Annotated[Optional[int], typer.Option(help="Tokens scored per perplexity window (default: half the context).",
                                                  min=1)] = None,
    limit: Annotated[Optional[int], typer.Option(help="Only the first N tokens (perplexity) or examples (the others).",
                                                 min=1)] = None,
    device: Device = "auto",
    as_json: AsJson = False,
):
    """The GPT-2 paper's zero-shot Table 3 (and HellaSwag), beside the paper's figures (runs/<name>/eval.json)."""
    from webtext.model.evaluate import run_eval, tokenizer_of, write_eval
    from webtext.model.paper import detail_lines, side_by_side

    from .errors import ConfigError

    cfg = load_config(G.config, {})
    if hf and run_name:
        raise ConfigError("--hf scores a Hugging Face checkpoint, --run-name one of ours", "Give one of them")
    if hf:
        from webtext.model.hf import load_hf
        from webtext.model.train import pick_device

        dev = pick_device(device)
        spec, model, folder = load_hf(hf, dev)
        name, source = f"hf-{folder.name if Path(hf).expanduser().exists() else hf.replace('/', '--')}", hf
    else:
        name, dev, ck, model = _checkpoint(run_name, device)
        spec, source = tokenizer_of(ck), f"runs/{name}"
    results = run_eval(spec, model, benchmark, benchmark_dir or cfg.decontaminate.benchmark_dir,
                       cfg.decontaminate.registry, dev, stride, limit)
    n_params = model.num_params(non_embedding=False) - (model.cfg.padded_vocab - model.cfg.vocab_size) * model.cfg.n_embd
    path = G.workdir / "runs" / name / "eval.json"
    doc = write_eval(path, results, source, n_params)
    emit(doc, [f"{source}: {n_params / 1e6:,.1f}M parameters", *side_by_side(results, n_params),
               *detail_lines(results), f"written: {path}"], _json(as_json))


@app.command()
@_mirrored()
def sample(
    prompt: Annotated[str, typer.Option(help="Text to continue (empty: start a new document).")] = "",
    run_name: RunName = None,
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to generate.", min=1, max=1_000_000)] = 100,
    temperature: Annotated[float, typer.Option(metavar="NUMBER", help="Softmax temperature (0.01 to 100).", min=0.01,
                                               max=100)] = 0.8,
    top_k: Annotated[int, typer.Option(help="Sample among the k likeliest tokens (0 = all).", min=0)] = 50,
    num_samples: Annotated[int, typer.Option(help="Independent samples.", min=1, max=10_000)] = 1,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    device: Device = "auto",
    as_json: AsJson = False,
):
    """Generate text from a trained checkpoint."""
    from webtext.model.evaluate import sample as generate

    _, dev, ck, model = _checkpoint(run_name, device)
    texts = generate(ck, model, prompt, max_new_tokens, temperature, top_k or None, num_samples, seed, dev)
    lines = [f"--- sample {i + 1}\n{t}" if num_samples > 1 else t for i, t in enumerate(texts)]
    emit({"prompt": prompt, "samples": texts}, lines, _json(as_json))

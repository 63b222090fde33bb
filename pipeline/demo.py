"""``webtext demo``: the whole pipeline, offline, on a generated demo web.

Builds the demo web (``pipeline.demoweb``) under ``<workdir>/demo_input``, serves it from
a loopback forward proxy, runs harvest -> ... -> train through real HTTP, and prints the
funnel. Rerunning does no work.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .config import load_config
from .demoweb import DemoProxy, build_demo_web
from .executor import Context
from .funnel import collect, render
from .run import ORDER, run_all


def demo_overrides(web, proxy_url: str, steps: int, workers: int | None) -> dict:
    return {
        "run": {"workers": workers},
        "harvest": {"dumps": [str(web.dump)], "num_shards": 4},
        "fetch": {"proxy": proxy_url, "backoff_s": 0.1, "retries": 1, "host_delay_s": 0.02},
        "decontaminate": {"benchmarks": [str(web.benchmark)]},
        "shard": {"val_fraction": 0.05},
        "train": {"model": "tiny", "steps": steps, "batch_size": 8, "block_size": 64, "eval_every": 50, "log_every": 25,
                  "warmup_steps": 10, "lr": 2e-3, "run_name": "demo"},
    }


def run_demo(workdir: Path, config: Path | None, articles: int = 200, steps: int = 150,
             workers: int | None = None, console: Console | None = None, until: str = "train") -> dict:
    console = console or Console(stderr=True)
    workdir = Path(workdir)
    web = build_demo_web(workdir / "demo_input", n_articles=articles)
    console.print(f"demo web: {len(web.pages)} pages on {len({u.split('/')[2] for u in web.pages})} hosts; "
                  f"planted " + ", ".join(f"{k}={len(v)}" for k, v in web.planted.items()))
    with DemoProxy(web.pages) as proxy:
        cfg = load_config(config, demo_overrides(web, proxy.url, steps, workers))
        ctx = Context(workdir, cfg, console)
        try:
            run_all(ctx, ORDER[: ORDER.index(until) + 1])
        finally:
            ctx.close()
    funnel = collect(workdir)
    render(funnel, Console())
    ckpt = workdir / "runs" / "demo" / "ckpt.pt"
    if until == "train" and ckpt.exists():       # the tiny model's first words
        from model.evaluate import sample
        from model.train import load_checkpoint, model_from_checkpoint

        ck = load_checkpoint(ckpt)
        text = sample(ck, model_from_checkpoint(ck), "The", max_new_tokens=30, seed=0)[0]
        console.print(f"sample from runs/demo (webtext sample --run-name demo): {text!r}", highlight=False)
    return funnel

"""``webtext demo``: the whole pipeline, offline, on a generated demo web.

Builds the demo web (``pipeline.demoweb``) under ``<workdir>/demo_input``, two months of
submissions, and serves it from a loopback forward proxy, which also answers for Common
Crawl and the Wayback Machine with captures of some of its dead links (fetch recovers
them). Step 1 runs harvest -> ... -> shard on January through real HTTP. Step 2 adds February and runs ``refresh``, which
fetches only the new URLs, drops February's republications of January's articles, adds
corpus version 2 and prints the run diff. Then the tiny model trains on the latest
version, and the funnel and a sample are printed. Rerunning does no work. Stopping
before shard (``--until``) runs both months in one pass.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .config import load_config
from .demoweb import DemoProxy, build_demo_web
from .executor import Context
from .funnel import collect, render
from .refresh import refresh
from .refresh import render as render_diff
from .run import ORDER, run_all


def demo_overrides(web, proxy_url: str, steps: int, workers: int | None) -> dict:
    return {
        "run": {"workers": workers},
        "harvest": {"dumps": [str(web.dump)], "num_shards": 4},
        # The archives through the demo proxy: plain http (it has no CONNECT), no politeness delay.
        "fetch": {"proxy": proxy_url, "backoff_s": 0.1, "retries": 1, "host_delay_s": 0.02,
                  "archive_commoncrawl_index": "http://index.commoncrawl.org",
                  "archive_commoncrawl_data": "http://data.commoncrawl.org",
                  "archive_wayback": "http://web.archive.org", "archive_delay_s": 0.0},
        "decontaminate": {"benchmarks": [str(web.benchmark)]},
        "shard": {"val_fraction": 0.05},
        "train": {"model": "tiny", "steps": steps, "batch_size": 8, "block_size": 64, "eval_every": 50, "log_every": 25,
                  "warmup_steps": 10, "lr": 2e-3, "run_name": "demo"},
    }


def run_demo(workdir: Path, config: Path | None, articles: int = 200, steps: int = 150,
             workers: int | None = None, console: Console | None = None, until: str = "train") -> dict:
    console = console or Console(stderr=True)
    workdir = Path(workdir)
    web = build_demo_web(workdir / "demo_input", n_articles=articles, months=2)
    console.print(f"demo web: {len(web.pages)} pages on {len({u.split('/')[2] for u in web.pages})} hosts; "
                  f"planted " + ", ".join(f"{k}={len(v)}" for k, v in web.planted.items()))
    stages = ORDER[: ORDER.index(until) + 1]
    two_steps = "shard" in stages
    with DemoProxy(web.pages, web.archive) as proxy:
        overrides = demo_overrides(web, proxy.url, steps, workers)
        overrides["harvest"]["dumps"] = [str(web.dumps[0])] if two_steps else [str(d) for d in web.dumps]
        ctx = Context(workdir, load_config(config, overrides), console)
        try:
            if two_steps:
                console.print("[bold]step 1: January[/bold]")
                run_all(ctx, ORDER[: ORDER.index("shard") + 1])
                console.print("[bold]step 2: February arrives; webtext refresh[/bold]")
                ctx.cfg.harvest.dumps = [str(d) for d in web.dumps]
                render_diff(refresh(ctx), Console())
                if "train" in stages:
                    run_all(ctx, ["train"])
            else:
                run_all(ctx, stages)
        finally:
            ctx.close()
    funnel = collect(workdir)
    render(funnel, Console())
    from .report import write_report

    console.print(f"report: {write_report(workdir)}  (webtext report)")
    ckpt = workdir / "runs" / "demo" / "ckpt.pt"
    if until == "train" and ckpt.exists():       # the tiny model's first words
        from webtext.model.evaluate import sample
        from webtext.model.train import load_checkpoint, model_from_checkpoint

        ck = load_checkpoint(ckpt)
        text = sample(ck, model_from_checkpoint(ck), "The", max_new_tokens=30, seed=0)[0]
        console.print(f"sample from runs/demo (webtext sample --run-name demo): {text!r}", highlight=False)
    out = Console()
    for line in loading_recipe(workdir):
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    return funnel


def loading_recipe(workdir: Path) -> list[str]:
    """How to load this work directory's current corpus version, with its real paths:
    each tool's line after its label is one Python expression or shell command (a test
    runs them)."""
    from webtext.stages.tokenlayout import LINK, NANOGPT, read_manifest_file, versions_of

    w = Path(workdir).resolve()
    tokens = w / "tokens"
    versions = versions_of(read_manifest_file(tokens))
    if not versions or "folder" not in versions[-1]:
        return []
    latest = versions[-1]
    cur = tokens / (LINK if (tokens / LINK).is_symlink() else latest["folder"])
    nano = cur / NANOGPT / "train.bin"
    lines = [f"load corpus version {latest['version']} ({tokens / latest['folder']}; {cur} is the latest):",
             f"  datasets: datasets.load_dataset({str(tokens)!r})",
             f"  pyarrow: [pa.ipc.open_file(pa.memory_map(p)).read_all() for p in sorted(glob.glob({str(cur / 'train-*.arrow')!r}))]",
             f"  nanogpt: np.memmap({str(nano)!r}, dtype=np.uint16, mode='r')" if nano.exists() else
             f"  nanogpt: webtext --workdir {w} shard --export nanogpt   (writes {nano})",
             f"  text: webtext --workdir {w} export --format parquet OUT && "
             "python -c \"import duckdb; print(duckdb.sql(\\\"select * from 'OUT/data/*.parquet'\\\"))\""]
    if len(versions) > 1:
        lines.append(f"  older: datasets.load_dataset({str(tokens)!r}, {versions[0]['folder']!r}); "
                     f"webtext train --corpus-version {versions[0]['version']}; webtext gc --keep 1 frees them")
    return lines

"""The ``webtext`` command line: thin Typer commands over the library.

    webtext [--workdir DIR] [--config webtext.toml] [--workers N] [--json] COMMAND [OPTIONS]

Each command gathers its flags into config overrides and calls the stage, then prints a
short summary (pipeline.summary) on stdout, or with ``--json`` (before or after the
command) its result as one JSON document; progress and logs go to stderr. Errors the
user can fix print one line (``error: ...``) and exit 2; Ctrl-C exits 130; an
unexpected failure prints one line (set WEBTEXT_DEBUG=1 for the traceback) and exits 1.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .cliapp import WebtextTyper
from .config import load_config
from .errors import WebtextError
from .remote import is_url
from .summary import emit

app = WebtextTyper(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                   help="Build a WebText-style corpus from Reddit links and train GPT-2 on it. Every command "
                        "prints a short summary; with --json (webtext --json COMMAND, or COMMAND --json) it "
                        "prints its result as one JSON document on stdout instead.")
console = Console(stderr=True)


class _Global:
    spec: str = "work"             # --workdir as given: a path, or s3:// / gs:// URL
    workdir: Path = Path("work")   # where its files are here: the path, or the bucket's scratch mirror
    config: Optional[Path] = None
    workers: Optional[int] = None
    executor: Optional[str] = None
    ray_address: Optional[str] = None
    json: bool = False             # --json: results as JSON on stdout, not a human summary


G = _Global()
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as one JSON document on stdout instead of "
                                                     "a summary (the same as webtext --json COMMAND).")]


def _json(as_json: bool) -> bool:
    """--json given after the command or before it."""
    return as_json or G.json


@app.callback()
def main_options(
    workdir: Annotated[str, typer.Option(
        metavar="PATH|URL", help="Work directory holding every stage's folder and state.sqlite: a path, or s3://bucket/prefix or "
             "gs://bucket/prefix (worked on through a local scratch: the run.scratch setting).",
        envvar="WEBTEXT_WORKDIR")] = "work",
    config: Annotated[Optional[Path], typer.Option(metavar="PATH", help="TOML config file (one table per stage, e.g. fetch).",
                                                   envvar="WEBTEXT_CONFIG")] = None,
    workers: Annotated[Optional[int], typer.Option(help="Worker processes; 0 = one per core.")] = None,
    executor: Annotated[Optional[str], typer.Option(
        metavar="local|ray", help="local (a process pool) or ray (every shard task on a Ray cluster).", envvar="WEBTEXT_EXECUTOR")] = None,
    ray_address: Annotated[Optional[str], typer.Option(
        metavar="HOST:PORT", help="Ray cluster to join (host:port or auto); default: start a local one.", envvar="RAY_ADDRESS")] = None,
    as_json: Annotated[bool, typer.Option("--json", help=(
        "Every command prints its result as one JSON document on stdout instead of a short summary "
        "(progress and logs stay on stderr). Also accepted after the command: webtext fetch --json."))] = False,
):
    G.spec, G.config, G.workers, G.json = workdir, config, workers, as_json
    if is_url(workdir):
        from .remote import scratch_path

        G.workdir = scratch_path(workdir, load_config(config, {}).run.scratch)
    else:
        G.workdir = Path(workdir)
    G.executor, G.ray_address = executor, ray_address


def _context(**sections):
    from .executor import Context

    cfg = load_config(G.config, {"run": {"workers": G.workers, "executor": G.executor,
                                         "ray_address": G.ray_address}, **sections})
    return Context(G.spec, cfg, console)


@contextlib.contextmanager
def _mirrored(bulk: bool = True, keep: bool = False):
    """For a command that works on files without running a stage (status, report, eval, ...):
    with a bucket work directory, bring it into the scratch first (with ``bulk``, the data
    behind every placeholder too) and upload what the command wrote afterwards (``keep``:
    leave the data there, not placeholders). Nothing to do for a local work directory."""
    if not is_url(G.spec):
        yield
        return
    ctx = _context()
    ctx.keep_data = keep
    try:
        if bulk:
            n = ctx.store.materialize_all()
            if n:
                ctx.log(f"{n} data file(s) downloaded into {ctx.workdir}")
        yield
    finally:
        ctx.close()


def _lock(command: str, ctx=None):
    """The work directory's lock (see pipeline.lock): a second run exits with code 75."""
    from .lock import WorkdirLock

    return WorkdirLock(ctx.workdir if ctx else G.workdir, command, log=ctx.log if ctx else (lambda m: console.print(m, highlight=False)))


def _one(stage: str, options: dict | None = None, *, as_json: bool = False, **sections) -> None:
    """Run one stage, then print its summary (or with --json its result)."""
    from .run import run_stage
    from .summary import shown, stage_lines, train_lines

    ctx = _context(**sections)
    started = time.monotonic()
    try:
        with _lock(stage, ctx), ctx.tracked_run(stage):
            result = run_stage(ctx, stage, **(options or {}))
    finally:
        ctx.close()
    elapsed = time.monotonic() - started
    spec = G.spec.rstrip("/")
    lines = (train_lines(result, f"{spec}/runs/{ctx.cfg.train.run_name}", elapsed) if stage == "train"
             else stage_lines(result, spec, elapsed))
    emit(shown(result), lines, _json(as_json))


Dumps = Annotated[Optional[list[Path]], typer.Option("--dumps", metavar="PATH", help="Pushshift RS_* dump file or folder (repeatable).")]
Proxy = Annotated[Optional[str], typer.Option(metavar="URL", help="Forward proxy URL for fetching (default: HTTP_PROXY).")]
Bench = Annotated[Optional[list[str]], typer.Option("--benchmark", metavar="NAME|FILE", help="Benchmark: a name from data/benchmarks.toml (lambada, wikitext2, ptb, wsc273, ...), or a file: .jsonl (PATH.jsonl:FIELD), WSC .xml, WikiText .tokens, or plain text (repeatable).")]


@app.command()
def harvest(
    source: Annotated[Optional[str], typer.Option(metavar="dumps|api", help="dumps (Pushshift/Arctic-Shift files) or api (live, through praw).")] = None,
    dumps: Dumps = None,
    min_score: Annotated[Optional[int], typer.Option(help="Keep URLs whose aggregated karma is at least this (default 3).")] = None,
    score_agg: Annotated[Optional[str], typer.Option(metavar="sum|max", help="Aggregate karma over a URL's submissions: sum or max.")] = None,
    allow_nsfw: Annotated[Optional[bool], typer.Option("--allow-nsfw", help="Keep NSFW submissions.")] = None,
    num_shards: Annotated[Optional[int], typer.Option(help="Number of urls/ output shards.")] = None,
    subreddit: Annotated[Optional[list[str]], typer.Option(metavar="NAME", help="Subreddit to read with --source api (repeatable).")] = None,
    listing: Annotated[Optional[str], typer.Option(metavar="new|top|hot", help="API listing: new, top or hot.")] = None,
    time_filter: Annotated[Optional[str], typer.Option(metavar="hour|day|week|month|year|all", help="For --listing top: hour, day, week, month, year or all.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="API submissions per subreddit and pull.")] = None,
    praw_site: Annotated[Optional[str], typer.Option(metavar="NAME", help="praw.ini site holding the API credentials.")] = None,
    reddit_url: Annotated[Optional[str], typer.Option(metavar="URL", help="Reddit base URL (token endpoint).")] = None,
    oauth_url: Annotated[Optional[str], typer.Option(metavar="URL", help="Reddit OAuth API base URL.")] = None,
    as_json: AsJson = False,
):
    """Reddit submissions (dumps or the live API) -> urls/ (normalized URLs with karma >= min-score).

    API credentials come from praw.ini (--praw-site) or the environment variables
    praw_client_id and praw_client_secret; they are never logged."""
    _one("harvest", harvest={"source": source, "dumps": [str(d) for d in dumps] if dumps else None,
                             "min_score": min_score, "score_agg": score_agg, "allow_nsfw": allow_nsfw,
                             "num_shards": num_shards, "subreddits": subreddit, "listing": listing,
                             "time_filter": time_filter, "api_limit": limit, "praw_site": praw_site,
                             "reddit_url": reddit_url, "oauth_url": oauth_url}, as_json=as_json)


Archive = Annotated[Optional[str], typer.Option(
    metavar="off|fallback|prefer", help="Dead-link recovery from Common Crawl and the Wayback Machine: off, fallback (a dead live page is "
         "looked up in the archives; the default) or prefer (old submissions: the capture nearest the "
         "submission first).")]
FromWarc = Annotated[Optional[list[Path]], typer.Option(
    "--from-warc", metavar="PATH",
    help="WARC file or folder of *.warc.gz / *.warc (Common Crawl segments, an earlier crawl, a Wayback "
         "export) whose pages for the URLs are taken instead of fetching them live (repeatable).")]
RefetchAfter = Annotated[Optional[float], typer.Option(
    "--refetch-after", metavar="DAYS",
    help="Also revisit URLs fetched more than DAYS days ago, with a conditional GET (ETag, Last-Modified); "
         "a changed page replaces its document.")]


@app.command()
def fetch(
    proxy: Proxy = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Requests in flight across all hosts.")] = None,
    per_host: Annotated[Optional[int], typer.Option(help="Connections per host.")] = None,
    timeout: Annotated[Optional[float], typer.Option(metavar="SECONDS", help="Total seconds per request.")] = None,
    retries: Annotated[Optional[int], typer.Option(help="Retries after 429, 5xx or connection errors.")] = None,
    host_delay: Annotated[Optional[float], typer.Option(metavar="SECONDS", help="Minimum seconds between requests to one host.")] = None,
    ignore_robots: Annotated[Optional[bool], typer.Option("--ignore-robots", help="Do not fetch or obey robots.txt (only for sites you run).")] = None,
    user_agent: Annotated[Optional[str], typer.Option(help="User-Agent header (include a contact URL).")] = None,
    allow_private: Annotated[Optional[bool], typer.Option("--allow-private", help="Allow loopback/private targets (tests only).")] = None,
    refetch_after: RefetchAfter = None,
    archive: Archive = None,
    from_warc: FromWarc = None,
    as_json: AsJson = False,
):
    """urls/ -> warc/ (WARC/1.1 archives and a fetch log)."""
    _one("fetch", fetch={"from_warc": [str(p) for p in from_warc] if from_warc else None, "proxy": proxy, "refetch_after_days": refetch_after, "archive": archive, "concurrency": concurrency, "per_host": per_host, "timeout_s": timeout,
                         "retries": retries, "user_agent": user_agent, "allow_private": allow_private,
                         "host_delay_s": host_delay, "obey_robots": None if ignore_robots is None else not ignore_robots},
         as_json=as_json)


@app.command()
def extract(
    extractor: Annotated[Optional[str], typer.Option(metavar="auto|trafilatura|newspaper3k|both", help="auto (trafilatura, newspaper3k fallback), trafilatura, newspaper3k, or both (auto's text plus their agreement).")] = None,
    min_words: Annotated[Optional[int], typer.Option(help="Drop documents shorter than this many words.")] = None,
    lang: Annotated[Optional[list[str]], typer.Option(metavar="CODE", help="Language to keep, ISO 639-1 (repeatable; default en).")] = None,
    dates: Annotated[Optional[bool], typer.Option("--dates/--no-dates", help="Find publication dates with htmldate.")] = None,
    as_json: AsJson = False,
):
    """warc/ -> docs/ (main text: trafilatura, newspaper3k fallback; quality, length and language filters)."""
    _one("extract", as_json=as_json, extract={"extractor": extractor, "min_words": min_words, "langs": lang, "dates": dates})


@app.command("filter")
def filter_(
    rule: Annotated[Optional[list[str]], typer.Option("--rule", metavar="NAME.KEY=VALUE", help="Change a filter rule for this run: NAME.threshold=X, NAME.min=X, NAME.max=X or NAME.enabled=true|false (repeatable; over [extract] rules).")] = None,
    min_words: Annotated[Optional[int], typer.Option(help="Drop documents shorter than this many words.")] = None,
    lang: Annotated[Optional[list[str]], typer.Option(metavar="CODE", help="Language to keep, ISO 639-1 (repeatable).")] = None,
    as_json: AsJson = False,
):
    """docs/ <-> docs/rejected/: decide every extracted page again from its recorded signals, with
    the [extract] rules of the config and --rule; nothing is extracted again. PII handling is not
    re-decided (the stored text is already redacted)."""
    import dataclasses

    from webtext.stages.refilter import parse_rules, refilter

    overrides = parse_rules(rule or [])
    ctx = _context(extract={"min_words": min_words, "langs": lang})
    try:
        cfg = ctx.cfg.extract
        merged = {**cfg.rules, **{n: {**cfg.rules.get(n, {}), **v} for n, v in overrides.items()}}
        ctx.cfg.extract = dataclasses.replace(cfg, rules=merged)      # checked again by ExtractConfig
        with _lock("filter", ctx), ctx.tracked_run("filter"):
            result = refilter(ctx)
    finally:
        ctx.close()
    moved = sum(result["moved_to_rejected"].values())
    lines = [f"filter: {result['shards']} shard(s), {result['shards_rewritten']} rewritten; {moved} document(s) "
             f"moved to docs/rejected/, {result['moved_to_docs']} back to docs/; {result['docs']} document(s) kept; "
             "no page extracted again"]
    lines += [f"  {r}: {n} ({result['rule_rates'][r]:.2%} of {result['pages_with_text']} pages with text)"
              for r, n in result["reasons"].items()]
    emit(result, lines, _json(as_json))


@app.command()
def dedup(
    threshold: Annotated[Optional[float], typer.Option(metavar="SIMILARITY", help="Jaccard similarity at which documents are near-duplicates.")] = None,
    num_perm: Annotated[Optional[int], typer.Option(help="MinHash permutations.")] = None,
    verify: Annotated[Optional[str], typer.Option(
        metavar="exact|estimate|off", help="Check LSH candidates: exact (Jaccard from the texts), estimate (MinHash) or off.")] = None,
    as_json: AsJson = False,
):
    """docs/ -> dedup/ (exact and MinHash near-duplicates removed)."""
    _one("dedup", as_json=as_json, dedup={"threshold": threshold, "num_perm": num_perm, "verify": verify})


@app.command()
def decontaminate(
    benchmark: Bench = None,
    ngram: Annotated[Optional[int], typer.Option(help="Word n-gram size for overlap (default 13).")] = None,
    policy: Annotated[Optional[str], typer.Option(
        metavar="spans|drop", help="spans: cut 200 characters around each hit (GPT-3's rules); drop: drop any document with a hit.")] = None,
    benchmark_dir: Annotated[Optional[str], typer.Option(metavar="PATH", help="Folder holding the registry's benchmark files.")] = None,
    wikipedia_dump: Annotated[Optional[str], typer.Option(
        metavar="PATH", help="Wikipedia pages-articles XML (.bz2): drop documents mostly made of its n-grams.")] = None,
    keep_wikipedia: Annotated[Optional[bool], typer.Option("--keep-wikipedia", help="Do not drop wikipedia.org pages.")] = None,
    report_only: Annotated[bool, typer.Option("--report-only", help="Write the overlap report only; change no documents.")] = False,
    as_json: AsJson = False,
):
    """dedup/ -> clean/ (Wikipedia pages and benchmark overlap removed; overlap report)."""
    _one("decontaminate", {"report_only": report_only}, as_json=as_json,
         decontaminate={"benchmarks": list(benchmark) if benchmark else None, "ngram": ngram, "policy": policy,
                        "benchmark_dir": benchmark_dir, "wikipedia_dump": wikipedia_dump,
                        "drop_wikipedia": None if keep_wikipedia is None else not keep_wikipedia})


@app.command()
def shard(
    val_fraction: Annotated[Optional[float], typer.Option(metavar="FRACTION", help="Share of documents held out for validation.")] = None,
    tokenizer: Annotated[Optional[str], typer.Option(
        metavar="gpt2|PATH", help="gpt2 (default), or a tokenizer.json from `webtext tokenizer train`.")] = None,
    backend: Annotated[Optional[str], typer.Option(metavar="auto|tiktoken|hf", help="auto (tiktoken for gpt2) | tiktoken | hf.")] = None,
    shard_tokens: Annotated[Optional[int], typer.Option(help="Tokens per output shard, about (default 100M).")] = None,
    export: Annotated[Optional[str], typer.Option(
        metavar="FORMAT", help="Also write another format: nanogpt (tokens/nanogpt/{train,val}.bin, flat uint16).")] = None,
    as_json: AsJson = False,
):
    """clean/ -> tokens/ (BPE Arrow shards, shuffled, train/val, manifest.json)."""
    _one("shard", {"export": export}, as_json=as_json,
         shard={"val_fraction": val_fraction, "tokenizer": tokenizer, "backend": backend, "shard_tokens": shard_tokens})


tokenizer_app = WebtextTyper(no_args_is_help=True, help="Train a byte-level BPE tokenizer on the corpus.")
app.add_typer(tokenizer_app, name="tokenizer")


@tokenizer_app.command("train")
@_mirrored()
def tokenizer_train(
    vocab_size: Annotated[int, typer.Option(help="Vocabulary size, <|endoftext|> included (257 to 65536: "
                                                 "256 bytes plus EOT at least; token ids are stored as uint16).",
                                            min=257, max=65536)] = 50257,
    source: Annotated[str, typer.Option(metavar="FOLDER", help="Work-directory folder whose Parquet shards hold the text.")] = "clean",
    out: Annotated[Optional[Path], typer.Option(help="Output tokenizer.json (default tokenizers/bpe-<vocab>.json).")] = None,
    as_json: AsJson = False,
):
    """Train a byte-level BPE (HF tokenizers) on the corpus text; use it with `shard --tokenizer PATH`."""
    import pyarrow.parquet as pq

    from webtext.stages.tokenizer import train_bpe

    from .errors import MissingInputError

    files = sorted((G.workdir / source).glob("*.parquet"))
    if not files:
        raise MissingInputError(f"no Parquet shards in {G.workdir / source}", "Run the pipeline up to that stage first")

    def texts():
        for f in files:
            for batch in pq.ParquetFile(f).iter_batches(columns=["text"], batch_size=1024):
                yield from batch.column(0).to_pylist()

    path = out or G.workdir / "tokenizers" / f"bpe-{vocab_size}.json"
    train_bpe(texts(), vocab_size, path, show_progress=console.is_terminal)
    emit({"tokenizer": str(path), "vocab_size": vocab_size, "source": source, "shards": len(files)},
         [f"tokenizer written: {path} ({vocab_size:,} tokens, from {len(files):,} {source}/ shard(s))  "
          f"(use: webtext shard --tokenizer {path})"], _json(as_json))


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


@app.command()
@_mirrored()
def export(
    dest: Annotated[Optional[Path], typer.Argument(
        metavar="OUT", help="Output folder: a new folder for --format; for --hf, default runs/<name>/hf.")] = None,
    fmt: Annotated[Optional[str], typer.Option(
        "--format", metavar="parquet|jsonl", help="Text release of a corpus version: parquet, or jsonl (gzipped JSON Lines), with a dataset card.")] = None,
    version: Annotated[Optional[int], typer.Option(
        "--version", help="With --format: the corpus version (default: the current one).")] = None,
    hf: Annotated[bool, typer.Option("--hf", help="Write a Hugging Face GPT-2 folder (config.json + model.safetensors).")] = False,
    run_name: RunName = None,
    out: Annotated[Optional[Path], typer.Option(help="Output folder (same as OUT).")] = None,
    as_json: AsJson = False,
):
    """Export the corpus text (--format parquet|jsonl [--version N] OUT) or a checkpoint (--hf)."""
    from .errors import ConfigError

    if dest and out and dest != out:
        raise ConfigError(f"two output folders given ({dest} and --out {out})", "Give OUT or --out, not both")
    dest = dest or out
    if hf and fmt:
        raise ConfigError("--hf (a model checkpoint) and --format (the corpus text) are two exports",
                          "Run them one at a time")
    if fmt:
        if run_name:
            raise ConfigError("--run-name chooses a checkpoint for --hf, not a text release", "Drop --run-name")
        if dest is None:
            raise ConfigError("no output folder for the text release", f"Use webtext export --format {fmt} OUT")
        from .export import export_text

        s = export_text(G.workdir, dest, fmt, version or 0)
        emit({"format": fmt, "out": str(dest), "version": s.version, "rows": s.rows, "taken_down": s.taken_down,
              "files": {split: [str(f) for f in fs] for split, fs in s.files.items()}, "card": str(dest / "README.md")},
             [f"corpus version {s.version} written to {dest}: {s.rows['train']:,} train and {s.rows['val']:,} "
              f"val documents in {sum(map(len, s.files.values()))} file(s), {s.taken_down:,} taken down left "
              f"out; card {dest / 'README.md'}  (datasets.load_dataset({str(dest)!r}))"], _json(as_json))
        return
    if version is not None:
        raise ConfigError("--version chooses the corpus version of a text release", "Add --format parquet or jsonl")
    if not hf:
        raise ConfigError("choose an export format", "Use --format parquet|jsonl OUT (the corpus text) or --hf (a checkpoint)")
    from webtext.model.hf import export_hf

    name, _, ck, model = _checkpoint(run_name, "cpu")
    path = export_hf(ck, model, dest or G.workdir / "runs" / name / "hf")
    emit({"hf": str(path), "run_name": name},
         [f"Hugging Face GPT-2 model written: {path}  (transformers.GPT2LMHeadModel.from_pretrained)"], _json(as_json))


@app.command()
def run(
    dumps: Dumps = None,
    proxy: Proxy = None,
    benchmark: Bench = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps.")] = None,
    stages: Annotated[Optional[str], typer.Option(metavar="STAGE,...", help="Comma-separated subset of stages to run, in pipeline order.")] = None,
    skip_train: Annotated[bool, typer.Option("--skip-train", help="Stop after shard.")] = False,
    refetch_after: RefetchAfter = None,
    archive: Archive = None,
    as_json: AsJson = False,
):
    """Every stage in order: harvest, fetch, extract, dedup, decontaminate, shard, train."""
    from .funnel import collect, render
    from .run import ORDER, parse_stages, run_all

    chosen = parse_stages(stages) if stages else ORDER

    ctx = _context(harvest={"dumps": [str(d) for d in dumps] if dumps else None},
                   fetch={"proxy": proxy, "refetch_after_days": refetch_after, "archive": archive},
                   decontaminate={"benchmarks": list(benchmark) if benchmark else None},
                   train={"steps": steps})
    try:
        with _lock("run", ctx):
            results = run_all(ctx, [s for s in chosen if not (skip_train and s == "train")])
    finally:
        ctx.close()
    if _json(as_json):
        from .summary import shown

        emit({"results": [shown(r) for r in results], "funnel": collect(G.workdir)}, [], True)
    else:
        render(collect(G.workdir), Console())


@app.command()
def demo(
    articles: Annotated[int, typer.Option(help="Articles in the generated demo web.", min=1, max=100_000)] = 200,
    steps: Annotated[int, typer.Option(help="Training steps for the tiny model.", min=1)] = 150,
    until: Annotated[str, typer.Option(metavar="STAGE", help="Last stage to run (earlier finished stages are skipped).")] = "train",
    as_json: AsJson = False,
):
    """Offline demo: January through every stage, February through refresh, then training, funnel and report."""
    from .demo import run_demo
    from .run import parse_stages

    (last,) = parse_stages(until)
    if is_url(G.spec):
        from .errors import ConfigError

        raise ConfigError("the demo needs a local work directory", "Use --workdir PATH (a bucket works with run and refresh)")
    as_json = _json(as_json)
    # with --json, the tables the demo shows a person go to stderr and only the funnel to stdout
    with _lock("demo"), contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext():
        funnel = run_demo(G.workdir, G.config, articles=articles, steps=steps, workers=G.workers, console=console,
                          until=last)
    if as_json:
        emit(funnel, [], True)


@app.command()
def refresh(
    dumps: Dumps = None,
    source: Annotated[Optional[str], typer.Option(metavar="dumps|api", help="dumps | api (default: [harvest] source).")] = None,
    log_json: Annotated[bool, typer.Option("--log-json", help="Structured logs: one JSON object per line on stderr.")] = False,
    refetch_after: RefetchAfter = None,
    as_json: AsJson = False,
):
    """One incremental update to a new corpus version, with a run diff (exit 0 updated, 3 nothing new, 75 locked).

    New dumps or API submissions go through every stage; nothing done before is redone.
    The diff goes to refresh/latest.json and refresh/diff-NNNNN.json."""
    from .refresh import EXIT_NOTHING_NEW, EXIT_UPDATED, refresh as do_refresh, render

    ctx = _context(harvest={"dumps": [str(d) for d in dumps] if dumps else None, "source": source},
                   fetch={"refetch_after_days": refetch_after})
    ctx.json_logs = log_json
    try:
        with _lock("refresh", ctx):
            diff = do_refresh(ctx)
    finally:
        ctx.close()
    if log_json:
        sys.stderr.write(json.dumps({"level": "info", "msg": "refresh done", "diff": diff}) + "\n")
    if _json(as_json):
        emit(diff, [], True)
    elif not log_json:
        render(diff, Console())
    raise typer.Exit(EXIT_UPDATED if diff["updated"] else EXIT_NOTHING_NEW)


schedule_app = WebtextTyper(help="Run `webtext refresh` on a schedule (user crontab or systemd timer).",
                            no_args_is_help=True)
app.add_typer(schedule_app, name="schedule")
Tabfile = Annotated[Optional[Path], typer.Option(metavar="PATH", help="A crontab file to edit instead of the user's crontab.")]


@schedule_app.command("install")
def schedule_install(
    cron: Annotated[Optional[str], typer.Option(metavar="SCHEDULE", help='Cron schedule, e.g. "0 3 * * *" (03:00 daily).')] = None,
    systemd: Annotated[bool, typer.Option("--systemd", help="Print a systemd service and timer unit instead.")] = False,
    on_calendar: Annotated[str, typer.Option(metavar="CALENDAR", help="The timer's OnCalendar (with --systemd).")] = "*-*-* 03:00:00",
    tabfile: Tabfile = None,
    as_json: AsJson = False,
):
    """Add (or replace) the refresh entry for this work directory."""
    from . import schedule as S
    from .errors import ConfigError

    if systemd:
        service, timer = S.systemd_units(G.spec, G.config, on_calendar)
        if _json(as_json):
            emit({"service": service, "timer": timer}, [], True)
            return
        print("# ~/.config/systemd/user/webtext-refresh.service\n" + service)
        print("# ~/.config/systemd/user/webtext-refresh.timer\n" + timer)
        print("# then: systemctl --user daemon-reload && systemctl --user enable --now webtext-refresh.timer")
        return
    if not cron:
        raise ConfigError("choose a schedule", 'Use --cron "0 3 * * *", or --systemd')
    entry = S.install(cron, G.spec, G.config, tabfile)
    emit({"installed": entry}, [f"crontab entry written: {entry}"], _json(as_json))


@schedule_app.command("show")
def schedule_show(tabfile: Tabfile = None, as_json: AsJson = False):
    """Print this work directory's refresh entry, if any."""
    from . import schedule as S

    entries = S.show(G.spec, tabfile)
    emit({"entries": entries}, entries or [f"no refresh scheduled for {G.spec}"], _json(as_json))


@schedule_app.command("remove")
def schedule_remove(tabfile: Tabfile = None, as_json: AsJson = False):
    """Remove this work directory's refresh entry."""
    from . import schedule as S

    n = S.remove(G.spec, tabfile)
    emit({"removed": n}, [f"{n} crontab entry(ies) removed"], _json(as_json))


@app.command()
def remove(
    url: Annotated[Optional[list[str]], typer.Option("--url", metavar="URL", help="A URL to take out of the corpus, http and https alike (repeatable).")] = None,
    domain: Annotated[Optional[list[str]], typer.Option("--domain", metavar="DOMAIN", help="A domain: it and every subdomain (repeatable).")] = None,
    prefix: Annotated[Optional[list[str]], typer.Option("--prefix", metavar="URL", help="A URL prefix, either scheme (repeatable).")] = None,
    file: Annotated[Optional[Path], typer.Option("--file", help="One per line: a URL, url:URL, domain:D or prefix:URL; # comments.")] = None,
    reason: Annotated[str, typer.Option(metavar="TEXT", help="Recorded with the takedown.")] = "",
    apply: Annotated[bool, typer.Option(help="Cut a new corpus version now (else at the next shard or refresh).")] = True,
    purge: Annotated[bool, typer.Option("--purge", help="Also remove the pages' bytes from every stored form: WARC records, "
                                        "docs, dedup, clean, the tokenizer's parts, the current version and its nanoGPT export.")] = False,
    all_versions: Annotated[bool, typer.Option("--all-versions", help="With --purge: rewrite earlier corpus versions' token shards too.")] = False,
    as_json: AsJson = False,
):
    """Takedowns: documents from these URLs, domains or prefixes leave the corpus from the
    next version on, and harvest and fetch never take them in again.

    Earlier versions are kept as they were; the state database records when."""
    from webtext.stages.takedowns import parse, parse_line

    from .errors import ConfigError, MissingInputError

    # every value checked before any is recorded
    wanted = [parse(kind, v) for kind, vals in (("url", url), ("domain", domain), ("prefix", prefix)) for v in vals or []]
    if file:
        if not file.is_file():
            raise MissingInputError(f"{file} not found")
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            try:
                if (t := parse_line(line)) is not None:
                    wanted.append(t)
            except ConfigError as e:
                raise ConfigError(f"{file}:{n}: {e.what}", e.fix) from None
    if not wanted:
        raise ConfigError("no takedown given", "Use --url URL, --domain D, --prefix URL (repeatable) or --file FILE")
    if all_versions and not purge:
        raise ConfigError("--all-versions needs --purge", "Add --purge, or leave out --all-versions")
    if purge and is_url(G.spec):
        raise ConfigError("remove --purge rewrites files in place and works on a local work directory only",
                          "Run it where the work directory is a local path (copy the bucket down and back up)")
    ctx = _context()
    try:
        with _lock("remove", ctx):
            added = sum(ctx.state.add_takedown(t.key, t.value, reason, t.kind) for t in wanted)
            console.print(f"{added} takedown(s) recorded ({len(wanted) - added} already known)")
            version, purged = {}, {}
            if apply and (G.workdir / "tokens" / "manifest.json").exists():
                from .run import run_stage

                st = run_stage(ctx, "shard")
                version = {"version": st["info"]["version"], "removed_docs": st["info"].get("removed_docs", 0)}
                console.print(f"corpus version {st['info']['version']}: {st['info'].get('removed_docs', 0)} "
                              "document(s) removed")
            if purge:
                from webtext.stages.takedowns import Takedown

                from .purge import purge as purge_pages

                every = [Takedown(t["kind"], t["url"]) for t in ctx.state.takedowns()]
                res = purge_pages(ctx.workdir, every, all_versions=all_versions, log=ctx.log)
                purged = {"purge": res.as_dict()}
                old = res.kept_in_old_versions
                if old:
                    console.print(f"{len(old)} token shard(s) of earlier corpus versions still hold the page(s): "
                                  "rerun with --all-versions, or `webtext gc` those versions")
    finally:
        ctx.close()
    if _json(as_json):          # the lines above went to stderr; the result, to stdout
        emit({"takedowns": [{"kind": t.kind, "value": t.value} for t in wanted], "recorded": added,
              "already_known": len(wanted) - added, **version, **purged}, [], True)


@app.command()
@_mirrored(bulk=False)    # status reads only small files
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print the same as JSON.")] = False,
):
    """One screen about the work directory: stages done, corpus versions, last runs and refresh, lock state."""
    from .status import collect_status, render_status

    if G.workdir.exists() and not G.workdir.is_dir():
        from .errors import ConfigError

        raise ConfigError(f"work directory {G.workdir} is a file, not a directory", "Pass --workdir a directory")
    st = collect_status(G.workdir)
    if G.config is not None:        # checked like every other command's: a missing or invalid file is an error
        load_config(G.config, {})
        st["config"] = str(G.config)
    if _json(as_json):
        emit(st, [], True)
    else:
        render_status(st, Console())


@app.command()
@_mirrored(keep=True)
def pull(as_json: AsJson = False):
    """Download a bucket work directory (--workdir s3://... or gs://...) into the local
    scratch, bulk data included: e.g. on each node before `torchrun ... webtext train`."""
    if not is_url(G.spec):
        emit({"workdir": G.spec, "local": str(G.workdir), "downloaded": False},
             [f"{G.spec} is a local work directory: nothing to download"], _json(as_json))
        return
    emit({"workdir": G.spec, "local": str(G.workdir), "downloaded": True},
         [f"work directory ready in {G.workdir}"], _json(as_json))


@app.command()
def gc(
    keep: Annotated[int, typer.Option("--keep", help="Corpus versions to keep, the newest (at least 1).")],
    force: Annotated[bool, typer.Option("--force", help="Also remove versions that runs under runs/ were trained on.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
):
    """Remove all but the newest N corpus versions' folders from tokens/ (never the latest;
    never a version a run under runs/ was trained on, unless --force)."""
    from .gc import as_json as gc_json, gc as collect_garbage, render

    ctx = _context()
    try:
        with _lock("gc", ctx):
            res = collect_garbage(ctx.workdir, keep, force, symlink=ctx.store is None)
    finally:
        ctx.close()
    print(gc_json(res) if _json(as_json) else render(res))


@app.command()
@_mirrored()
def report(
    as_json: Annotated[bool, typer.Option("--json", help="Write reports/report.json and print it, instead of the HTML.")] = False,
):
    """Write reports/report.html (self-contained: plots embedded, no external assets) and print the funnel."""
    from .errors import MissingInputError
    from .funnel import collect, render
    from .report import write_report

    funnel = collect(G.workdir)
    if not funnel["stages"]:
        raise MissingInputError(f"no stage output in {G.workdir}", "Run `webtext run` or `webtext demo` first")
    as_json = _json(as_json)
    path = write_report(G.workdir, as_json=as_json, source=G.spec if is_url(G.spec) else None)
    if as_json:
        print(path.read_text())
    else:
        render(funnel, Console())
        console.print(f"report written: {path}")


classifier_app = WebtextTyper(no_args_is_help=True, help="GPT-3's quality classifier: a logistic regression on hashed "
                                                         "word counts, the corpus against a negative set.")
app.add_typer(classifier_app, name="classifier")


@classifier_app.command("train")
@_mirrored()
def classifier_train(
    negative: Annotated[Optional[list[Path]], typer.Option(
        "--negative", metavar="PATH", help="Negative documents (required, repeatable): docs tables (Parquet with a "
                                           "text column) or WARC files (.warc.gz, .warc; the HTML pages' text), or folders of them.")] = None,
    positive: Annotated[Optional[list[Path]], typer.Option(
        "--positive", metavar="PATH", help="Positive documents, as --negative (repeatable; default: the work directory's clean/).")] = None,
    out: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Model folder to write (default <workdir>/classifier).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the validation split and of the sample under --max-docs.")] = 0,
    max_docs: Annotated[int, typer.Option(min=1, help="Documents per class at most (bounds memory: about 5 KB a document).")] = 100_000,
    val_fraction: Annotated[float, typer.Option(min=0.01, max=0.5, help="Share of documents held out for the AUC.")] = 0.1,
    c: Annotated[float, typer.Option("--c", min=1e-6, help="Inverse L2 strength (scikit-learn's C): higher gives more confident "
                                                     "scores, which GPT-3's Pareto rule reads as they are.")] = 1.0,
    as_json: AsJson = False,
):
    """Fit the quality classifier: positives (the corpus) against negatives; report held-out AUC."""
    from webtext.stages.classifier import ClassifierConfig, train as train_classifier

    from .errors import ConfigError, MissingInputError

    if not negative:
        raise ConfigError("no negatives given", "Give --negative PATH (Parquet docs tables or WARC files, or folders of them)")
    if not positive and not any((G.workdir / "clean").glob("*.parquet")):
        raise MissingInputError(f"no corpus in {G.workdir / 'clean'} to take as positives",
                                "Run `webtext run` first, or give --positive PATH")
    out = out or G.workdir / "classifier"
    res = train_classifier(positive or [G.workdir / "clean"], negative, out,
                           ClassifierConfig(C=c, seed=seed, max_docs=max_docs, val_fraction=val_fraction))
    v, pos, neg = res["validation"], res["positives"], res["negatives"]
    auc = f"AUC {v['auc']:.4f}, accuracy {v['accuracy']:.3f}" if v["auc"] is not None else "no AUC (a class has no held-out documents)"
    emit(res, [f"classifier written: {out}",
               f"  positives {pos['train']:,} train + {pos['val']:,} held out; negatives {neg['train']:,} + {neg['val']:,}",
               f"  held out: {auc}  (use: webtext classifier score --model {out} --out DIR PATH...)"], _json(as_json))


@classifier_app.command("score")
@_mirrored()
def classifier_score(
    inputs: Annotated[list[Path], typer.Argument(metavar="PATH...", help="Docs tables (Parquet with a text column) or folders of them.")],
    model: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Model folder (default <workdir>/classifier).")] = None,
    out: Annotated[Optional[Path], typer.Option(metavar="DIR", help="Folder for the scored tables (same file names).")] = None,
    in_place: Annotated[bool, typer.Option("--in-place", help="Rewrite each input with the column instead (atomically).")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the Pareto rule whose kept count is reported.")] = 0,
    as_json: AsJson = False,
):
    """Add a quality_score column (0-1) to docs tables; report what GPT-3's rule, pareto(9) > 1 - score, keeps."""
    from webtext.stages.classifier import score

    res = score(model or G.workdir / "classifier", inputs, out, in_place, seed=seed)
    rows, mean, kept = res["rows"], res["mean_score"], res["pareto"]["kept"]
    emit(res, [f"scored {rows:,} documents in {len(res['files'])} file(s)"
               + (f": mean quality_score {mean:.3f}" if rows else ""),
               f"  pareto(9) > 1 - score would keep {kept:,} of {rows:,}"], _json(as_json))


@app.command()
@_mirrored()
def compare(
    reference: Annotated[Path, typer.Option(
        metavar="FILE.JSONL", help="Reference documents, one JSON object with a text field a line: OpenAI's WebText "
                                   "samples (webtext.test.jsonl, webtext.valid.jsonl, webtext.train.jsonl), or your own "
                                   "lines with an optional url field.")],
    threshold: Annotated[Optional[list[float]], typer.Option(
        "--threshold", metavar="J", help="Jaccard thresholds (repeatable; default 0.5 0.7 0.8 0.9); the dedup threshold "
                                         "is always added.")] = None,
    verify: Annotated[str, typer.Option(metavar="exact|estimate", help="exact: candidate pairs' Jaccard from their "
                                                                      "shingles | estimate: from MinHash.")] = "exact",
    run_name: Annotated[Optional[str], typer.Option(
        metavar="NAME", help="Also report the perplexity of runs/NAME/ckpt.pt on the reference.")] = None,
    ppl_docs: Annotated[int, typer.Option(min=1, help="Reference documents scored for perplexity (a seeded sample).")] = 500,
    device: Device = "auto",
    as_json: AsJson = False,
):
    """How close clean/ is to a WebText sample: the share of reference documents with a near-duplicate in the corpus
    and of the corpus in the reference, what identifies the missing ones, and a run's perplexity on them
    (reports/compare.json)."""
    from .compare import DEFAULT_THRESHOLDS, CompareConfig, compare as run_compare
    from .comparereport import summary_lines

    cfg = load_config(G.config, {"run": {"workers": G.workers}})
    ccfg = CompareConfig(dedup=cfg.dedup, thresholds=list(threshold or DEFAULT_THRESHOLDS), verify=verify,
                         workers=cfg.run.workers, ppl_docs=ppl_docs)
    model = None
    if run_name:                    # (name, checkpoint, GPT, device)
        name, dev, ck, gpt = _checkpoint(run_name, device)
        model = (name, ck, gpt, dev)
    report = run_compare(G.workdir, reference, ccfg, model, log=lambda m: console.print(m, highlight=False))
    emit(report, summary_lines(report, str(G.workdir / "reports" / "compare.json")), _json(as_json))


GLOBAL_OPTIONS = ("--workdir", "--config", "--workers", "--executor", "--ray-address", "--json")


def _usage_error(e) -> str:
    """A click usage error (unknown option, bad value, missing argument) as one line."""
    msg = e.format_message().strip().rstrip(".")
    name = getattr(e, "option_name", None)
    cmd = e.ctx.command_path if e.ctx else "webtext"
    if name in GLOBAL_OPTIONS and e.ctx and e.ctx.parent is not None:
        return f"{msg}. {name} is a global option: put it before the command (webtext {name} ... {e.ctx.info_name})"
    return f"{msg}. See `{cmd} --help`"


def main() -> None:
    try:
        rv = app(standalone_mode=False)
    except typer.TyperException as e:       # click's errors, as typer exports them (public name: the base)
        if type(e).__name__ == "NoArgsIsHelpError":     # bare `webtext`: the help text
            print(e.ctx.get_help())
            sys.exit(e.exit_code)
        # usage errors (unknown option, bad value, missing argument): one line and exit 2
        text = _usage_error(e) if hasattr(e, "ctx") else e.format_message()
        console.print(f"[red]error:[/red] {escape(text)}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except WebtextError as e:
        console.print(f"[red]error:[/red] {escape(e.message)}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except (KeyboardInterrupt, typer.Abort):
        rv = 130
    except Exception as e:  # noqa: BLE001 -- one line, not a traceback, unless debugging
        if os.environ.get("WEBTEXT_DEBUG"):
            raise
        console.print(f"[red]internal error:[/red] {escape(f'{type(e).__name__}: {e}')} "
                      "(set WEBTEXT_DEBUG=1 for a traceback)", highlight=False, soft_wrap=True)
        sys.exit(1)
    if rv == 130:       # typer turns Ctrl-C into exit code 130
        console.print("interrupted; finished shards are kept and a rerun resumes")
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()

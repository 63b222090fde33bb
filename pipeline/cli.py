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
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

from .cliapp import WebtextTyper
from .clibase import (
    AsJson,
    Bench,
    Dumps,
    G,
    Proxy,
    _context,
    _json,
    _lock,
    _mirrored,
    _one,
    app,
    console,
)
from .errors import WebtextError
from .remote import is_url
from .summary import emit


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
    from .refresh import EXIT_NOTHING_NEW, EXIT_UPDATED, render
    from .refresh import refresh as do_refresh

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


# The commands of training and evaluation, and of releases, register on the same app,
# after the stages, so `webtext --help` lists them in pipeline order.
from . import climodel, clirelease  # noqa: E402,F401

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

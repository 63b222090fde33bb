"""``webtext export``, ``remove``, ``status``, ``pull``, ``gc``, ``report``, ``classifier`` and
``compare``: releases, takedowns and reading the work directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .cliapp import WebtextTyper
from .clibase import AsJson, G, _context, _json, _lock, _mirrored, app, console
from .climodel import Device, RunName, _checkpoint
from .config import load_config
from .remote import is_url
from .summary import emit


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
    from .gc import as_json as gc_json
    from .gc import gc as collect_garbage
    from .gc import render

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
    from webtext.stages.classifier import ClassifierConfig
    from webtext.stages.classifier import train as train_classifier

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
    from .compare import DEFAULT_THRESHOLDS, CompareConfig
    from .compare import compare as run_compare
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

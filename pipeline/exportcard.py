"""The dataset card (``OUT/README.md``) of a text release (see ``pipeline.export``).

YAML front matter for the Hugging Face Hub and ``datasets``: ``configs`` with one
``data_files`` entry per split naming its files, so ``datasets.load_dataset(OUT)``
loads exactly those splits; ``license: other`` with a note. The Markdown body reports
the corpus version, the funnel (each stage's in/out/dropped from ``_meta/stats.json``), the
decontamination overlap report (``clean/_overlap.json``), the sources and dates, the
filters and their settings (each stage's ``_meta/config.json``), licensing notes and how to
request removal.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import yaml

from . import layout
from .funnel import STAGE_FOLDERS, collect
from .io import atomic_path, read_json

TOP_SUBREDDITS = 20


def _sidecar(workdir: Path, folder: str, name: str) -> Path | None:
    """A stage's bookkeeping file (``name``: a ``pipeline.layout`` name), if it is there."""
    p = layout.meta(workdir / folder, name)
    return p if p.is_file() else None


def _utc(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t)) if t is not None else "-"


def front_matter(manifest: dict, summary) -> dict:
    files = {s: f for s, f in summary.files.items() if f}
    return {
        "pretty_name": f"webtext corpus, version {summary.version}",
        "language": ["en"],
        "license": "other",
        "license_name": "authors-copyright",
        "license_details": "The text of each document belongs to its authors; released for research use. "
                           "See 'Licensing' below.",
        "task_categories": ["text-generation"],
        "size_categories": [_size_category(sum(summary.rows.values()))],
        "tags": ["webtext", f"corpus-version-{summary.version}"],
        "configs": [{"config_name": "default", "default": True,
                     "data_files": [{"split": s, "path": f} for s, f in files.items()]}],
    }


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M"), (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M")):
        if n < limit:
            return name
    return "n>100M"


def _funnel(workdir: Path) -> list[str]:
    units = {stage: unit for stage, _, unit in STAGE_FOLDERS}
    lines = ["| stage | unit | in | out | dropped (reason: count) |", "|---|---|---:|---:|---|"]
    for s in collect(workdir)["stages"]:
        drops = ", ".join(f"{k}: {v:,}" for k, v in sorted(s.get("dropped", {}).items(), key=lambda kv: -kv[1]))
        lines.append(f"| {s['stage']} | {units.get(s['stage'], s.get('unit', ''))} | {s['in']:,} | {s['out']:,} "
                     f"| {drops or '-'} |")
    return lines if len(lines) > 2 else ["No stage statistics were found."]


def _overlap(workdir: Path) -> list[str]:
    p = _sidecar(workdir, "clean", layout.OVERLAP)
    if p is None:
        return ["No overlap report was found (`clean/_overlap.json`)."]
    rep = read_json(p)
    lines = [f"Benchmark {rep.get('ngram', '?')}-grams found in the corpus before decontamination "
             f"(policy `{rep.get('policy', '?')}`):", "",
             "| benchmark | n-grams | in corpus | % in corpus | documents hit | documents removed | chars removed |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for b in rep.get("benchmarks", []):
        lines.append(f"| {b.get('benchmark')} | {b.get('ngrams', 0):,} | {b.get('ngrams_in_corpus', 0):,} | "
                     f"{b.get('percent_in_corpus', 0):.2f} | {b.get('documents_hit', 0):,} | "
                     f"{b.get('documents_removed', 0):,} | {b.get('chars_removed', 0):,} |")
    fp = rep.get("false_positive_check") or []
    if fp:
        lines += ["", "Bloom filter false-positive check (observed vs configured rate): " + "; ".join(
            f"{f.get('filter')}: {f.get('observed', 0):.2g} vs {f.get('configured', 0):.2g}" for f in fp) + "."]
    return lines


def _dumps(workdir: Path) -> list[str]:
    path = workdir / "state.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT name, version, harvested FROM harvest_sources ORDER BY version, name").fetchall()
    except sqlite3.OperationalError:
        rows = []
    finally:
        db.close()
    return [f"- `{n}` (harvest version {v}, read {_utc(t)})" for n, v, t in rows]


def _sources(workdir: Path, summary) -> list[str]:
    lo, hi = (summary.first_seen + [None, None])[:2]
    lines = [f"- URLs first submitted to Reddit (`first_seen`) between {_utc(lo)} and {_utc(hi)}."]
    if summary.sources:
        lines.append("- Page source: " + ", ".join(f"{k} {v:,}" for k, v in sorted(summary.sources.items())) +
                     " (`live`: fetched from the site; `commoncrawl`, `wayback`: a dead link recovered from a "
                     "web archive, captured at `captured_at`).")
    dumps = _dumps(workdir)
    if dumps:
        lines += ["- Reddit submission dumps read by the work directory (up to its latest version):",
                  *[f"  {d}" for d in dumps]]
    top = sorted(summary.subreddits.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_SUBREDDITS]
    if top:
        lines.append(f"- Subreddits ({len(summary.subreddits):,} in all; documents per subreddit, top "
                     f"{len(top)}): " + ", ".join(f"r/{k} {v:,}" for k, v in top) + ".")
    return lines


def _filters(workdir: Path) -> list[str]:
    lines = []
    for stage, folder, _ in STAGE_FOLDERS:
        p = _sidecar(workdir, folder, layout.CONFIG)
        if p is None:
            continue
        cfg = read_json(p)
        settings = cfg.get(stage, cfg)
        lines += [f"**{stage}** (`{folder}/`):", "", "```json", json.dumps(settings, indent=1, sort_keys=True),
                  "```", ""]
    return lines or ["No stage settings were found."]


def body(workdir: Path, manifest: dict, summary) -> str:
    rows, total = summary.rows, sum(summary.rows.values())
    latest = manifest.get("versions", [{}])[-1].get("version", summary.version)
    scope = (f"The whole work directory at export time (through corpus "
             f"version {latest}; this release is version {summary.version})." if latest != summary.version else
             "The work directory that built this version.")
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    files = "\n".join(f"- {s}: {rows[s]:,} documents in {len(f)} file(s): " + ", ".join(f"`{x}`" for x in f)
                      for s, f in summary.files.items() if f)
    fmt = "Parquet" if summary.format == "parquet" else "gzipped JSON Lines (timestamps as ISO 8601 strings)"
    load = ('datasets.load_dataset("OUT")' if summary.format == "parquet"
            else 'datasets.load_dataset("json", data_files={"train": "OUT/data/train-*.jsonl.gz", '
                 '"val": "OUT/data/val-*.jsonl.gz"})')
    return "\n".join([
        f"# webtext corpus, version {summary.version}", "",
        f"A WebText-style corpus: the text of web pages linked from Reddit submissions with enough karma, "
        f"extracted, deduplicated and decontaminated by [webtext](https://github.com/webtext-project/webtext). "
        f"This is corpus version {summary.version} ({total:,} documents), exported {created} as {fmt}.", "",
        "## Data", "", files, "",
        "Columns: `doc_id` (hash of the normalized URL), `url`, `text` (the final text, after decontamination), "
        "`karma` (Reddit score of the URL's submissions), `subreddits`, `first_seen` (first submission, "
        "timestamp UTC), `domain`, `lang`, `extractor`, `source` (`live`, `commoncrawl` or `wayback`) and "
        "`captured_at` (the archive's capture time, timestamp UTC; null for a live page).", "",
        f"Load it with `{load}`, or `duckdb.sql(\"select * from 'OUT/data/*.parquet'\")`. "
        "The split is the corpus's: a document is in val by a hash of its normalized URL.", "",
        f"Taken-down documents are not included ({summary.taken_down:,} of this version's documents were "
        "left out for a takedown recorded up to the export).", "",
        "## Funnel", "", scope, "", *_funnel(workdir), "",
        "## Decontamination", "", scope, "", *_overlap(workdir), "",
        "## Sources and dates", "", *_sources(workdir, summary), "",
        "## Filters and settings", "", *_filters(workdir),
        "## Licensing", "",
        "The text of each document belongs to its authors and is subject to their terms; webtext claims no "
        "rights in it. This release is meant for research on language models. Check the terms of the sites "
        "before any other use, and do not redistribute documents whose removal was requested.", "",
        "## Removal requests", "",
        "To have a page removed, ask the maintainers of this release with its URL. They run "
        "`webtext remove --url URL` (or `--file urls.txt`), which records the takedown and cuts a new corpus "
        "version without the document; no later export of any version carries it.", "",
    ])


def write_card(workdir: Path, out: Path, manifest: dict, summary) -> Path:
    path = Path(out) / "README.md"
    text = "---\n" + yaml.safe_dump(front_matter(manifest, summary), sort_keys=False) + "---\n\n" + \
        body(Path(workdir), manifest, summary)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path

"""Split extracted pages into docs/ and docs/rejected/ from their recorded signals:
extract's last step, and ``webtext filter``, which re-decides after a rule changes without
extracting again (no WARC read, no trafilatura).

In:  ``docs/docs-NNNNN.parquet`` and ``docs/rejected/rejected-NNNNN.parquet`` (or, inside
     extract, the pages of the shard just extracted) and an ``ExtractConfig``.
Out: the same two files, rewritten only when a page changes side or reason; extract's
     completion record of the shard (its outputs' sizes and hashes, its stats) updated so the
     next ``webtext extract`` does not extract again; ``docs/_meta/decided/decided-NNNNN.json``
     (the decision settings the split was made with) and ``docs/_meta/refilter.json`` (what
     moved). dedup, decontaminate and shard see the rewritten shards as changed inputs (their
     fingerprints hash the files) and redo those shards on their next run.

What is re-decided: ``min_words``, ``langs``/``min_lang_score`` on the recorded language,
``max_short_line_share``, ``max_boilerplate_line_share``, ``gopher`` and ``rules``
(``stages.decide``). What is not: PII (the stored text is already redacted or not), the
language prefilter, ``short_line_words`` and the extractor; pages rejected before they had
a text (too large, another language before extraction, extraction failed or empty) stay
rejected. Those settings are part of extract's fingerprint: changing one extracts again.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from webtext.pipeline import layout
from webtext.pipeline.errors import WebtextError
from webtext.pipeline.io import read_json, read_parquet, sha256_file, write_json, write_parquet
from webtext.pipeline.schemas import DOCS, REJECTED
from webtext.pipeline.stats import Stats

from . import optout
from .decide import decide

# The settings that only decide which pages are kept: not in extract's fingerprint.
DECISION_KEYS = ("min_words", "min_lang_score", "max_short_line_share", "max_boilerplate_line_share",
                 "gopher", "rules", "ai_optout")
PII_KEYS = ("pii_email", "pii_ip", "pii_phone")
SCORE = "quality_score"         # stages.classifier's column, kept through a rewrite when present


def decision_settings(cfg) -> dict:
    return {k: getattr(cfg, k) for k in DECISION_KEYS} | {"langs": list(cfg.langs)}


def rejected_path(folder: Path, shard: str) -> Path:
    return Path(folder) / layout.REJECTED_DIR / f"rejected-{shard}.parquet"


def _decided_path(folder: Path, shard: str) -> Path:
    return layout.meta(folder, layout.DECIDED) / f"decided-{shard}.json"


def _docs_schema(table: pa.Table) -> pa.Schema:
    if SCORE in table.column_names:
        return pa.schema([*DOCS, table.schema.field(SCORE)], metadata=DOCS.metadata)
    return DOCS


def split(pages: pa.Table, cfg) -> tuple[pa.Table, pa.Table, np.ndarray]:
    """(kept rows, rejected rows with ``reason`` and ``stage``, reasons) of pages with text."""
    reasons = decide(pages, cfg)
    keep = reasons.is_null()
    rej = pages.filter(pc.invert(keep))
    rej = rej.append_column("reason", reasons.filter(pc.invert(keep)))
    rej = rej.append_column("stage", pa.array(["extract"] * rej.num_rows, pa.string()))
    return pages.filter(keep), rej, reasons.to_numpy(zero_copy_only=False)


def write_split(folder: Path, shard: str, docs: pa.Table, rejected: pa.Table, cfg) -> None:
    """Write both files of a shard (sorted by doc_id; no file for no rows) and its decided record."""
    docs = docs.sort_by("doc_id")
    write_parquet(docs, Path(folder) / f"docs-{shard}.parquet", _docs_schema(docs))
    write_parquet(rejected.sort_by("doc_id"), rejected_path(folder, shard), REJECTED)
    write_json(_decided_path(folder, shard), decision_settings(cfg))


def split_stats(stats: Stats, docs: pa.Table, rejected: pa.Table) -> Stats:
    """``stats`` with the drops of ``rejected`` (by reason), ``out`` and the PII counts of ``docs``."""
    for item in rejected.column("reason").value_counts().to_pylist() if rejected.num_rows else []:
        stats.drop(item["values"], item["counts"])
    stats.records_out = docs.num_rows
    for key, n in optout.count(docs.column("signals").combine_chunks() if docs.num_rows else pa.array([]),
                               rejected.column("signals").combine_chunks() if rejected.num_rows else pa.array([])).items():
        stats.info[key] = stats.info.get(key, 0) + n
    if docs.num_rows:
        sig = docs.column("signals").combine_chunks()
        for key in PII_KEYS:
            col = sig.field(key)
            if col.null_count < len(col):       # pii = "off": no counts
                stats.info[key] = stats.info.get(key, 0) + int(pc.sum(col).as_py() or 0)
    return stats


def refilter_shard(folder: Path, shard: str, cfg) -> dict:
    """Re-decide one finished shard; returns {"changed", "to_rejected": {reason: n}, "to_docs": n,
    "reasons": {reason: n}} (reasons over every page with text)."""
    folder = Path(folder)
    docs_p, rej_p = folder / f"docs-{shard}.parquet", rejected_path(folder, shard)
    docs = read_parquet(docs_p, DOCS)
    if "signals" not in docs.column_names:
        raise WebtextError(f"docs/{docs_p.name} was written before extract recorded signals",
                           "run `webtext extract` again (it extracts once more and records them)")
    rej = read_parquet(rej_p, REJECTED)
    has_text = rej.column("text").is_valid()
    notext, rej_text = rej.filter(pc.invert(has_text)), rej.filter(has_text)
    schema = _docs_schema(docs)
    if SCORE in schema.names and SCORE not in rej_text.column_names:
        rej_text = rej_text.append_column(schema.field(SCORE), pa.nulls(rej_text.num_rows, schema.field(SCORE).type))
    pages = pa.concat_tables([docs.select(schema.names).cast(schema),
                              rej_text.select(schema.names).cast(schema)])
    was_kept = np.arange(pages.num_rows) < docs.num_rows
    new_docs, new_rej, reasons = split(pages, cfg)
    old = np.array([None] * docs.num_rows + rej_text.column("reason").to_pylist(), dtype=object)
    dropped = reasons != None  # noqa: E711 -- elementwise
    to_rejected = Counter(reasons[was_kept & dropped].tolist())
    to_docs = int((~was_kept & ~dropped).sum())
    changed = bool((old != reasons).any())
    if changed:
        rejected = pa.concat_tables([notext.select(REJECTED.names).cast(REJECTED),
                                     new_rej.select(REJECTED.names).cast(REJECTED)])
        write_split(folder, shard, new_docs, rejected, cfg)
        _update_record(folder, shard, new_docs, rejected)
    else:
        write_json(_decided_path(folder, shard), decision_settings(cfg))
    return {"changed": changed, "to_rejected": dict(to_rejected), "to_docs": to_docs,
            "reasons": dict(Counter(r for r in reasons.tolist() if r is not None)), "pages": pages.num_rows}


def _update_record(folder: Path, shard: str, docs: pa.Table, rejected: pa.Table) -> None:
    """Extract's completion record of ``shard`` takes the rewritten files and their stats."""
    rec_path = layout.done_dir(folder) / f"extract-{shard}.json"
    rec = read_json(rec_path)
    old = Stats.from_dict(rec["stats"])
    stats = Stats(records_in=old.records_in,
                  info={k: v for k, v in old.info.items() if k not in PII_KEYS and k not in optout.STATS})
    stats.drop("no_metadata", old.dropped.get("no_metadata", 0))
    split_stats(stats, docs, rejected)
    outs = {}
    for p in (folder / f"docs-{shard}.parquet", rejected_path(folder, shard)):
        name = p.relative_to(folder).as_posix()
        outs[name] = {"size": p.stat().st_size, "sha256": sha256_file(p)} if p.exists() else {"absent": True}
    rec.update(outputs=outs, stats=stats.to_dict())
    write_json(rec_path, rec)


def finished_shards(folder: Path) -> list[str]:
    d = layout.done_dir(folder)
    return sorted(p.stem.removeprefix("extract-") for p in d.glob("extract-*.json")) if d.is_dir() else []


def stale_shards(folder: Path, cfg) -> list[str]:
    """Finished shards split with other decision settings than ``cfg``'s."""
    want = json.loads(json.dumps(decision_settings(cfg)))
    out = []
    for shard in finished_shards(folder):
        p = _decided_path(folder, shard)
        try:
            same = read_json(p) == want
        except (OSError, ValueError):
            same = False
        if not same:
            out.append(shard)
    return out


def merged_stats(folder: Path, shards: list[str] | None = None) -> Stats:
    """Extract's stats over the completion records of ``shards`` (all finished ones by default)."""
    total = Stats()
    for shard in finished_shards(folder) if shards is None else shards:
        total.merge(Stats.from_dict(read_json(layout.done_dir(folder) / f"extract-{shard}.json")["stats"]))
    return summarize(total)


def summarize(stats: Stats) -> Stats:
    """Extractor "both": the mean agreement of trafilatura and newspaper3k over every page."""
    pages = stats.info.pop("agreement_pages", 0)
    if pages:
        stats.info["agreement_pages"] = pages
        stats.info["agreement_mean"] = round(stats.info.pop("agreement_sum") / pages, 4)
    return stats


def refilter(ctx, shards: list[str] | None = None, log=None) -> dict:
    """``webtext filter``: re-decide ``shards`` (every finished one by default) with
    ``ctx.cfg.extract``; rewrites extract's stats and config and writes ``_meta/refilter.json``."""
    from webtext.pipeline.config import to_dict
    from webtext.pipeline.executor import finish_stage

    started = time.time()
    folder = ctx.dir("docs")
    todo = finished_shards(folder) if shards is None else shards
    if shards is None and not todo:
        raise WebtextError("docs/ holds no finished extract shard", "run `webtext extract` first")
    cfg = ctx.cfg.extract
    to_rejected, reasons = Counter(), Counter()
    to_docs = pages = changed = 0
    for shard in todo:
        got = refilter_shard(folder, shard, cfg)
        to_rejected.update(got["to_rejected"])
        reasons.update(got["reasons"])
        to_docs += got["to_docs"]
        pages += got["pages"]
        changed += got["changed"]
    stats = merged_stats(folder)
    out = finish_stage(ctx, "extract", folder, stats, to_dict(cfg), 0, len(finished_shards(folder)), started)
    summary = {"stage": "filter", "shards": len(todo), "shards_rewritten": changed, "pages_with_text": pages,
               "moved_to_rejected": dict(sorted(to_rejected.items())), "moved_to_docs": to_docs,
               "docs": out["out"], "reasons": dict(sorted(reasons.items())),
               "rule_rates": {r: round(n / pages, 6) for r, n in sorted(reasons.items())} if pages else {},
               "extractions": 0}
    write_json(layout.meta(folder, layout.REFILTER), summary)
    return summary


def parse_rules(options: list[str]) -> dict[str, dict]:
    """``--rule NAME.KEY=VALUE`` options as ``extract.rules`` settings (VALUE: a number, true
    or false); ConfigError (one line) on a malformed one. The values are checked by the config."""
    from webtext.pipeline.errors import ConfigError

    out: dict[str, dict] = {}
    for opt in options:
        name_key, sep, raw = opt.partition("=")
        name, dot, key = name_key.strip().partition(".")
        if not (sep and dot and name and key and raw.strip()):
            raise ConfigError(f"--rule {opt!r} is not NAME.KEY=VALUE",
                              "e.g. --rule gopher_stopwords.threshold=3 or --rule c4_policy.enabled=true")
        raw = raw.strip().lower()
        if raw in ("true", "false"):
            value = raw == "true"
        else:
            try:
                value = float(raw)
            except ValueError:
                raise ConfigError(f"--rule {opt!r}: {raw!r} is not a number, true or false") from None
            value = int(value) if key == "seed" and value.is_integer() else value
        out.setdefault(name, {})[key] = value
    return out

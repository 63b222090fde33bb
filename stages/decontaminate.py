"""decontaminate: ``dedup/`` -> ``clean/`` (Wikipedia and benchmark overlap removed).

Phases:
1. *filters*, one task per benchmark file -> ``clean/_filters/<name>-<hash>.bloom``: every
   word n-gram (default 13, as GPT-3) of the benchmark, normalized as in the papers
   (lowercase, alphanumeric words, single spaces; see ``ngrams.words``), hashed to uint64 with xxh3 and added
   to an rbloom filter sized for its n-gram count at ``fp_rate``. ``hash_func=int`` keeps
   the filter saveable; it is built once and reloaded by later runs.
2. *check*, one task per dedup shard -> ``clean/clean-NNNNN.parquet``: documents from
   wikipedia.org (by URL or final URL) are dropped, then any document sharing an n-gram
   with a benchmark.

Benchmark files: ``.jsonl`` (the ``text`` field of each line; n-grams do not cross
records) or plain text (the whole file). Drop reasons: wikipedia_url,
benchmark_overlap. ``info`` counts overlapping documents per benchmark
(``overlap_docs:<name>``).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from rbloom import Bloom

from pipeline.config import DecontaminateConfig, to_dict
from pipeline.errors import MissingInputError
from pipeline.executor import Context, Task, finish_stage, run_phase
from pipeline.io import atomic_path, require_shards, safe_name, shard_id, write_parquet
from pipeline.schemas import CLEAN
from pipeline.stats import Stats

from . import urls as U
from .ngrams import WORDS_VERSION, ngram_hashes, words

WIKIPEDIA = frozenset({"wikipedia.org"})


def benchmark_texts(path: Path, field: str = "text") -> list[str]:
    if path.suffix == ".jsonl":
        out = []
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                try:
                    out.append(str(json.loads(line)[field]))
                except (ValueError, KeyError, TypeError):
                    raise MissingInputError(f"{path}:{n} is not JSON with a '{field}' field") from None
        return out
    return [path.read_text(encoding="utf-8", errors="replace")]


def build_filter(task: Task) -> Stats:
    (src,) = task.inputs
    (out,) = task.outputs
    n, fp = task.params["ngram"], task.params["fp_rate"]
    grams: set[int] = set()
    texts = benchmark_texts(src)
    for text in texts:
        grams.update(ngram_hashes(words(text), n))
    bloom = Bloom(max(len(grams), 1), fp, hash_func=int)
    bloom.update(grams)
    with atomic_path(out) as tmp:
        bloom.save(str(tmp))
    stats = Stats(records_in=len(texts), records_out=len(texts))
    stats.add_info(f"ngrams:{src.stem}", len(grams))
    return stats


def check_shard(task: Task) -> Stats:
    src, *filters = task.inputs
    p = task.params
    blooms = [(name, Bloom.load(str(f), int)) for name, f in zip(p["names"], filters)]
    docs = pq.read_table(src)
    stats = Stats(records_in=docs.num_rows)
    mask = []
    for url, final, text in zip(docs["url"].to_pylist(), docs["final_url"].to_pylist(), docs["text"].to_pylist()):
        if p["drop_wikipedia"] and (U.domain_matches(U.host(url), WIKIPEDIA)
                                    or U.domain_matches(U.host(final), WIKIPEDIA)):
            stats.drop("wikipedia_url")
            mask.append(False)
            continue
        grams = ngram_hashes(words(text), p["ngram"])
        hits = [name for name, b in blooms if any(g in b for g in grams)]
        for name in hits:
            stats.add_info(f"overlap_docs:{name}", 1)
        if hits:
            stats.drop("benchmark_overlap")
        mask.append(not hits)
    kept = docs.filter(pa.array(mask, pa.bool_()))
    stats.records_out = kept.num_rows
    write_parquet(kept, task.outputs[0], CLEAN)
    return stats


def run(ctx: Context) -> dict:
    cfg: DecontaminateConfig = ctx.cfg.decontaminate
    started = time.time()
    inputs = require_shards(ctx.dir("dedup"), "dedup-*.parquet", "deduplicated shards", "dedup")
    benches = [Path(b) for b in cfg.benchmarks]
    for b in benches:
        if not b.is_file():
            raise MissingInputError(f"benchmark file {b} not found", "Check --benchmark / [decontaminate] benchmarks")
    out = ctx.dir("clean")
    fparams = {"ngram": cfg.ngram, "fp_rate": cfg.fp_rate, "words": WORDS_VERSION}
    filters = [out / "_filters" / f"{safe_name(b)}.bloom" for b in benches]
    built = run_phase(ctx, out, "filters", [
        Task("filters", f.stem, build_filter, [b], [f], fparams) for b, f in zip(benches, filters)
    ])
    cparams = {"ngram": cfg.ngram, "drop_wikipedia": cfg.drop_wikipedia, "names": [b.stem for b in benches],
               "words": WORDS_VERSION}
    checked = run_phase(ctx, out, "check", [
        Task("check", shard_id(s), check_shard, [s, *filters], [out / f"clean-{shard_id(s)}.parquet"], cparams)
        for s in inputs
    ])
    stats = checked.stats
    stats.info.update(built.stats.info)
    return finish_stage(ctx, "decontaminate", out, stats, to_dict(cfg),
                        built.ran + checked.ran, built.skipped + checked.skipped, started)

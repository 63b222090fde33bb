"""dedup: ``docs/`` -> ``dedup/`` (exact and MinHash near-duplicates removed).

Phases, each resumable per task:
1. *signatures*, one task per docs shard -> ``_meta/signatures/sig-NNNNN.parquet``: xxh128 of
   the normalized text (lowercase, whitespace collapsed) and a MinHash of word 5-gram
   shingles (``ngrams.words``: lowercase Unicode letters, digits and marks), 128
   permutations. Shingles are hashed to 64 bits with numpy a batch of texts at a time
   (``ngrams.shingle_hashes``, no Python object per shingle), and datasketch's affine32
   permutations are applied to their high 32 bits with numpy, a document at a time (the
   same values as ``MinHash.bulk``, without its per-shingle Python call). A rerun never
   re-signs a finished shard.
2. *bands*, one task per shard -> ``_meta/bands/NNNNN/part-PPP.parquet``: the persistent LSH
   band index. Bands x rows come from datasketch's optimizer at ``lsh_threshold`` (0.6
   and 128 permutations give 18 x 7: a pair at J = 0.8 is a candidate with probability
   0.986); each band's values are hashed to 64 bits with numpy. One extra band holds the
   exact-text hash. Rows are split by bucket into ``partitions`` files.
3. *pairs*, one task per partition -> ``_meta/pairs/pairs-PPP.parquet``: an external group-by.
   Each task sorts only its partition of every shard's band index and emits the pairs
   of documents sharing a bucket (every pair up to ``max_bucket_pairs`` members, a star
   beyond), once each, with a second partition number (a hash of the pair's two docs
   shards) and one Parquet row group per such number.
   Each task also writes ``_meta/pairs/keys-PPP.parquet``, the sorted keys of its documents.
4. *candidates*, one task per docs shard -> ``_meta/candidates/cand-NNNNN.parquet``: the
   shard's documents that are in a candidate pair (its range of every keys file), with
   their MinHash, keep-rule fields and, for exact verification, text. The only read of a
   shard's text and signatures after signing: verify and resolve read these small files.
5. *verify*, one task per partition -> ``_meta/verified/verified-PPP.parquet``: the row groups
   of its number from every pairs file (a pair found in several bands of several band
   partitions meets in one task, and a task reads only the shards of its shard pairs),
   verified against ``threshold`` (``verify``: ``exact`` Jaccard from the texts by
   default, or the MinHash ``estimate``, or ``off``), two shards' candidate files at a
   time. Only the duplicate pairs are written.
6. *components*, one task: connected components of the verified pairs (keys only), and
   each component's pairs routed whole to one of ``partitions`` files by a hash of its
   smallest key (``_meta/components/edges-PPP.parquet``).
7. *resolve*, one task per partition -> ``_meta/resolved/resolved-PPP.parquet``: documents
   with a verified pair are taken in keep-rule order: already in the
   corpus (a shard deduplicated by an earlier run, unless ``replace_existing``), then the
   highest karma, the earliest submission, the smallest doc_id. A document is removed
   only if it has a verified pair with a document already kept (its ``duplicate_of``),
   so removals never chain; a document kept only because its neighbour m was dropped
   (for k) gets the pair (k, it) verified, and the pass reruns (star buckets collapse).
   That pair lies inside the component, so components resolve independently and the
   result does not depend on ``partitions`` (tested).
8. *cluster*, one task: the resolved partitions streamed into ``_meta/clusters.parquet`` (the
   audit table; the best-ranked member names each cluster) and one drop list per shard.
9. *filter*, one task per shard -> ``dedup-NNNNN.parquet``. A shard whose drop list did
   not change is not rewritten.

Incremental: a new docs shard is signed and banded alone; pairs and clusters are
recomputed from the persisted index (a sort, no re-signing).

Memory per task, bounded by configuration (n_shard documents per docs shard, N in
the corpus, P = ``partitions``, B bands, C candidate pairs, V verified pairs, D documents
with a duplicate): signatures and bands ~ n_shard x (4 x num_perm + 18 x (B + 1)) bytes;
pairs ~ 18 x N x (B + 1) / P bytes; candidates ~ one shard's signatures and text column;
verify ~ 40 x C / P bytes + two shards' candidate files; components ~ 40 x (V + D) bytes;
resolve ~ (20 x V + 150 x D) / P bytes + two shards' candidate files; cluster ~ one
partition's rows + 16 bytes per removal.

Modules: ``dedup_sign`` (signatures, bands), ``dedup_verify`` (pairs, candidates,
verify), ``dedup_cluster`` (components, resolve, cluster); this one runs them and filters.
Parquet is read with ``use_threads=False``: tasks already run in parallel, and Arrow's
thread pool costs CPU (a 37 MB docs shard: 0.36 CPU-s threaded, 0.21 without).

Drop reasons: exact_duplicate, near_duplicate.
"""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from webtext.pipeline import layout, progress
from webtext.pipeline.layout import meta
from webtext.pipeline.config import DedupConfig, to_dict
from webtext.pipeline.executor import Context, Task, finish_stage, run_phase
from webtext.pipeline.io import parquet_rows, read_parquet, require_shards, shard_id, write_parquet
from webtext.pipeline.schemas import DEDUP, DROPS, upgrade_docs
from webtext.pipeline.stats import Stats

from .dedup_cluster import components, merge_clusters, resolve
from .dedup_sign import band_shard, lsh_params, minhashes, sign_shard, signature_params, text_hash  # noqa: F401
from .dedup_verify import candidates_shard, pair_partition, pairs_partition, read_part, verify_partition  # noqa: F401


def filter_shard(task: Task) -> Stats:
    src, drop_file = task.inputs
    docs = upgrade_docs(pq.read_table(src, use_threads=False))   # shards from before v4 lack source, captured_at
    d = read_parquet(drop_file, DROPS, use_threads=False)      # absent: nothing dropped
    mask = np.ones(docs.num_rows, dtype=bool)
    mask[d["row"].to_numpy()] = False
    stats = Stats(records_in=docs.num_rows)
    for reason, count in zip(*np.unique(np.array(d["reason"].to_pylist(), dtype=object), return_counts=True)):
        stats.drop(reason, int(count))
    kept = docs.filter(pa.array(mask))
    stats.records_out = kept.num_rows
    write_parquet(kept, task.outputs[0], DEDUP)
    progress.advance(docs.num_rows)
    return stats


def run(ctx: Context) -> dict:
    cfg: DedupConfig = ctx.cfg.dedup
    started = time.time()
    inputs = require_shards(ctx.dir("docs"), "docs-*.parquet", "document shards", "extract")
    out = ctx.dir("dedup")
    params = signature_params(cfg)
    shard_of = {src: shard_id(src) for src in inputs}
    rows = {src: parquet_rows(src) for src in inputs}     # progress totals (0: a placeholder in a bucket)
    sig_files = [meta(out, layout.SIGNATURES) / f"sig-{shard_of[s]}.parquet" for s in inputs]
    signed = run_phase(ctx, out, "signatures", [
        Task("signatures", shard_of[s], sign_shard, [s], [f], params, units="documents", size=rows[s])
        for s, f in zip(inputs, sig_files)
    ])
    # datasketch's optimizer: bands x rows minimizing false positives + negatives at
    # lsh_threshold, below the verification threshold so that pairs at it are candidates.
    bands, rows_per_band = lsh_params(cfg.lsh_threshold, cfg.num_perm)
    bparams = {**params, "bands": bands, "rows": rows_per_band, "partitions": cfg.partitions, "pairs_layout": 2}
    band_dir = meta(out, layout.BANDS)
    band_files = {s: [band_dir / shard_of[s] / f"part-{i:03d}.parquet" for i in range(cfg.partitions)]
                  for s in inputs}
    banded = run_phase(ctx, out, "bands", [
        Task("bands", shard_of[s], band_shard, [f], band_files[s], bparams) for s, f in zip(inputs, sig_files)
    ])
    pair_files = [meta(out, layout.PAIRS) / f"pairs-{i:03d}.parquet" for i in range(cfg.partitions)]
    key_files = [meta(out, layout.PAIRS) / f"keys-{i:03d}.parquet" for i in range(cfg.partitions)]
    paired = run_phase(ctx, out, "pairs", [
        Task("pairs", f"{i:03d}", pairs_partition, [band_files[s][i] for s in inputs], [pair_files[i], key_files[i]],
             {**bparams, "max_bucket_pairs": cfg.max_bucket_pairs}) for i in range(cfg.partitions)
    ])
    cand_files = [meta(out, layout.CANDIDATES) / f"cand-{shard_of[s]}.parquet" for s in inputs]
    cparams = {"num_perm": cfg.num_perm, "verify": cfg.verify}
    candidates = run_phase(ctx, out, "candidates", [
        Task("candidates", shard_of[s], candidates_shard, key_files + [f, s], [c], cparams)
        for s, f, c in zip(inputs, sig_files, cand_files)
    ])
    ver_files = [meta(out, layout.VERIFIED) / f"verified-{i:03d}.parquet" for i in range(cfg.partitions)]
    vparams = {**bparams, "threshold": cfg.threshold, "verify": cfg.verify, "n_pair_files": len(pair_files)}
    verified = run_phase(ctx, out, "verify", [
        Task("verify", f"{i:03d}", verify_partition, pair_files + cand_files, [ver_files[i]], vparams)
        for i in range(cfg.partitions)
    ])
    comp_files = [meta(out, layout.COMPONENTS) / f"edges-{i:03d}.parquet" for i in range(cfg.partitions)]
    comps = run_phase(ctx, out, "components", [
        Task("components", "all", components, ver_files, comp_files, {"partitions": cfg.partitions})
    ])
    res_files = [meta(out, layout.RESOLVED) / f"resolved-{i:03d}.parquet" for i in range(cfg.partitions)]
    # Shards deduplicated by an earlier run are "in the corpus": by default their documents
    # win against new ones (replace_existing = false), so earlier output is not rewritten.
    existing = [int(shard_of[s]) for s in inputs if (layout.done_dir(out) / f"filter-{shard_of[s]}.json").exists()]
    drop_shards = [int(shard_of[s]) for s in inputs]
    resolved = run_phase(ctx, out, "resolve", [
        Task("resolve", f"{i:03d}", resolve, [comp_files[i]] + cand_files, [res_files[i]],
             {**bparams, "threshold": cfg.threshold, "verify": cfg.verify, "keep": cfg.keep,
              "drop_shards": drop_shards, "replace_existing": cfg.replace_existing},
             options={"existing_shards": existing})
        for i in range(cfg.partitions)
    ])
    clusters = meta(out, layout.CLUSTERS)
    drop_files = [meta(out, layout.DROPS) / f"drops-{shard_of[s]}.parquet" for s in inputs]
    clustered = run_phase(ctx, out, "cluster", [
        Task("cluster", "all", merge_clusters, res_files, [clusters] + drop_files,
             {"bands": bands, "rows": rows_per_band, "drop_shards": drop_shards})
    ])
    filtered = run_phase(ctx, out, "filter", [
        Task("filter", shard_of[s], filter_shard, [s, d], [out / f"dedup-{shard_of[s]}.parquet"],
             units="documents", size=rows[s])
        for s, d in zip(inputs, drop_files)
    ])
    stats = filtered.stats
    for ph in (verified, comps, resolved, clustered):
        stats.info.update(ph.stats.info)
    stats.add_info("candidate_pair_rows", paired.stats.records_out)
    stats.add_info("docs_signed", signed.fresh.records_in)      # this run: new shards only
    phases = (signed, banded, paired, candidates, verified, comps, resolved, clustered, filtered)
    ran, skipped = sum(ph.ran for ph in phases), sum(ph.skipped for ph in phases)
    return finish_stage(ctx, "dedup", out, stats, to_dict(cfg), ran, skipped, started)

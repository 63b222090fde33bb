"""dedup's global phases: connected components, the keep rule, and the drop lists.

In: the verified pairs (``_meta/verified/``) and the candidate files (``_meta/candidates/``). Out:
``_meta/components/edges-PPP.parquet`` (each component's pairs, routed whole to one resolve
task), ``_meta/resolved/resolved-PPP.parquet`` (the keep rule applied), ``_meta/clusters.parquet``
and ``_meta/drops/drops-NNNNN.parquet``. ``stages.dedup`` runs the phases; see its docstring.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from webtext.pipeline.executor import Task
from webtext.pipeline.io import ParquetSink, read_parquet, write_parquet
from webtext.pipeline.schemas import CLUSTERS, DROPS, RESOLVED, VERIFIED, unix_seconds
from webtext.pipeline.stats import Stats

from .dedup_sign import BAND_MIX, _mix
from .dedup_verify import by_shard, candidate_files, pair_jaccard, row_of, shard_of

MAX_ROUNDS = 10   # witness propagation rounds in cluster (one or two are typical)


def _greedy(n: int, order: list[int], pos: np.ndarray, ia: np.ndarray, ib: np.ndarray,
            sim: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Documents in rank ``order``: kept unless a verified pair links them to a document
    already kept; the dropped one's witness is the most similar such document."""
    src, dst, w = np.r_[ia, ib], np.r_[ib, ia], np.r_[sim, sim]
    by = np.argsort(src, kind="stable")
    dst, w = dst[by], w[by]
    ptr = np.searchsorted(src[by], np.arange(n + 1)).tolist()
    kept = np.zeros(n, dtype=bool)
    dup_of = np.full(n, -1, dtype=np.int64)
    dup_sim = np.full(n, np.nan, dtype=np.float32)
    for i in order:
        nb = dst[ptr[i]:ptr[i + 1]]
        k = kept[nb]
        if not k.any():
            kept[i] = True
            continue
        cand, cs = nb[k], w[ptr[i]:ptr[i + 1]][k]
        best = np.lexsort((pos[cand], -np.nan_to_num(cs, nan=1.0)))[0]   # most similar, then best ranked
        dup_of[i], dup_sim[i] = cand[best], cs[best]
    return kept, dup_of, dup_sim


def components(task: Task) -> Stats:
    """Verified pairs (every verify partition's) -> connected components, and each
    component's pairs routed to one of ``partitions`` resolve tasks (by a hash of the
    component's smallest key). Components are independent under the keep rule (a witness
    pair never leaves its component), so resolving them apart gives the global result.
    Memory: ~40 bytes per verified pair and per document that has a duplicate; keys only."""
    p = task.params
    ver = pa.concat_tables([VERIFIED.empty_table()] + [pq.read_table(f, use_threads=False).cast(VERIFIED)
                                                       for f in task.inputs if f.exists()])   # absent: no pairs
    ea, eb = ver["a"].to_numpy(), ver["b"].to_numpy()
    members = np.unique(np.concatenate([ea, eb]))
    n = len(members)
    ia, ib = np.searchsorted(members, ea), np.searchsorted(members, eb)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_comp, comp = connected_components(coo_matrix((np.ones(len(ia)), (ia, ib)), shape=(n, n)), directed=False) \
        if n else (0, np.empty(0, np.int64))
    root = np.full(n_comp, n, dtype=np.int64)
    np.minimum.at(root, comp, np.arange(n))                     # members are sorted: the smallest key
    with np.errstate(over="ignore"):
        part = (_mix(members[root[comp]] * BAND_MIX) % np.uint64(p["partitions"])).astype(np.int64) if n else \
            np.empty(0, np.int64)
    edge_part = part[ia]
    for j, out in enumerate(task.outputs):
        m = edge_part == j
        o = np.lexsort((eb[m], ea[m]))
        write_parquet(ver.filter(pa.array(m)).take(pa.array(o)), out, VERIFIED)
    stats = Stats(records_in=len(ea), records_out=len(ea))
    stats.add_info("clusters", int(n_comp))
    return stats


def resolve(task: Task) -> Stats:
    """One partition of the components -> the keep rule applied, as audit rows.
    Memory: its pairs, ~150 bytes per document in it, and two shards' candidate files for
    the witness pairs."""
    p = task.params
    ver = read_parquet(task.inputs[0], VERIFIED, use_threads=False)
    files = by_shard(task.inputs[1:])
    stats = Stats()
    ea, eb = ver["a"].to_numpy(), ver["b"].to_numpy()
    ej = ver["similarity"].to_numpy(zero_copy_only=False).astype(np.float32)     # NaN: not verified
    members = np.unique(np.concatenate([ea, eb]))               # documents with a duplicate
    n = len(members)
    ia, ib = np.searchsorted(members, ea), np.searchsorted(members, eb)
    # What the keep rule needs, for documents in clusters only, shard by shard.
    meta = {c: [None] * n for c in ("doc_id", "karma", "first_seen", "text_hash")}
    shards = shard_of(members)
    for s in np.unique(shards).tolist():
        at = np.flatnonzero(shards == s)
        t = unix_seconds(pq.read_table(files[s], columns=["key", *meta], use_threads=False))   # first_seen: int s
        t = t.take(pa.array(np.searchsorted(t["key"].to_numpy(), members[at])))
        for c, values in meta.items():
            for i, v in zip(at.tolist(), t[c].to_pylist()):
                values[i] = v
    existing = set(task.options.get("existing_shards", ())) if not p["replace_existing"] else set()
    # Documents already in the corpus first (unless replace_existing), then karma, age, id.
    order = sorted(range(n), key=lambda i: (int(shards[i]) not in existing, -meta["karma"][i],
                                            meta["first_seen"][i], meta["doc_id"][i]))
    pos = np.empty(n, dtype=np.int64)
    pos[order] = np.arange(n)
    # Greedy, in rank order: a document is dropped only for a verified pair with a document
    # already kept, so every removal has its own witness (no chains through union-find),
    # and a kept document from an earlier run is never dropped for a newcomer. A document
    # kept only because its neighbour was dropped (x ~ m, m dropped for k: a star bucket's
    # centre, or a chain) gets the pair (k, x) checked too, and the greedy pass reruns,
    # until no such pair is new.
    rounds = propagated = 0
    if p["keep"] == "witness":
        cands = candidate_files(files, p)       # kept across rounds, with the shingle sets built
        tested = np.empty(0, dtype=np.uint64)
        rounds = propagated = 0
        while True:
            kept, dup_of, dup_sim = _greedy(n, order, pos, ia, ib, ej)
            u, v = np.r_[ia, ib], np.r_[ib, ia]
            m = ~kept[u] & kept[v]
            w, x = dup_of[u[m]], v[m]
            ca, cb = np.minimum(w, x)[w != x], np.maximum(w, x)[w != x]
            if existing:      # never test two documents both already in the corpus: that could drop one
                old = np.isin(shards, list(existing))
                ca, cb = ca[~(old[ca] & old[cb])], cb[~(old[ca] & old[cb])]
            code = _mix(ca.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + cb.astype(np.uint64))
            code, first = np.unique(code, return_index=True)
            new = ~np.isin(code, tested)
            ca, cb = ca[first][new], cb[first][new]
            if not len(ca) or rounds >= MAX_ROUNDS:
                break
            rounds += 1
            tested = np.union1d(tested, code[new])
            sim = pair_jaccard(members[ca], members[cb], cands, p) if p["verify"] != "off" else \
                np.full(len(ca), np.nan, dtype=np.float32)
            good = ~(sim < p["threshold"])
            propagated += int(good.sum())
            ia, ib, ej = np.r_[ia, ca[good]], np.r_[ib, cb[good]], np.r_[ej, sim[good]]
    stats.add_info("witness_rounds", rounds)
    stats.add_info("witness_pairs_added", propagated)
    # Connected components name the clusters for the audit table: the best-ranked member.
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n_comp, comp = connected_components(coo_matrix((np.ones(len(ia)), (ia, ib)), shape=(n, n)), directed=False) \
        if n else (0, np.empty(0, np.int64))
    head = np.full(n_comp, -1, dtype=np.int64)
    for i in order:
        if head[comp[i]] < 0:
            head[comp[i]] = i
    if p["keep"] == "one_per_cluster":     # union-find's rule: the best-ranked member stays, the rest go
        dup_of = head[comp]
        kept = dup_of == np.arange(n)
        dup_of[kept] = -1
        dup_sim = np.full(n, np.nan, dtype=np.float32)
        for x, y, j in ((ia, ib, ej), (ib, ia, ej)):      # the similarity where the pair was verified
            direct = dup_of[x] == y
            dup_sim[x[direct]] = j[direct]
    ids, hashes = meta["doc_id"], meta["text_hash"]
    reasons = [None if kept[i] else
               ("exact_duplicate" if hashes[i] == hashes[dup_of[i]] else "near_duplicate") for i in range(n)]
    table = pa.table({
        "doc_id": ids,
        "cluster_id": [ids[h] for h in head[comp].tolist()],
        "kept": kept,
        "reason": reasons,
        "duplicate_of": [None if d < 0 else ids[d] for d in dup_of.tolist()],
        "similarity": pa.array(dup_sim, pa.float32(), mask=kept | np.isnan(dup_sim)),
        "key": members,
    }, schema=RESOLVED).sort_by([("cluster_id", "ascending"), ("doc_id", "ascending")])
    write_parquet(table, task.outputs[0], RESOLVED)
    stats.records_in = stats.records_out = n
    return stats


def merge_clusters(task: Task) -> Stats:
    """Every resolve partition's rows -> ``_meta/clusters.parquet`` (streamed, a partition at a
    time) and one drop list per docs shard. Memory: one partition's rows, and 16 bytes
    per removed document."""
    p = task.params
    drops: list[tuple[np.ndarray, np.ndarray]] = []
    n = 0
    with ParquetSink(task.outputs[0], CLUSTERS) as w:       # no duplicates: no file
        for f in task.inputs:
            if not f.exists():          # a partition with no component
                continue
            t = pq.read_table(f, use_threads=False)
            n += t.num_rows
            w.write(t.select(CLUSTERS.names).cast(CLUSTERS))
            gone = t.filter(pc.invert(t["kept"]))
            code = (pc.equal(gone["reason"], "exact_duplicate")).to_numpy(zero_copy_only=False)
            drops.append((gone["key"].to_numpy(), code))
    keys = np.concatenate([k for k, _ in drops]) if drops else np.empty(0, np.uint64)
    exact = np.concatenate([c for _, c in drops]) if drops else np.empty(0, bool)
    shards, rows = shard_of(keys), row_of(keys)
    for s, path in zip(p["drop_shards"], task.outputs[1:]):
        m = shards == s
        o = np.argsort(rows[m], kind="stable")
        reason = np.where(exact[m][o], "exact_duplicate", "near_duplicate")
        write_parquet(pa.table({"row": pa.array(rows[m][o], pa.int64()), "reason": pa.array(reason.tolist(), pa.string())},
                               schema=DROPS), path, DROPS)
    stats = Stats(records_in=n, records_out=n)
    stats.add_info("lsh_bands", p["bands"])
    stats.add_info("lsh_rows", p["rows"])
    return stats

"""The dedup section of ``webtext report``: cluster sizes, removals by reason, and a few
removed documents beside the document kept for them, the differing words highlighted.

Reads dedup's audit table ``dedup/_clusters.parquet`` (one row per document that has a
duplicate; see ``pipeline.schemas.CLUSTERS``) a batch at a time, and from ``docs/`` the
text of the examples' documents only: the ``doc_id`` column of each shard finds their
rows, and only the row groups that hold one are read, ``TEXT_BATCH`` texts at a time.

The examples are the near-duplicate removals with the lowest similarity (the ones the
threshold only just admits, where a wrong removal would show); exact duplicates are
shown only when dedup removed no near-duplicate, and the section says so.
"""

from __future__ import annotations

import difflib
import heapq
import html
import math
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from . import layout
from .io import sorted_files
from .reportstats import batches, count_values, top

EXAMPLES = 3            # example pairs shown
CANDIDATES = 12         # removals looked up in docs/ (a document may be missing there)
TEXT_BATCH = 64         # texts decoded at a time while reading an example's row group
CONTEXT = 12            # unchanged words shown on each side of a difference
MAX_WORDS = 300         # words shown per side of a pair
DIFF_WORDS = 20_000     # words of each text compared (difflib is quadratic at worst)


def _sim_key(row: dict) -> tuple:
    s = row["similarity"]
    return (math.inf if s is None or math.isnan(s) else s, row["doc_id"])


COLUMNS = ["doc_id", "cluster_id", "kept", "reason", "duplicate_of", "similarity"]


def scan_clusters(path: Path) -> dict:
    """Cluster sizes, removals by reason and the example candidates, streamed. A cluster's
    rows are contiguous in the file (dedup sorts each resolve partition by cluster_id,
    and a cluster lies in one partition), so its size is a run length. Each cluster has
    one row naming itself (doc_id == cluster_id): if the runs outnumber those rows, a
    cluster was split, and the sizes are counted again per cluster_id."""
    sizes: Counter = Counter()
    reasons: Counter = Counter()
    run_id, run_n, removed, heads = None, 0, 0, 0
    near: list[dict] = []
    exact: list[dict] = []
    for t in batches(path.parent, path.name, COLUMNS):
        heads += pc.sum(pc.equal(t["doc_id"], t["cluster_id"])).as_py() or 0
        vc = pc.value_counts(t["cluster_id"])
        ids, ns = vc.field("values").to_pylist(), vc.field("counts").to_pylist()
        for cid, n in zip(ids, ns):
            if cid == run_id:
                run_n += n
                continue
            if run_id is not None:
                sizes[run_n] += 1
            run_id, run_n = cid, n
        gone = t.filter(pc.invert(t["kept"]))
        removed += gone.num_rows
        count_values(reasons, gone["reason"])
        is_near = pc.equal(gone["reason"], "near_duplicate")
        g = gone.filter(is_near)
        g = g.take(pc.sort_indices(g, sort_keys=[("similarity", "ascending"), ("doc_id", "ascending")])[:CANDIDATES])
        near = heapq.nsmallest(CANDIDATES, near + g.to_pylist(), key=_sim_key)
        if len(exact) < CANDIDATES:
            exact += gone.filter(pc.invert(is_near)).slice(0, CANDIDATES - len(exact)).to_pylist()
    if run_id is not None:
        sizes[run_n] += 1
    if sum(sizes.values()) != heads:
        per_cluster: Counter = Counter()
        for t in batches(path.parent, path.name, ["cluster_id"]):
            count_values(per_cluster, t["cluster_id"])
        sizes = Counter(per_cluster.values())
    return {"cluster_sizes": sorted(sizes.items()), "removed": removed, "reasons": top(reasons),
            "candidates": near or exact, "examples_of": "near_duplicate" if near else "exact_duplicate"}


def read_texts(folder: Path, pattern: str, wanted: set[str]) -> dict[str, str]:
    """The text of each document in ``wanted`` found in the shards of ``folder``. Reads
    each shard's ``doc_id`` column, then the text of only the row groups that hold a
    wanted document, ``TEXT_BATCH`` rows at a time."""
    found: dict[str, str] = {}
    for f in sorted_files(folder, pattern):
        if len(found) == len(wanted):
            break
        pf = pq.ParquetFile(f, buffer_size=1 << 20)        # a buffered stream, not a whole column chunk
        for rg in range(pf.num_row_groups):
            todo = pa.array(sorted(wanted - found.keys()), pa.string())
            hit = pc.is_in(pf.read_row_group(rg, columns=["doc_id"])["doc_id"], value_set=todo)
            rows = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
            if not len(rows):
                continue
            start = 0
            for b in pf.iter_batches(batch_size=TEXT_BATCH, row_groups=[rg], columns=["doc_id", "text"],
                                     use_threads=False):
                here = rows[(rows >= start) & (rows < start + b.num_rows)] - start
                if len(here):
                    t = b.take(pa.array(here))
                    found.update(zip(t["doc_id"].to_pylist(), t["text"].to_pylist()))
                start += b.num_rows
                if start > rows[-1]:
                    break
    return found


def _tokens(text: str) -> list[str]:
    """Words with the whitespace after them, so a shown excerpt keeps its line breaks."""
    return re.findall(r"\S+\s*", text)[:DIFF_WORDS]


def word_diff(removed: str, kept: str) -> list[dict]:
    """Segments of the two texts by words (case aside): ``equal`` runs (cut to ``CONTEXT`` words around
    each difference, the cut given as a ``skip`` with its word count), and ``replace``,
    ``delete`` or ``insert`` runs that differ; at most ``MAX_WORDS`` words a side."""
    a, b = _tokens(removed), _tokens(kept)
    # Compared as dedup's exact hash normalizes: lowercased, whatever whitespace follows.
    ops = difflib.SequenceMatcher(None, [w.rstrip().lower() for w in a], [w.rstrip().lower() for w in b],
                                  autojunk=False).get_opcodes()
    out: list[dict] = []
    shown = 0

    def add(op: str, i1: int, i2: int, j1: int, j2: int) -> None:
        nonlocal shown
        out.append({"op": op, "removed": "".join(a[i1:i2]), "kept": "".join(b[j1:j2])})
        shown += max(i2 - i1, j2 - j1)

    for k, (op, i1, i2, j1, j2) in enumerate(ops):
        if shown >= MAX_WORDS:
            out.append({"op": "skip", "words": len(a) - i1})
            break
        if op != "equal":
            add(op, i1, i2, j1, j2)
            continue
        n = i2 - i1
        first, last = k == 0, k == len(ops) - 1
        head = min(n, MAX_WORDS - shown) if first and last else 0 if first else CONTEXT
        tail = 0 if last else CONTEXT
        if head + tail >= n:
            add(op, i1, i2, j1, j2)
            continue
        if head:
            add(op, i1, i1 + head, j1, j1 + head)
        out.append({"op": "skip", "words": n - head - tail})
        if tail:
            add(op, i2 - tail, i2, j2 - tail, j2)
    return out


def dedup_section(workdir: Path) -> dict:
    """The report's ``dedup`` numbers and examples; the examples' texts are read from docs/."""
    s = scan_clusters(layout.meta(Path(workdir) / "dedup", layout.CLUSTERS))
    cands = s.pop("candidates")
    texts = read_texts(Path(workdir) / "docs", "docs-*.parquet",
                       {c["doc_id"] for c in cands} | {c["duplicate_of"] for c in cands if c["duplicate_of"]})
    s["examples"] = [{"removed_id": c["doc_id"], "kept_id": c["duplicate_of"], "reason": c["reason"],
                      "similarity": c["similarity"], "diff": word_diff(texts[c["doc_id"]], texts[c["duplicate_of"]])}
                     for c in cands if c["doc_id"] in texts and c["duplicate_of"] in texts][:EXAMPLES]
    return s


def _side(diff: list[dict], side: str) -> str:
    tag = "del" if side == "removed" else "ins"
    parts = []
    for seg in diff:
        if seg["op"] == "skip":
            parts.append(f"<span class='skip'>[… {seg['words']:,} words …]</span> ")
        elif seg["op"] == "equal":
            parts.append(html.escape(seg[side]))
        elif seg[side]:
            parts.append(f"<{tag}>{html.escape(seg[side])}</{tag}>")
    return "".join(parts)


def render_examples(s: dict, fmt) -> str:
    """The example pairs as HTML: removed left, kept right, differences in <del>/<ins>."""
    if not s["examples"]:
        return ""
    note = ("<p>Near-duplicate removals with the lowest similarity; words only in the removed document are "
            "<del>struck</del>, words only in the kept one <ins>marked</ins>.</p>"
            if s["examples_of"] == "near_duplicate" else
            "<p>dedup removed no near-duplicate: these are exact duplicates (same text once lowercased and "
            "whitespace collapsed).</p>")
    pairs = "".join(
        f"<div class='pair'><div><b>removed</b> {html.escape(e['removed_id'])} ({html.escape(str(e['reason']))}, "
        f"J={fmt(e['similarity'])})<p>{_side(e['diff'], 'removed')}</p></div>"
        f"<div><b>kept</b> {html.escape(e['kept_id'])}<p>{_side(e['diff'], 'kept')}</p></div></div>"
        for e in s["examples"])
    return note + pairs


STYLE = (".pair{display:flex;gap:1em}.pair div{flex:1;font-size:small;background:#f6f6f6;padding:.5em;"
         "white-space:pre-wrap}del{background:#f8c8c8}ins{background:#c8f0c8;text-decoration:none}"
         ".skip{color:#888}")

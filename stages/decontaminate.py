"""decontaminate: ``dedup/`` -> ``clean/`` (Wikipedia and benchmark test-set overlap removed).

Normalization, as in the GPT-2 and GPT-3 papers: lowercase, alphanumeric words (Unicode
letters, digits and combining marks, ``ngrams.words``), single spaces; n-grams of
``ngram`` words (default 13, GPT-3's), hashed to uint64 with numpy (``ngrams.word_ngrams``).

Phases, each resumable per task:
1. *filters*, one task per benchmark -> ``_meta/filters/<name>.ngrams.npy`` (its sorted unique
   n-gram hashes) and ``_meta/filters/<name>.bloom`` (rbloom, ``hash_func=int``, sized for
   that count at ``fp_rate``; saved, reloaded by later runs and other tools).
2. *probe*, one task per filter -> ``_meta/filters/<name>.fp.json``: its false-positive check
   (``fp_probes`` random probes; see the report), made once per filter, not per run.
3. *wikipedia*, when ``wikipedia_dump`` is set -> ``_meta/filters/wikipedia.bloom``: n-grams of
   every article (namespace 0, not a redirect) of a ``pages-articles`` XML dump (.bz2 or
   plain, streamed), wiki markup stripped with mwparserfromhell. ``wikipedia_sample = k``
   keeps the n-grams whose hash is 0 mod k: 1/k of the memory.
4. *scan*, one task per shard -> ``_meta/scan/hits-NNNNN.parquet`` (every n-gram found in a
   benchmark: a vectorized bit-table screen built from the exact hash sets (``Screen``),
   then confirmed against them, so a false positive never removes text) and ``_meta/scan/wiki-NNNNN.parquet`` (each document's share of
   n-grams in the Wikipedia filter).
5. *common*, one task -> ``_meta/scan/common.npy``: benchmark n-grams found in more than
   ``common_docs`` (10) documents, which the spans policy ignores, as GPT-3 did. Memory:
   8 bytes per (document, n-gram) hit, never the corpus's own n-grams.
6. *check*, one task per shard -> ``clean-NNNNN.parquet`` and ``_meta/removals/removals-NNNNN.parquet``
   (document, benchmark, n-gram, character span, action: every removal is logged).
   Drops: ``wikipedia_url`` (*.wikipedia.org, mobile hosts, ``data/wikipedia_mirrors.txt``),
   ``wikipedia_content`` (more than ``wikipedia_share`` of the n-grams in the Wikipedia
   filter), then the policy: ``drop`` removes any document with a hit
   (``benchmark_overlap``); ``spans`` (GPT-3) cuts ``window`` characters either side of each
   hit, drops pieces under ``min_piece`` characters, and drops the document
   (``benchmark_fragmented``) if more than ``max_pieces`` remain, or
   (``benchmark_overlap``) if none does.

The overlap report (``_meta/overlap.json``, printed too; ``--report-only`` stops before
*check*) gives per benchmark, as GPT-2's Table 6: the share of its n-grams found in the
corpus, the documents hit, and the documents and characters removed; plus an empirical
false-positive check of every filter (``fp_probes`` random probes against the configured
rate and ``(1 - e^(-kn/m))^k``).
"""

from __future__ import annotations

import bz2
import json
import math
import os
import re
import tempfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from rbloom import Bloom

from webtext.pipeline import layout, progress
from webtext.pipeline.config import DecontaminateConfig, to_dict
from webtext.pipeline.errors import ConfigError, MissingInputError
from webtext.pipeline.executor import Context, Task, finish_stage, run_phase
from webtext.pipeline.io import atomic_path, parquet_rows, read_parquet, require_shards, shard_id, write_parquet
from webtext.pipeline.layout import meta
from webtext.pipeline.schemas import CLEAN, HITS, REMOVALS, WIKI_SHARE, upgrade_docs
from webtext.pipeline.stats import Stats

from . import urls as U
from .benchmarks import Benchmark, load_registry, resolve, segments
from .ngrams import WORDS_VERSION, mix64, raw_ngrams, unmix64, word_ngrams, word_spans

DATA = Path(__file__).resolve().parent.parent / "data"
WIKIPEDIA = frozenset({"wikipedia.org"})
BATCH = 1000                 # documents per vectorized n-gram batch
NGRAM_HASH = "poly64-v1"     # names the n-gram hashing in task parameters


def wikipedia_hosts() -> frozenset[str]:
    lines = (DATA / "wikipedia_mirrors.txt").read_text(encoding="utf-8").splitlines()
    return WIKIPEDIA | {ln.strip().lower() for ln in lines if ln.strip() and not ln.startswith("#")}


def sorted_unique(a: np.ndarray) -> np.ndarray:
    """``np.unique`` of a 1-d array by one sort (numpy 2's ``np.unique`` hashes first: 4x slower here)."""
    a = np.sort(a)
    return a[np.r_[True, a[1:] != a[:-1]]] if len(a) else a


def _save_npy(arr: np.ndarray, path: Path) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, arr)


BLOOM_CHUNK = 1 << 20       # hashes handed to rbloom per update() call


def _bloom(count: int, fp: float, chunk) -> Bloom:
    """An rbloom filter sized for ``count`` items at ``fp``, filled from ``chunk(lo, n)``
    (the hashes lo..lo+n) a chunk at a time: memory is the filter and one chunk."""
    bloom = Bloom(max(count, 1), fp, hash_func=int)
    for lo in range(0, count, BLOOM_CHUNK):
        bloom.update(chunk(lo, BLOOM_CHUNK).tolist())
    return bloom


def _save_bloom(bloom: Bloom, path: Path) -> None:
    with atomic_path(path) as tmp:
        bloom.save(str(tmp))


def benchmark_ngrams(b: Benchmark, n: int) -> np.ndarray:
    """Sorted unique n-gram hashes of a benchmark (its segments: n-grams never cross one)."""
    segs = list(segments(b))
    parts = [word_ngrams(segs[lo:lo + BATCH], n).hashes for lo in range(0, len(segs), BATCH)]
    return sorted_unique(np.concatenate(parts)) if parts else np.empty(0, np.uint64)


def build_filter(task: Task) -> Stats:
    p = task.params
    b = Benchmark(p["name"], task.inputs[0], p["format"], p["field"])
    grams = benchmark_ngrams(b, p["ngram"])
    npy, bloom_file = task.outputs
    _save_npy(grams, npy)
    _save_bloom(_bloom(len(grams), p["fp_rate"], lambda lo, n: grams[lo:lo + n]), bloom_file)
    stats = Stats(records_in=1, records_out=1)
    stats.add_info(f"ngrams:{b.name}", int(len(grams)))
    return stats


def probe_filter(task: Task) -> Stats:
    """A saved filter's false-positive check (``_fp_check``), written beside it as JSON."""
    p = task.params
    check = _fp_check(task.inputs[0], p["fp_probes"], p["fp_rate"])
    with atomic_path(task.outputs[0]) as tmp:
        tmp.write_text(json.dumps(check) + "\n")
    return Stats(records_in=1, records_out=1)


# --- Wikipedia -----------------------------------------------------------------------

def wiki_articles(path: Path):
    """(title, wikitext) of each article page (namespace 0, not a redirect) of a MediaWiki
    XML export, streamed from .bz2 or plain XML."""
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as f:
        ns = title = text = None
        redirect = False
        for event, elem in ET.iterparse(f, events=("end",)):
            tag = elem.tag.rsplit("}", 1)[-1]
            if tag == "ns":
                ns = (elem.text or "").strip()
            elif tag == "title":
                title = elem.text or ""
            elif tag == "redirect":
                redirect = True
            elif tag == "text":
                text = elem.text or ""
            elif tag == "page":
                if ns == "0" and not redirect and text:
                    yield title, text
                ns = title = text = None
                redirect = False
                elem.clear()


_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>|<!--.*?-->", re.S | re.I)
_MEDIA = re.compile(r"^(?:file|image|category|thumb)\b.*$", re.M | re.I)


def strip_wikitext(markup: str) -> str:
    """Plain text of wiki markup (mwparserfromhell's ``strip_code``: templates dropped,
    links reduced to their text), with references and comments cut before parsing and
    left-over file and category lines dropped. About 1 MB/s of markup per core."""
    import mwparserfromhell

    text = mwparserfromhell.parse(_REF.sub("", markup)).strip_code(normalize=True, collapse=True)
    return _MEDIA.sub("", text)


def build_wikipedia_filter(task: Task) -> Stats:
    """Stream the dump once, spilling sampled n-gram hashes to a scratch file beside the
    output (8 bytes each), then size the Bloom filter from their count and fill it from the
    file a chunk at a time. Memory: the filter plus one batch of articles."""
    p = task.params
    n, k = p["ngram"], p["sample"]
    stats = Stats()
    out = task.outputs[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=out.parent, prefix=".wiki-ngrams-", delete=False) as spill:
        try:
            batch: list[str] = []

            def flush():
                h = word_ngrams(batch, n).hashes
                if k > 1:
                    h = h[h % np.uint64(k) == 0]
                sorted_unique(h).tofile(spill)
                batch.clear()

            for _, markup in wiki_articles(task.inputs[0]):
                stats.records_in += 1
                batch.append(strip_wikitext(markup))
                if len(batch) >= 200:
                    flush()
            flush()
            spill.close()
            count = os.path.getsize(spill.name) // 8      # unique per batch of articles: near enough
            bloom = _bloom(count, p["fp_rate"],
                           lambda lo, n: np.fromfile(spill.name, dtype=np.uint64, count=n, offset=8 * lo))
        finally:
            os.unlink(spill.name)
    _save_bloom(bloom, out)
    stats.records_out = stats.records_in
    stats.add_info("wikipedia_articles", stats.records_in)
    stats.add_info("wikipedia_ngrams", int(count))
    stats.add_info("wikipedia_filter_bytes", bloom.size_in_bits // 8)
    return stats


# --- Scan, count, check --------------------------------------------------------------

def _member(sorted_arr: np.ndarray, x: np.ndarray) -> np.ndarray:
    if not len(sorted_arr):
        return np.zeros(len(x), dtype=bool)
    i = np.minimum(np.searchsorted(sorted_arr, x), len(sorted_arr) - 1)
    return sorted_arr[i] == x


SCREEN_BITS = 64            # bits of the scan's screen per benchmark n-gram: 1/64 false positives


class Screen:
    """A one-hash bit table over every benchmark n-gram, indexed by the top bits of its
    fold (``raw_ngrams``: the hash before its final mix; a sum of mixed word hashes, so those
    bits are uniform): a vectorized membership screen for a whole batch at once, where a
    Bloom filter needs one Python call per n-gram, and only the folds that pass are mixed.
    At ``SCREEN_BITS`` bits per n-gram about 1.6% of the corpus's n-grams pass by chance;
    every pass is then confirmed against the exact sorted hashes, so the hits are exactly
    those of any other screen. Memory: 8 bytes per benchmark n-gram."""

    def __init__(self, exact: list[np.ndarray]):
        n = sum(len(a) for a in exact)
        self.bits = int(min(max(math.ceil(math.log2(max(n, 1) * SCREEN_BITS)), 16), 40))
        self.table = np.zeros(1 << (self.bits - 3), dtype=np.uint8)
        for a in exact:
            i = unmix64(a) >> np.uint64(64 - self.bits)
            byte, bit = i >> np.uint64(3), (i & np.uint64(7)).astype(np.uint8)
            for b in range(8):              # one bit position at a time: repeated bytes all write the same value
                at = byte[bit == b]
                self.table[at] |= np.uint8(1 << b)

    def __call__(self, h: np.ndarray) -> np.ndarray:
        """Indexes into the folds ``h`` of those that pass (a superset of the benchmark n-grams)."""
        i = h >> np.uint64(64 - self.bits)
        return np.flatnonzero((self.table[i >> np.uint64(3)] >> (i & np.uint64(7)).astype(np.uint8)) & 1)


_screens: dict[tuple, tuple[list[np.ndarray], Screen]] = {}


def _exact_and_screen(files: list[Path]) -> tuple[list[np.ndarray], Screen]:
    """The benchmarks' exact hash arrays and their screen, kept for the next scan task in
    this process (a worker runs many): keyed by each file's path, inode, size and mtime,
    so a rebuilt filter is read again."""
    key = tuple((str(f), st.st_ino, st.st_size, st.st_mtime_ns) for f in files for st in [os.stat(f)])
    if key not in _screens:
        exact = [np.load(f) for f in files]
        _screens.clear()
        _screens[key] = (exact, Screen(exact))
    return _screens[key]


def scan_shard(task: Task) -> Stats:
    p = task.params
    src, *rest = task.inputs
    names = p["names"]
    exact, screen = _exact_and_screen(rest[:len(names)])
    wiki = Bloom.load(str(rest[len(names)]), int) if p["wikipedia"] else None
    texts = pq.read_table(src, columns=["text"])["text"].combine_chunks()
    n, k = p["ngram"], p["sample"]
    hit_cols = {"row": [], "ngram": [], "benchmark": [], "word": []}
    wiki_rows, wiki_share = [], []
    lookups = 0
    for lo in range(0, len(texts), BATCH):
        r = raw_ngrams(texts[lo:lo + BATCH], n)
        lookups += r.count
        n_docs = len(r.offsets) - 1
        at = screen(r.folds)                            # word positions, a superset of the hits
        at = at[r.word_doc[at] == r.word_doc[at + n - 1]]   # n-grams within one text
        if len(at):
            h, doc = mix64(r.folds[at]), r.word_doc[at]
            word0 = np.r_[0, np.cumsum(np.bincount(r.word_doc, minlength=n_docs))[:-1]]
            for name, arr in zip(names, exact):
                sel = _member(arr, h)
                hit_cols["row"].append(lo + doc[sel])
                hit_cols["ngram"].append(h[sel])
                hit_cols["benchmark"] += [name] * int(sel.sum())
                hit_cols["word"].append(at[sel] - word0[doc[sel]])
        if wiki is not None and r.count:
            m = len(r.folds)
            ok = np.flatnonzero(r.word_doc[n - 1:] == r.word_doc[:m])
            h, hdoc = mix64(r.folds[ok]), r.word_doc[ok]
            sampled = np.flatnonzero(h % np.uint64(k) == 0) if k > 1 else np.arange(len(h))
            lookups += len(sampled)
            inwiki = np.fromiter(map(wiki.__contains__, h[sampled].tolist()), dtype=bool, count=len(sampled))
            per_doc = np.bincount(hdoc[sampled], minlength=n_docs)
            per_hit = np.bincount(hdoc[sampled][inwiki], minlength=n_docs)
            docs = np.flatnonzero(per_hit)
            wiki_rows.append(lo + docs)
            wiki_share.append(per_hit[docs] / per_doc[docs])
        progress.advance(min(BATCH, len(texts) - lo))
    cat = (lambda xs, dt: np.concatenate(xs).astype(dt) if xs else np.empty(0, dt))
    hits = pa.table({"row": cat(hit_cols["row"], np.int64), "ngram": cat(hit_cols["ngram"], np.uint64),
                     "benchmark": pa.array(hit_cols["benchmark"], pa.string()),
                     "word": cat(hit_cols["word"], np.int64)}, schema=HITS)
    write_parquet(hits, task.outputs[0], HITS)
    write_parquet(pa.table({"row": cat(wiki_rows, np.int64), "share": cat(wiki_share, np.float32)}, schema=WIKI_SHARE),
                  task.outputs[1], WIKI_SHARE)
    stats = Stats(records_in=len(texts), records_out=len(texts))
    stats.add_info("ngram_lookups", lookups)
    return stats


def count_common(task: Task) -> Stats:
    """Benchmark n-grams found in more than ``common_docs`` documents (GPT-3's exemption)."""
    seen = []
    for i, f in enumerate(task.inputs):
        t = read_parquet(f, HITS, columns=["row", "ngram"])      # absent: no hits
        pairs = np.unique(np.stack([t["row"].to_numpy().astype(np.uint64), t["ngram"].to_numpy()], axis=1), axis=0) \
            if t.num_rows else np.empty((0, 2), np.uint64)
        seen.append(pairs[:, 1])                 # one entry per (document, n-gram)
    grams, counts = np.unique(np.concatenate(seen), return_counts=True) if seen else (np.empty(0, np.uint64), [])
    common = grams[np.asarray(counts) > task.params["common_docs"]]
    _save_npy(common.astype(np.uint64), task.outputs[0])
    stats = Stats(records_in=len(grams), records_out=len(common))
    stats.add_info("common_ngrams", int(len(common)))
    return stats


def _char_spans(text: str, words: np.ndarray, n: int) -> list[tuple[int, int]] | None:
    """Character span of the n-gram starting at each given word, in the original text;
    None if the text's words cannot be matched (then the caller drops the document)."""
    _, b, _, s, e = word_spans([text], lower=False)
    if len(words) and int(words.max()) + n > len(s):
        return None
    chars = np.r_[0, np.cumsum((b & 0xC0) != 0x80)]    # characters before each byte
    return [(int(chars[s[w]]), int(chars[e[w + n - 1]])) for w in words.tolist()]


def _pieces(text: str, spans: list[tuple[int, int]], window: int, min_piece: int) -> list[str]:
    cut = sorted((max(0, a - window), min(len(text), b + window)) for a, b in spans)
    merged: list[list[int]] = []
    for a, b in cut:
        if merged and a <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], b)
        else:
            merged.append([a, b])
    out, prev = [], 0
    for a, b in merged + [[len(text), len(text)]]:
        piece = text[prev:a].strip()
        if len(piece) >= min_piece:
            out.append(piece)
        prev = b
    return out


def _wikipedia_url_candidates(docs: pa.Table, hosts: frozenset[str]) -> np.ndarray:
    """Rows whose ``url`` or ``final_url`` contains one of ``hosts`` (any case): a superset of
    those whose host is one of them or under one, found without parsing every URL."""
    mask = np.zeros(docs.num_rows, dtype=bool)
    for col in ("url", "final_url"):
        urls = docs[col]
        for h in sorted(hosts):
            mask |= pc.match_substring(urls, h, ignore_case=True).to_numpy(zero_copy_only=False).astype(bool)
    return mask


def check_shard(task: Task) -> Stats:
    """Apply the policy to one shard. Only the rows that may change are visited one by one:
    those with a benchmark hit, a Wikipedia share over the limit, or a URL naming a
    Wikipedia host; every other row is written as it was read."""
    p = task.params
    src, hits_file, wiki_file, common_file = task.inputs
    docs = upgrade_docs(pq.read_table(src))   # shards from before v4 lack source, captured_at
    hits = read_parquet(hits_file, HITS)
    common = np.load(common_file)
    share = dict(zip(*(read_parquet(wiki_file, WIKI_SHARE)[c].to_pylist() for c in ("row", "share"))))
    by_row: dict[int, list] = {}
    for row, gram, bench, word in zip(hits["row"].to_pylist(), hits["ngram"].to_numpy().tolist(),
                                      hits["benchmark"].to_pylist(), hits["word"].to_pylist()):
        by_row.setdefault(row, []).append((gram, bench, word))
    hosts = wikipedia_hosts() if p["drop_wikipedia"] else frozenset()
    common_set = set(common.tolist()) if p["policy"] == "spans" else set()
    n = p["ngram"]
    stats = Stats(records_in=docs.num_rows)
    log = {c: [] for c in REMOVALS.names}
    keep = np.ones(docs.num_rows, dtype=bool)
    cut: dict[int, str] = {}                  # row -> its text with the spans removed

    def record(doc_id, bench, gram, span, action, reason):
        for col, v in zip(REMOVALS.names, (doc_id, bench, gram, span[0] if span else None,
                                           span[1] if span else None, action, reason)):
            log[col].append(v)

    url_rows = set(np.flatnonzero(_wikipedia_url_candidates(docs, hosts)).tolist()) if hosts else set()
    visit = sorted(url_rows | set(by_row) | {r for r, v in share.items() if v > p["wikipedia_share"]})
    cols = {c: docs[c] for c in ("doc_id", "url", "final_url", "text")}
    for row in visit:
        doc_id, url, final, text = (cols[c][row].as_py() for c in ("doc_id", "url", "final_url", "text"))
        wiki = "wikipedia_url" if row in url_rows and (U.domain_matches(U.host(url), hosts) or
                                                       U.domain_matches(U.host(final), hosts)) else \
            "wikipedia_content" if share.get(row, 0.0) > p["wikipedia_share"] else None
        if wiki:
            stats.drop(wiki)
            keep[row] = False
            record(doc_id, "wikipedia", None, None, "document_dropped", wiki)
            continue
        found = [h for h in by_row.get(row, []) if h[0] not in common_set]
        if not found:
            continue
        spans = _char_spans(text, np.array([w for _, _, w in found], dtype=np.int64), n)
        benches = sorted({b for _, b, _ in found})
        for bench in benches:
            stats.add_info(f"docs_hit:{bench}", 1)
        if p["policy"] == "drop" or spans is None:
            reason = "benchmark_overlap"
            pieces: list[str] = []
        else:
            pieces = _pieces(text, spans, p["window"], p["min_piece"])
            reason = "benchmark_fragmented" if len(pieces) > p["max_pieces"] else \
                "benchmark_overlap" if not pieces else None
        action = "document_dropped" if reason else "span_removed"
        for (_, bench, _), span in zip(found, spans or [None] * len(found)):
            record(doc_id, bench, text[span[0]:span[1]] if span else None, span, action, reason or "benchmark_span")
        if reason:
            stats.drop(reason)
            keep[row] = False
            for bench in benches:
                stats.add_info(f"docs_removed:{bench}", 1)
                stats.add_info(f"chars_removed:{bench}", len(text))
        else:
            new = "\n\n".join(pieces)
            stats.add_info("documents_cut", 1)
            stats.add_info("spans_removed", len(found))
            for bench in benches:
                stats.add_info(f"chars_removed:{bench}", len(text) - len(new))
            cut[row] = new
    progress.advance(docs.num_rows)
    if cut:
        texts = docs["text"].to_pylist()
        for row, new in cut.items():
            texts[row] = new
        docs = docs.set_column(docs.schema.get_field_index("text"), "text", pa.array(texts, pa.string()))
    kept = docs if keep.all() else docs.filter(pa.array(keep))
    stats.records_out = kept.num_rows
    write_parquet(kept, task.outputs[0], CLEAN)
    write_parquet(pa.table(log, schema=REMOVALS), task.outputs[1], REMOVALS)
    return stats


# --- Report --------------------------------------------------------------------------

def _fp_check(path: Path, probes: int, configured: float, seed: int = 0) -> dict:
    """Probe a saved filter with random 64-bit values (none of them inserted, but for a
    ~n/2**64 chance) and compare the observed rate with the configured one and with
    (1 - e^(-kn/m))^k for its size m, item count n and k = round(m/n ln 2) hashes."""
    bloom = Bloom.load(str(path), int)
    x = np.random.default_rng(seed).integers(0, 2**63, size=probes, dtype=np.int64).astype(np.uint64) * np.uint64(2) \
        + np.uint64(1)
    observed = sum(map(bloom.__contains__, x.tolist())) / max(probes, 1)
    m, n = bloom.size_in_bits, max(bloom.approx_items, 1.0)
    k = max(1, round(m / n * math.log(2)))
    return {"filter": path.name, "items": round(n), "bits": m, "probes": probes, "observed": observed,
            "configured": configured, "theoretical": (1 - math.exp(-k * n / m)) ** k}


def overlap_report(out: Path, names: list[str], filters: dict[str, Path], hit_files: list[Path],
                   check_info: dict | None, cfg: DecontaminateConfig, probe_files: list[Path] = ()) -> dict:
    found: dict[str, set] = {b: set() for b in names}
    docs: dict[str, set] = {b: set() for b in names}
    for f in hit_files:
        t = read_parquet(f, HITS)
        for row, gram, bench in zip(t["row"].to_pylist(), t["ngram"].to_numpy().tolist(), t["benchmark"].to_pylist()):
            found[bench].add(gram)
            docs[bench].add((f.name, row))
    rows = []
    for b in names:
        total = len(np.load(filters[b]))
        rows.append({"benchmark": b, "ngrams": total, "ngrams_in_corpus": len(found[b]),
                     "percent_in_corpus": 100.0 * len(found[b]) / total if total else 0.0,
                     "documents_hit": len(docs[b]),
                     "documents_removed": (check_info or {}).get(f"docs_removed:{b}", 0) if check_info else None,
                     "chars_removed": (check_info or {}).get(f"chars_removed:{b}", 0) if check_info else None})
    probes = [json.loads(f.read_text()) for f in probe_files]
    report = {"ngram": cfg.ngram, "policy": cfg.policy, "benchmarks": rows, "false_positive_check": probes}
    with atomic_path(meta(out, layout.OVERLAP)) as tmp:
        tmp.write_text(json.dumps(report, indent=2) + "\n")
    return report


def print_report(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"Benchmark overlap ({report['ngram']}-grams, policy {report['policy']})")
    for col in ("benchmark", "n-grams", "in corpus", "%", "docs hit", "docs removed", "chars removed"):
        t.add_column(col, justify="left" if col == "benchmark" else "right",
                     overflow="fold" if col == "benchmark" else "ellipsis")
    for r in report["benchmarks"]:
        t.add_row(r["benchmark"], f"{r['ngrams']:,}", f"{r['ngrams_in_corpus']:,}", f"{r['percent_in_corpus']:.2f}",
                  f"{r['documents_hit']:,}", "-" if r["documents_removed"] is None else f"{r['documents_removed']:,}",
                  "-" if r["chars_removed"] is None else f"{r['chars_removed']:,}")
    console = Console(stderr=True)
    console.print(t)
    for c in report["false_positive_check"]:
        console.print(f"  {c['filter']}: {c['probes']:,} random probes, false-positive rate {c['observed']:.2e} "
                      f"(configured {c['configured']:.0e}, theoretical {c['theoretical']:.2e})")


def run(ctx: Context, report_only: bool = False) -> dict:
    cfg: DecontaminateConfig = ctx.cfg.decontaminate
    started = time.time()
    inputs = require_shards(ctx.dir("dedup"), "dedup-*.parquet", "deduplicated shards", "dedup")
    registry = load_registry(cfg.registry or None)
    benches = [resolve(b, cfg.benchmark_dir, registry) for b in cfg.benchmarks]
    if not benches:
        ctx.log("[yellow]warning:[/yellow] no benchmark configured, so no benchmark overlap is removed: use "
                "--benchmark NAME (lambada, wikitext2, ptb, ...; see data/benchmarks.toml) or "
                "[decontaminate] benchmarks", level="warning")
    names = [b.name for b in benches]
    if len(set(names)) != len(names):
        raise ConfigError(f"two benchmarks share a name in {names}", "Give each file a distinct name")
    wiki_dump = Path(cfg.wikipedia_dump) if cfg.wikipedia_dump else None
    if wiki_dump and not wiki_dump.is_file():
        raise MissingInputError(f"Wikipedia dump {wiki_dump} not found", "Check [decontaminate] wikipedia_dump")
    out = ctx.dir("clean")
    fdir = meta(out, layout.FILTERS)
    base = {"ngram": cfg.ngram, "fp_rate": cfg.fp_rate, "words": WORDS_VERSION, "hash": NGRAM_HASH}
    npys = {b.name: fdir / f"{b.name}.ngrams.npy" for b in benches}
    built = run_phase(ctx, out, "filters", [
        Task("filters", b.name, build_filter, [b.path], [npys[b.name], fdir / f"{b.name}.bloom"],
             {**base, "name": b.name, "format": b.format, "field": b.field}) for b in benches
    ])
    wiki_filter = fdir / "wikipedia.bloom"
    wiki = run_phase(ctx, out, "wikipedia", [Task("wikipedia", "dump", build_wikipedia_filter, [wiki_dump], [wiki_filter],
                                                  {**base, "sample": cfg.wikipedia_sample})] if wiki_dump else [])
    blooms = sorted([fdir / f"{b.name}.bloom" for b in benches] + ([wiki_filter] if wiki_dump else []))
    probe_files = [f.with_suffix(".fp.json") for f in blooms] if cfg.fp_probes else []
    probed = run_phase(ctx, out, "probe", [
        Task("probe", f.stem, probe_filter, [f], [j], {"fp_probes": cfg.fp_probes, "fp_rate": cfg.fp_rate})
        for f, j in zip(blooms, probe_files)])
    scan_dir = meta(out, layout.SCAN)
    rows = {s: parquet_rows(s) for s in inputs}          # the progress totals, from the footers
    sparams = {**base, "names": names, "wikipedia": bool(wiki_dump), "sample": cfg.wikipedia_sample}
    scanned = run_phase(ctx, out, "scan", [
        Task("scan", shard_id(s), scan_shard,
             [s, *npys.values(), *([wiki_filter] if wiki_dump else [])],
             [scan_dir / f"hits-{shard_id(s)}.parquet", scan_dir / f"wiki-{shard_id(s)}.parquet"], sparams,
             units="documents", size=rows[s])
        for s in inputs
    ])
    hit_files = [scan_dir / f"hits-{shard_id(s)}.parquet" for s in inputs]
    common = run_phase(ctx, out, "common", [Task("common", "all", count_common, hit_files, [scan_dir / "common.npy"],
                                                 {**base, "common_docs": cfg.common_docs})])
    phases = [built, wiki, probed, scanned, common]
    checked = None
    if not report_only:
        cparams = {**base, "policy": cfg.policy, "window": cfg.window, "min_piece": cfg.min_piece,
                   "max_pieces": cfg.max_pieces, "drop_wikipedia": cfg.drop_wikipedia,
                   "wikipedia_share": cfg.wikipedia_share, "mirrors": sorted(wikipedia_hosts())}
        checked = run_phase(ctx, out, "check", [
            Task("check", shard_id(s), check_shard,
                 [s, scan_dir / f"hits-{shard_id(s)}.parquet", scan_dir / f"wiki-{shard_id(s)}.parquet",
                  scan_dir / "common.npy"],
                 [out / f"clean-{shard_id(s)}.parquet", meta(out, layout.REMOVALS) / f"removals-{shard_id(s)}.parquet"], cparams,
                 units="documents", size=rows[s])
            for s in inputs
        ])
        phases.append(checked)
    ctx.materialize([*hit_files, *npys.values(), *probe_files])   # read here, on the driver
    report = overlap_report(out, names, npys, hit_files, checked.stats.info if checked else None, cfg, probe_files)
    print_report(report)
    stats = checked.stats if checked else Stats(records_in=scanned.stats.records_in, records_out=scanned.stats.records_in)
    for ph in (built, wiki, common, scanned):
        stats.info.update({k: v for k, v in ph.stats.info.items() if k not in stats.info})
    if report_only:
        stats.add_info("report_only", 1)
    return finish_stage(ctx, "decontaminate", out, stats, to_dict(cfg), sum(ph.ran for ph in phases),
                        sum(ph.skipped for ph in phases), started)

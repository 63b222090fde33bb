"""``webtext compare``: how close the rebuilt corpus (``clean/``) is to a sample of the real WebText.

In: a reference JSONL file, one JSON object with a ``text`` field per line: OpenAI's
published WebText samples (``webtext.train.jsonl``, 250,000 documents,
``webtext.valid.jsonl`` and ``webtext.test.jsonl``, 5,000 each, from
https://openaipublic.azureedge.net/gpt-2/output-dataset/v1/, as the repository
``openai/gpt-2-output-dataset`` downloads them; each line has ``id``, ``ended``,
``length`` and ``text``). Those samples carry no URL; a line may also have ``url`` (or
``domain``), as a reference built from OpenWebText2 or one's own crawl can, and then the
missing documents are reported by domain. Out: ``reports/compare.json`` and a summary:

- *reference found*: the share of reference documents with a near-duplicate in the corpus,
  at each Jaccard threshold (default 0.5, 0.7, 0.8, 0.9, and always the dedup threshold);
- *corpus in reference*: the share of corpus documents with a near-duplicate in the reference;
- *missing*: what identifies the reference documents without one at the dedup threshold
  (their domains when lines carry a URL; else their lengths, ``ended``, and the domains
  their texts name), with a few of their ids;
- with a model: its perplexity on (a sample of) the reference texts, found and missing apart.

Similarity is the dedup stage's: word 5-gram shingles and the same MinHash
(``stages.dedup_sign.minhashes`` at ``[dedup]`` num_perm, shingle_words and seed). The
*reference* is the LSH index (bands x rows from datasketch's optimizer at
``lsh_threshold``, 0.2 below the lowest threshold, so a pair at the lowest one is a
candidate with probability >= 0.99), held in memory at 12 x bands + 4 x num_perm
bytes a document (about 1 KB: ~250 MB for the 250k-document train file). The *corpus* streams past it,
one ``clean-*.parquet`` shard per worker process, SIGN_BATCH documents at a time, so
memory does not grow with the corpus. Candidates' Jaccard is the MinHash estimate, or
(``verify="exact"``, the default) the exact Jaccard of the shingle sets for pairs whose
estimate is within ESTIMATE_MARGIN of the lowest threshold.

The dedup stage's stored signatures are not reused: they are of ``docs/`` text, which
decontamination's span policy may have cut since, and may have been cleaned up.

    report = compare(workdir, Path("webtext.test.jsonl"), CompareConfig(dedup=cfg.dedup))
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from webtext.stages.dedup_sign import SIGN_BATCH, band_hashes, lsh_params, minhashes, signature_params
from webtext.stages.ngrams import shingle_hashes

from .comparereport import EXAMPLES, missing_features, perplexity, read_text, ref_id
from .config import DedupConfig
from .errors import ConfigError, MissingInputError
from .io import sorted_files, write_json

DEFAULT_THRESHOLDS = (0.5, 0.7, 0.8, 0.9)
ESTIMATE_MARGIN = 0.15     # as dedup's verify: the estimate's sd at J = 0.8 is 0.035 (128 permutations)
READ_BATCH = 5000          # reference documents signed per batch


@dataclass(slots=True)
class CompareConfig:
    dedup: DedupConfig = field(default_factory=DedupConfig)
    thresholds: list[float] = field(default_factory=lambda: list(DEFAULT_THRESHOLDS))
    verify: str = "exact"           # exact | estimate
    workers: int = 0                # 0 = one per core
    ppl_docs: int = 500             # reference documents scored for perplexity (a seeded sample)
    seed: int = 0
    lsh_threshold: float = 0.0      # derived: 0.2 below the lowest threshold, at least 0.1
    bands: int = 0                  # derived, from datasketch's optimizer at lsh_threshold
    rows: int = 0

    def __post_init__(self):
        if any(not 0 < t <= 1 for t in self.thresholds):
            raise ConfigError("thresholds must be in (0, 1]")
        if self.verify not in ("exact", "estimate"):
            raise ConfigError(f"verify must be exact or estimate, not {self.verify!r}")
        self.thresholds = sorted({round(t, 4) for t in [*self.thresholds, self.dedup.threshold]})
        self.lsh_threshold = self.lsh_threshold or max(0.1, round(self.thresholds[0] - 0.2, 4))
        self.bands, self.rows = lsh_params(self.lsh_threshold, self.dedup.num_perm)
        self.workers = self.workers or os.cpu_count() or 1


@dataclass(slots=True)
class Reference:
    """The reference's valid documents, by index: where each line starts, what we know of it,
    and the LSH index (``keys`` sorted, ``refs`` the document of each)."""
    path: Path
    offsets: np.ndarray             # int64 byte offset of the document's line
    chars: np.ndarray               # int64
    words: np.ndarray               # int64
    ended: np.ndarray               # int8: 1, 0, or -1 without an ``ended`` field
    domains: list[str]              # "" without a url/domain field
    sig: np.ndarray                 # (n, num_perm) uint32
    keys: np.ndarray                # (n * bands,) uint64 band hashes, sorted
    refs: np.ndarray                # int32 document of each key
    lines: int = 0
    bad: dict = field(default_factory=dict)     # reason -> lines skipped


def domain_of(rec: dict) -> str:
    """The document's host from a ``domain`` or ``url`` field, without ``www.``; "" when none."""
    host = rec.get("domain") or ""
    if not host and isinstance(rec.get("url"), str):
        try:
            host = urlsplit(rec["url"]).hostname or ""
        except ValueError:
            host = ""
    host = str(host).lower()
    return host[4:] if host.startswith("www.") else host


def _parse(line: bytes) -> tuple[dict | None, str | None]:
    """(record, None) for a line with a non-empty ``text`` string, else (None, reason)."""
    try:
        rec = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None, "not_json"
    if not isinstance(rec, dict) or not isinstance(rec.get("text"), str):
        return None, "no_text"
    if not rec["text"].strip():
        return None, "empty_text"
    return rec, None


# The state a worker process needs, set before the pool forks (read-only there).
_STATE: dict = {}


def _sign(texts: list[str]) -> np.ndarray:
    return minhashes(pa.array(texts, pa.large_string()), _STATE["params"])


def _pool(workers: int):
    """A fork pool over ``_STATE`` (or None for one worker: run inline)."""
    return mp.get_context("fork").Pool(workers) if workers > 1 else None


def read_reference(path: Path, cfg: CompareConfig, log=lambda m: None) -> Reference:
    """Parse and sign the reference, READ_BATCH documents at a time, and build its LSH index.
    A bad line is counted by reason (not_json, no_text, empty_text) and skipped."""
    path = Path(path)
    if not path.is_file():
        raise MissingInputError(f"reference {path} not found",
                                "Download one, e.g. webtext.test.jsonl from the gpt-2-output-dataset (see docs/releases.md)")
    if path.stat().st_size == 0:
        raise MissingInputError(f"reference {path} is empty", "Give a JSONL file with one {\"text\": ...} object a line")
    _STATE["params"] = signature_params(cfg.dedup)
    offsets, chars, words, ended, domains, sigs, bad = [], [], [], [], [], [], Counter()
    lines, off, texts = 0, 0, []
    pool = _pool(cfg.workers)

    def flush(final: bool = False):
        if texts and (final or len(texts) >= READ_BATCH * cfg.workers):
            batches = [texts[i:i + READ_BATCH] for i in range(0, len(texts), READ_BATCH)]
            sigs.extend(pool.map(_sign, batches) if pool else map(_sign, batches))
            texts.clear()
            log(f"reference: {len(offsets):,} documents signed")

    try:
        with path.open("rb") as f:
            for line in f:
                at, off = off, off + len(line)
                if not line.strip():
                    continue
                lines += 1
                rec, why = _parse(line)
                if why:
                    bad[why] += 1
                    continue
                t = rec["text"]
                offsets.append(at)
                chars.append(len(t))
                words.append(len(t.split()))
                ended.append(-1 if "ended" not in rec else int(bool(rec["ended"])))
                domains.append(domain_of(rec))
                texts.append(t)
                flush()
            flush(final=True)
    finally:
        if pool:
            pool.close()
    if not offsets:
        raise MissingInputError(f"reference {path} has no line with a text ({lines:,} lines, {sum(bad.values()):,} bad)",
                                "Each line must be a JSON object with a \"text\" string")
    sig = np.concatenate(sigs)
    bh = band_hashes(sig, cfg.bands, cfg.rows).reshape(-1)         # document i's bands at i*bands...
    order = np.argsort(bh, kind="stable")
    refs = (order // cfg.bands).astype(np.int32)
    return Reference(path, np.array(offsets, np.int64), np.array(chars, np.int64), np.array(words, np.int64),
                     np.array(ended, np.int8), domains, sig, bh[order], refs, lines, dict(bad))


def candidates(ref: Reference, bh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(corpus row, reference document) of every pair sharing a bucket in some band, once each.
    ``bh``: (m, bands) band hashes of m corpus documents."""
    m, bands = bh.shape
    q = bh.reshape(-1)
    lo, hi = np.searchsorted(ref.keys, q, "left"), np.searchsorted(ref.keys, q, "right")
    cnt = hi - lo
    total = int(cnt.sum())
    if not total:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    start = np.repeat(lo - np.r_[0, np.cumsum(cnt)[:-1]], cnt)
    r = ref.refs[start + np.arange(total)].astype(np.int64)
    c = np.repeat(np.arange(m * bands) // bands, cnt)
    pair = np.unique((c << np.int64(32)) | r)
    return pair >> np.int64(32), pair & np.int64(0xFFFFFFFF)


def shingle_sets(texts: list[str], n: int) -> list[np.ndarray]:
    """Each text's sorted distinct 64-bit shingle hashes (the dedup stage's shingles)."""
    h, doc = shingle_hashes(pa.array(texts, pa.large_string()), n)
    cut = np.searchsorted(doc, np.arange(len(texts) + 1))
    return [np.unique(h[a:b]) for a, b in zip(cut[:-1], cut[1:])]


def jaccard(x: np.ndarray, y: np.ndarray) -> float:
    """Jaccard similarity of two sorted arrays of distinct values."""
    inter = len(np.intersect1d(x, y, assume_unique=True))
    return inter / max(1, len(x) + len(y) - inter)


def match_shard(path: Path) -> dict:
    """One corpus shard against the reference index: its document count, how many of them
    reach each threshold, and the pairs (reference doc, Jaccard, corpus doc_id) at or above
    the lowest threshold."""
    ref, cfg = _STATE["ref"], _STATE["cfg"]
    lowest, p = cfg.thresholds[0], _STATE["params"]
    n, best_all, out_r, out_j, out_d = 0, [], [], [], []
    pf = pq.ParquetFile(path)
    with ref.path.open("rb") as f:
        for batch in pf.iter_batches(batch_size=SIGN_BATCH, columns=["doc_id", "text"], use_threads=False):
            text = batch.column("text").cast(pa.large_string())
            n += len(text)
            sig = minhashes(text, p)
            c, r = candidates(ref, band_hashes(sig, cfg.bands, cfg.rows))
            j = (sig[c] == ref.sig[r]).mean(axis=1) if len(c) else np.empty(0)
            keep = j >= (lowest - ESTIMATE_MARGIN if cfg.verify == "exact" else lowest)
            c, r, j = c[keep], r[keep], j[keep]
            if cfg.verify == "exact" and len(c):
                uc = np.unique(c)
                cs = dict(zip(uc.tolist(), shingle_sets(text.take(pa.array(uc)).to_pylist(), p["shingle_words"])))
                ur = np.unique(r).tolist()
                rs = dict(zip(ur, shingle_sets([read_text(f, int(ref.offsets[i])) for i in ur], p["shingle_words"])))
                j = np.array([jaccard(cs[a], rs[b]) for a, b in zip(c.tolist(), r.tolist())])
            best = np.zeros(len(text))
            np.maximum.at(best, c, j)
            best_all.append(best[best >= lowest])
            hit = j >= lowest
            ids = batch.column("doc_id").to_pylist()
            out_r.append(r[hit])
            out_j.append(j[hit])
            out_d += [ids[i] for i in c[hit].tolist()]
    best = np.concatenate(best_all) if best_all else np.empty(0)
    return {"docs": n, "reached": [int((best >= t).sum()) for t in cfg.thresholds],
            "ref": np.concatenate(out_r) if out_r else np.empty(0, np.int64),
            "jaccard": np.concatenate(out_j) if out_j else np.empty(0), "doc_id": out_d}


def compare(workdir: Path, reference: Path, cfg: CompareConfig, model=None, log=lambda m: None) -> dict:
    """The comparison report (also written to ``reports/compare.json``). ``model``: an
    optional (run name, checkpoint, GPT, device) whose perplexity on the reference is added."""
    workdir = Path(workdir)
    files = sorted_files(workdir / "clean", "clean-*.parquet")
    if not files:
        raise MissingInputError(f"no corpus in {workdir / 'clean'}", "Run `webtext run` (or `webtext demo`) first")
    ref = read_reference(reference, cfg, log)
    n_ref = len(ref.offsets)
    _STATE.update(ref=ref, cfg=cfg)
    best = np.zeros(n_ref)                      # each reference document's best Jaccard in the corpus
    match = np.full(n_ref, None, dtype=object)  # ... and that corpus document's doc_id
    docs, reached = 0, np.zeros(len(cfg.thresholds), np.int64)
    pool = _pool(min(cfg.workers, len(files)))
    try:
        results = pool.imap_unordered(match_shard, files) if pool else map(match_shard, files)
        for k, res in enumerate(results, 1):
            docs += res["docs"]
            reached += res["reached"]
            for r, j, d in zip(res["ref"].tolist(), res["jaccard"].tolist(), res["doc_id"]):
                if j > best[r]:
                    best[r], match[r] = j, d
            log(f"corpus: {k}/{len(files)} shards, {docs:,} documents compared")
    finally:
        if pool:
            pool.close()
        _STATE.clear()
    dedup_t = round(cfg.dedup.threshold, 4)
    found = best >= dedup_t
    report = {
        "reference": str(ref.path), "reference_lines": ref.lines, "reference_docs": n_ref,
        "bad_lines": sum(ref.bad.values()), "bad": ref.bad,
        "corpus_docs": docs, "corpus_files": len(files),
        "settings": {"thresholds": cfg.thresholds, "dedup_threshold": dedup_t, "verify": cfg.verify,
                     "lsh_threshold": cfg.lsh_threshold, "bands": cfg.bands, "rows": cfg.rows,
                     **signature_params(cfg.dedup)},
        "thresholds": [{
            "jaccard": t,
            "lsh_recall": 1 - (1 - t ** cfg.rows) ** cfg.bands,    # chance a pair at exactly t is a candidate
            "reference_found": int((best >= t).sum()), "reference_found_share": float((best >= t).mean()),
            "corpus_in_reference": int(c), "corpus_in_reference_share": float(c / docs) if docs else 0.0,
        } for t, c in zip(cfg.thresholds, reached.tolist())],
        "found_examples": [{"id": ref_id(ref, i), "doc_id": match[i], "jaccard": round(float(best[i]), 4)}
                           for i in np.flatnonzero(found)[:EXAMPLES].tolist()],
        "missing": missing_features(ref, found),
    }
    if model is not None:
        report["perplexity"] = perplexity(ref, found, *model, docs=cfg.ppl_docs, seed=cfg.seed)
    write_json(workdir / "reports" / "compare.json", report)
    return report

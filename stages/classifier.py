"""GPT-3's quality classifier (Brown et al. 2020, appendix A), trained on our own corpus.

GPT-3 filtered Common Crawl with a logistic regression over hashed token counts, its
positives curated text (WebText, Wikipedia, books), its negatives raw Common Crawl; it kept
a document when ``np.random.pareto(9) > 1 - score``. Here the positives are the finished
corpus (``clean/``) and the negatives a set the user gives.

    webtext classifier train [--positive PATH]... --negative PATH... [--out DIR]
    webtext classifier score [--model DIR] (--out DIR | --in-place) PATH...

In: docs tables (any Parquet with a ``text`` column; a folder means its ``*.parquet``,
bookkeeping ``_*`` files skipped) and, for either class, WARC files (``.warc.gz``/``.warc``:
the HTML responses' main text, extracted with trafilatura as the extract stage does).

Out (``train``), a folder that holds no pickle, so a model from elsewhere runs no code:
- ``vectorizer.json``: scikit-learn HashingVectorizer parameters (word tokens, 2**20
  features, counts l2-normalized per document);
- ``weights.npz``: ``coef`` (float64, shape (n_features,)) and ``intercept`` (float64, ());
- ``classifier.json``: settings, data sources, counts and held-out validation metrics.
A document's score is ``sigmoid(x . coef + intercept)`` in [0, 1], 1 = like the positives.

Out (``score``): each table again, same schema and metadata plus a float64 ``quality_score``
column (replaced if there), written by record batch and renamed into place when complete.

``pareto_keep`` is GPT-3's sampling rule, drawn per document from a hash of its id and a
seed, so a decision depends on neither batch order nor worker count.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash
from scipy.special import expit

from webtext.pipeline.errors import ConfigError, MissingInputError
from webtext.pipeline.io import atomic_path, read_json, write_json

from .ngrams import _mix64

SCORE = "quality_score"
VECTORIZER, WEIGHTS, INFO = "vectorizer.json", "weights.npz", "classifier.json"
BATCH = 1024                    # documents hashed at once: the text held in memory
MAX_HTML = 5 << 20              # WARC payloads inflated to at most 5 MiB (extract's default)
_WARC = (".warc.gz", ".warc")
# The HashingVectorizer parameters a model file may set (nothing else is passed on).
_VEC_KEYS = ("n_features", "analyzer", "lowercase", "token_pattern", "ngram_range",
             "alternate_sign", "norm", "binary", "strip_accents")


@dataclass(slots=True)
class ClassifierConfig:
    n_features: int = 2**20
    C: float = 1.0                  # inverse L2 strength of the logistic regression
    val_fraction: float = 0.1       # documents held out (by a hash of their text) for the metrics
    max_docs: int = 100_000         # per class: bounds memory (about 5 KB of hashed features a doc)
    seed: int = 0

    def __post_init__(self):
        if not 0 < self.val_fraction < 1:
            raise ConfigError(f"val fraction {self.val_fraction} is not between 0 and 1", "Use e.g. 0.1")
        if self.max_docs < 1:
            raise ConfigError(f"max docs {self.max_docs} is under 1", "Give a positive cap per class")


# -- sources ------------------------------------------------------------------------------

@dataclass(slots=True)
class Source:
    path: Path
    kind: str                       # parquet | warc
    docs: int = 0                   # texts read from it
    skipped: int = 0                # WARC responses without extractable text; null/empty texts

    def as_dict(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "docs": self.docs, "skipped": self.skipped}


def sources(specs: Iterable[Path], what: str, warc: bool = True) -> list[Source]:
    """The Parquet (and with ``warc``, WARC) files named by ``specs``: files, or folders of them."""
    found: list[Source] = []
    for spec in map(Path, specs):
        if spec.is_dir():
            files = sorted(p for p in spec.iterdir() if p.is_file() and not p.name.startswith(("_", ".")))
        elif spec.is_file():
            files = [spec]
        else:
            raise MissingInputError(f"{what} path {spec} does not exist")
        for p in files:
            if p.name.endswith(".parquet"):
                if pq.ParquetFile(p).schema_arrow.get_field_index("text") < 0:
                    raise ConfigError(f"{p} has no text column", f"Give docs tables (Parquet with a text column) as {what}")
                found.append(Source(p, "parquet"))
            elif warc and p.name.endswith(_WARC):
                found.append(Source(p, "warc"))
            elif spec.is_file():
                kinds = "Parquet or WARC (.warc.gz, .warc)" if warc else "Parquet"
                raise ConfigError(f"{p} is not a {kinds} file", f"Give {what} as {kinds} files or folders")
    if not found:
        raise MissingInputError(f"no {what} documents: no Parquet{' or WARC' if warc else ''} files in "
                                f"{', '.join(map(str, specs)) or '(nothing given)'}")
    return found


def _parquet_texts(src: Source, rows: np.ndarray | None) -> Iterator[str]:
    """The texts of the rows where ``rows`` (a boolean mask of the file's rows) is set, or all."""
    start = 0
    for batch in pq.ParquetFile(src.path).iter_batches(columns=["text"], batch_size=BATCH):
        col = batch.column(0)
        if rows is not None:
            col = col.filter(pa.array(rows[start:start + len(col)]))
        start += len(batch)
        for text in col.to_pylist():
            if text:
                yield text
            else:
                src.skipped += 1


def _warc_texts(src: Source) -> Iterator[str]:
    """Main text of every HTML response (any status: a raw crawl's error pages are negatives too)."""
    from fastwarc.warc import ArchiveIterator, WarcRecordType

    from .captures import decode_payload
    from .extract import decode_html, normalize_text
    from .pagetext import extract_page

    with open(src.path, "rb") as f:
        for rec in ArchiveIterator(f, record_types=WarcRecordType.response, parse_http=True):
            headers = list(rec.http_headers.items()) if rec.http_headers else []
            ctype = next((v for k, v in headers if k.lower() == "content-type"), "")
            body, _ = decode_payload(headers, rec.reader.read(), MAX_HTML)
            if body is None or "html" not in ctype.lower():
                src.skipped += 1
                continue
            url = rec.headers.get("WARC-Target-URI") or ""
            text = extract_page(decode_html(body, ctype), url, extractor="trafilatura").text
            if text and (text := normalize_text(text)).strip():
                yield text
            else:
                src.skipped += 1


def texts(srcs: list[Source], sample: dict[Path, np.ndarray] | None = None) -> Iterator[str]:
    """Every text of ``srcs`` (of ``sample``'s rows where given) in order, counted on its Source."""
    for src in srcs:
        it = _parquet_texts(src, sample and sample[src.path]) if src.kind == "parquet" else _warc_texts(src)
        for text in it:
            src.docs += 1
            yield text


def _mix(x: np.ndarray, seed: int) -> np.ndarray:
    """splitmix64 (Steele, Lea and Flood 2014) of uint64 ``x``: 64 well-mixed bits per integer."""
    with np.errstate(over="ignore"):
        return _mix64(x + np.uint64(((seed + 1) * 0x9E3779B97F4A7C15) % 2**64))


def sample_rows(srcs: list[Source], cap: int, seed: int) -> dict[Path, np.ndarray] | None:
    """Which rows of the Parquet ``srcs`` to read when they hold more than ``cap``: a boolean
    mask per file, ``cap`` rows in all, chosen uniformly by a seeded hash of (file, row)
    from the files' row counts alone (no text read). None: read everything (within the
    cap, or a WARC source, whose pages are only known by reading them: taken in order)."""
    if any(s.kind != "parquet" for s in srcs):
        return None
    counts = [pq.ParquetFile(s.path).metadata.num_rows for s in srcs]
    if sum(counts) <= cap:
        return None
    keys = [_mix(np.arange(n, dtype=np.uint64) + np.uint64(i << 40), seed) for i, n in enumerate(counts)]
    cut = np.partition(np.concatenate(keys), cap - 1)[cap - 1]
    return {s.path: k <= cut for s, k in zip(srcs, keys)}


def _unit(key: str, seed: int) -> float:
    """A uniform draw in [0, 1) fixed by ``key`` and ``seed`` (the top 53 bits of xxh64)."""
    return (xxhash.xxh64_intdigest(key.encode("utf-8", "surrogatepass"), seed=seed) >> 11) * 2.0**-53


# -- the model ----------------------------------------------------------------------------

@dataclass
class Model:
    vectorizer: dict                # HashingVectorizer parameters (_VEC_KEYS)
    coef: np.ndarray                # float64 (n_features,)
    intercept: float
    _vec: object = field(default=None, repr=False)

    def __post_init__(self):
        from sklearn.feature_extraction.text import HashingVectorizer

        params = {k: self.vectorizer[k] for k in _VEC_KEYS if k in self.vectorizer}
        if "ngram_range" in params:
            params["ngram_range"] = tuple(params["ngram_range"])
        self._vec = HashingVectorizer(dtype=np.float64, **params)
        if self.coef.shape != (self._vec.n_features,):
            raise ConfigError(f"weights have shape {self.coef.shape}, the vectorizer {self._vec.n_features} features",
                              "The model folder is damaged: train it again")

    def features(self, docs: list[str]):
        """Sparse float64 (len(docs), n_features): word counts, l2-normalized per document."""
        return self._vec.transform(docs)

    def decision(self, X) -> np.ndarray:
        return np.asarray(X @ self.coef).ravel() + self.intercept

    def score(self, docs: list[str]) -> np.ndarray:
        """P(positive) per document, float64 in [0, 1]."""
        return expit(self.decision(self.features(docs)))

    def save(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / VECTORIZER, self.vectorizer)
        with atomic_path(out / WEIGHTS) as tmp, open(tmp, "wb") as f:   # a file object: numpy adds no suffix
            np.savez_compressed(f, coef=self.coef, intercept=np.float64(self.intercept))


def load(model_dir: Path) -> Model:
    """The model in ``model_dir`` (JSON and npz only: nothing unpickled)."""
    model_dir = Path(model_dir)
    if not (model_dir / WEIGHTS).is_file() or not (model_dir / VECTORIZER).is_file():
        raise MissingInputError(f"no classifier in {model_dir} ({VECTORIZER} and {WEIGHTS})",
                                "Run `webtext classifier train` first, or give --model DIR")
    with np.load(model_dir / WEIGHTS, allow_pickle=False) as w:
        coef, intercept = w["coef"].astype(np.float64), float(w["intercept"])
    return Model(read_json(model_dir / VECTORIZER), coef, intercept)


# -- train --------------------------------------------------------------------------------

def _hashed(model: Model, srcs: list[Source], cfg: ClassifierConfig):
    """(train, val) sparse feature matrices of at most ``cfg.max_docs`` texts of ``srcs``.

    Text is hashed a batch at a time, so only the sparse features of the class stay in
    memory. A text's split comes from a hash of the text: duplicates share a split, and
    the split is the same whatever the order of the files. Over the cap, ``sample_rows``
    picks the rows.
    """
    from scipy.sparse import csr_matrix, vstack

    parts: dict[bool, list] = {False: [], True: []}
    batch: dict[bool, list[str]] = {False: [], True: []}
    n = 0

    def flush(val: bool):
        if batch[val]:
            parts[val].append(model.features(batch[val]))
            batch[val] = []

    for text in texts(srcs, sample_rows(srcs, cfg.max_docs, cfg.seed)):
        val = _unit(text, cfg.seed) < cfg.val_fraction
        batch[val].append(text)
        if len(batch[val]) >= BATCH:
            flush(val)
        n += 1
        if n >= cfg.max_docs:
            break
    flush(False)
    flush(True)
    empty = csr_matrix((0, cfg.n_features))
    return tuple(vstack(parts[v]).tocsr() if parts[v] else empty for v in (False, True))


def train(positives: list[Path], negatives: list[Path], out: Path, cfg: ClassifierConfig | None = None) -> dict:
    """Fit the classifier (positives 1, negatives 0), save it in ``out`` and return its report."""
    from scipy.sparse import vstack
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    cfg = cfg or ClassifierConfig()
    pos_src, neg_src = sources(positives, "positive"), sources(negatives, "negative")
    vec = {"n_features": cfg.n_features, "analyzer": "word", "lowercase": True, "token_pattern": r"(?u)\b\w\w+\b",
           "ngram_range": [1, 1], "alternate_sign": False, "norm": "l2", "binary": False, "strip_accents": None}
    model = Model(vec, np.zeros(cfg.n_features), 0.0)
    (pos_tr, pos_val), (neg_tr, neg_val) = _hashed(model, pos_src, cfg), _hashed(model, neg_src, cfg)
    for name, tr, val, srcs in (("positive", pos_tr, pos_val, pos_src), ("negative", neg_tr, neg_val, neg_src)):
        if tr.shape[0] + val.shape[0] == 0:
            raise MissingInputError(f"no {name} documents with text in {', '.join(str(s.path) for s in srcs)}",
                                    f"Give {name}s that hold text (docs tables, or WARC files of HTML pages)")
        if tr.shape[0] == 0:
            raise ConfigError(f"too few {name} documents to train on ({val.shape[0]}, all held out)",
                              "Give more documents or a smaller --val-fraction")

    X = vstack([pos_tr, neg_tr]).tocsr()
    y = np.r_[np.ones(pos_tr.shape[0]), np.zeros(neg_tr.shape[0])]
    # class_weight balanced: each class weighs half, however many documents it brought
    lr = LogisticRegression(C=cfg.C, class_weight="balanced", max_iter=1000)
    lr.fit(X, y)
    model.coef, model.intercept = lr.coef_.ravel().astype(np.float64), float(lr.intercept_[0])

    metrics: dict = {"auc": None, "accuracy": None, "mean_score_positive": None, "mean_score_negative": None}
    s_pos, s_neg = (expit(model.decision(m)) for m in (pos_val, neg_val))
    if len(s_pos) and len(s_neg):
        y_val, s_val = np.r_[np.ones(len(s_pos)), np.zeros(len(s_neg))], np.r_[s_pos, s_neg]
        metrics = {"auc": float(roc_auc_score(y_val, s_val)),
                   "accuracy": float(np.mean((s_val >= 0.5) == (y_val == 1))),
                   "mean_score_positive": float(s_pos.mean()), "mean_score_negative": float(s_neg.mean())}

    import sklearn

    info = {
        "model": str(out), "settings": asdict(cfg), "vectorizer": vec, "sklearn": sklearn.__version__,
        "classifier": "LogisticRegression(lbfgs, L2, class_weight=balanced)",
        "positives": {"sources": [s.as_dict() for s in pos_src], "train": pos_tr.shape[0], "val": pos_val.shape[0]},
        "negatives": {"sources": [s.as_dict() for s in neg_src], "train": neg_tr.shape[0], "val": neg_val.shape[0]},
        "validation": metrics,
    }
    model.save(out)
    write_json(out / INFO, info)        # last: a folder with classifier.json holds a whole model
    return info


# -- score --------------------------------------------------------------------------------

def score(model_dir: Path, inputs: list[Path], out_dir: Path | None = None, in_place: bool = False,
          alpha: float = 9.0, seed: int = 0) -> dict:
    """Write each docs table of ``inputs`` with a ``quality_score`` column, into ``out_dir``
    (same file names) or over itself (``in_place``). Also counts what ``pareto_keep`` would
    keep (``alpha``, ``seed``; keyed by ``doc_id``, or the text where there is none)."""
    if (out_dir is None) == (not in_place):
        raise ConfigError("give an output folder or in-place, one of them", "Use --out DIR or --in-place")
    model = load(model_dir)
    srcs = sources(inputs, "input", warc=False)
    dests = [s.path if in_place else Path(out_dir) / s.path.name for s in srcs]
    if len(set(dests)) < len(dests):
        raise ConfigError("two inputs have the same file name", "Score them into different --out folders")
    stamp = json.dumps({"model": str(model_dir), "info": _validation(model_dir)}, sort_keys=True)
    files, total, kept, mass = [], 0, 0, 0.0
    for src, dest in zip(srcs, dests):
        rows, s_sum = 0, 0.0
        with atomic_path(dest) as tmp, pq.ParquetFile(src.path) as pf:
            schema = pf.schema_arrow
            if SCORE in schema.names:
                schema = schema.remove(schema.get_field_index(SCORE))
            out_schema = schema.append(pa.field(SCORE, pa.float64(), nullable=False)).with_metadata(
                {**(pf.schema_arrow.metadata or {}), b"webtext.quality_model": stamp.encode()})
            with pq.ParquetWriter(tmp, out_schema) as w:
                for batch in pf.iter_batches(batch_size=BATCH):
                    docs = [t or "" for t in batch.column("text").to_pylist()]
                    s = model.score(docs)
                    keys = batch.column("doc_id").to_pylist() if "doc_id" in schema.names else docs
                    kept += int(pareto_keep(keys, s, alpha, seed).sum())
                    w.write_batch(pa.record_batch([batch.column(n) for n in schema.names] + [pa.array(s)],
                                                  schema=out_schema))
                    rows, s_sum = rows + len(s), s_sum + float(s.sum())
        files.append({"input": str(src.path), "output": str(dest), "rows": rows,
                      "mean_score": s_sum / rows if rows else None})
        total, mass = total + rows, mass + s_sum
    return {"model": str(model_dir), "files": files, "rows": total, "mean_score": mass / total if total else None,
            "pareto": {"alpha": alpha, "seed": seed, "kept": kept}}


def _validation(model_dir: Path) -> dict | None:
    p = Path(model_dir) / INFO
    return read_json(p).get("validation") if p.is_file() else None


# -- the sampling rule --------------------------------------------------------------------

def pareto_draws(keys: Iterable[str], alpha: float = 9.0, seed: int = 0) -> np.ndarray:
    """One Lomax(alpha) draw per key, what ``np.random.pareto(alpha)`` gives, but fixed by
    the key and the seed: inverse CDF ``(1 - u) ** (-1 / alpha) - 1`` of a hashed uniform u."""
    u = np.fromiter((_unit(str(k), seed) for k in keys), dtype=np.float64)
    return np.expm1(-np.log1p(-u) / alpha)


def pareto_keep(keys: Iterable[str], scores, alpha: float = 9.0, seed: int = 0) -> np.ndarray:
    """GPT-3's rule, per document: keep when ``pareto(alpha) > 1 - score`` (boolean array).
    Kept with probability ``keep_probability(score, alpha)``."""
    return pareto_draws(keys, alpha, seed) > 1 - np.asarray(scores, dtype=np.float64)


def keep_probability(scores, alpha: float = 9.0) -> np.ndarray:
    """P(Lomax(alpha) > 1 - s) = (1 + (1 - s)) ** -alpha = (2 - s) ** -alpha: 1 at s = 1,
    2**-9 = 0.2 % at s = 0, 1.5**-9 = 2.6 % at s = 0.5 (alpha 9)."""
    return (2 - np.asarray(scores, dtype=np.float64)) ** -alpha


@dataclass(slots=True)
class ParetoFilter:
    """The rule as a document filter (a docs row with ``doc_id`` and ``quality_score``)."""
    alpha: float = 9.0
    seed: int = 0
    name: str = "quality_pareto"

    def filter(self, doc: dict) -> bool | tuple[bool, str]:
        if bool(pareto_keep([doc["doc_id"]], [doc[SCORE]], self.alpha, self.seed)[0]):
            return True
        return False, self.name


"""shard: ``clean/`` -> ``tokens/`` (GPT-2 BPE token shards, Arrow IPC, train/val).

One task per clean shard writes ``tokens/train-NNNNN.arrow`` and ``tokens/val-NNNNN.arrow``
(schema TOKENS): uncompressed Arrow IPC files that memory-map. The ``tokens`` list
offsets are the document-boundary index.

EOT convention: every document's tokens are followed by one ``<|endoftext|>`` (50256),
so concatenating a shard's ``tokens`` values gives ``doc EOT doc EOT ...``.

Split: a document goes to val when ``xxh3_64(url) mod 10^6 < val_fraction * 10^6``,
a function of the normalized URL alone, so the split is stable when documents are
added. ``tokens/manifest.json`` lists every shard with its split, documents, tokens and
sha256, plus the tokenizer, its vocabulary hash and the schema version.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from pipeline.config import ShardConfig, to_dict
from pipeline.executor import Context, Task, finish_stage, run_phase
from pipeline.io import atomic_path, read_json, require_shards, shard_id, write_json
from pipeline.schemas import SCHEMA_VERSION, TOKENS
from pipeline.stats import Stats

from .tokenizer import ENCODER_JSON_SHA256, EOT, VOCAB_BPE_SHA256, gpt2_encoding

VAL_BUCKETS = 1_000_000


def is_val(url: str, val_fraction: float) -> bool:
    return xxhash.xxh3_64_intdigest(url.encode()) % VAL_BUCKETS < val_fraction * VAL_BUCKETS


def token_table(doc_ids: list[str], token_lists: list[list[int]]) -> pa.Table:
    """Build the TOKENS table; each list gets its trailing EOT here."""
    lengths = np.fromiter((len(t) + 1 for t in token_lists), dtype=np.int64, count=len(token_lists))
    offsets = np.zeros(len(token_lists) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    flat = np.empty(int(offsets[-1]), dtype=np.int64)
    for i, toks in enumerate(token_lists):
        flat[offsets[i]:offsets[i + 1] - 1] = toks
        flat[offsets[i + 1] - 1] = EOT
    if len(flat) and int(flat.max()) >= 2**16:
        raise ValueError(f"token id {int(flat.max())} does not fit uint16")
    tokens = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(np.uint16)))
    return pa.table({"doc_id": pa.array(doc_ids, pa.string()), "tokens": tokens}, schema=TOKENS)


def write_ipc(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, TOKENS) as writer:
            writer.write_table(table, max_chunksize=8192)


def shard_docs(task: Task) -> Stats:
    (src,) = task.inputs
    train_path, val_path = task.outputs
    docs = pq.read_table(src, columns=["doc_id", "url", "text"])
    enc = gpt2_encoding()
    ids, urls = docs["doc_id"].to_pylist(), docs["url"].to_pylist()
    toks = enc.encode_ordinary_batch(docs["text"].to_pylist(), num_threads=1)
    stats = Stats(records_in=len(ids), records_out=len(ids))
    split = {"train": ([], []), "val": ([], [])}
    for doc_id, url, t in zip(ids, urls, toks):
        name = "val" if is_val(url, task.params["val_fraction"]) else "train"
        split[name][0].append(doc_id)
        split[name][1].append(t)
    for name, path in (("train", train_path), ("val", val_path)):
        table = token_table(*split[name])
        write_ipc(table, path)
        stats.add_info(f"docs_{name}", table.num_rows)
        stats.add_info(f"tokens_{name}", sum(len(t) + 1 for t in split[name][1]))
    return stats


def read_tokens(path: Path) -> pa.Table:
    """Memory-map a token shard (zero-copy)."""
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def write_manifest(ctx: Context, out: Path, shard_files: list[tuple[str, Path]], corpus_stats: dict) -> Path:
    shards = []
    for split, path in shard_files:
        t = read_tokens(path)
        # flatten() of each chunk is a zero-copy view; combine_chunks() would copy every token.
        shards.append({"file": path.name, "split": split, "docs": t.num_rows,
                       "tokens": sum(len(chunk.flatten()) for chunk in t["tokens"].chunks),
                       "sha256": ctx.state.digest(path)})
    vocab_hash = hashlib.sha256((VOCAB_BPE_SHA256 + ENCODER_JSON_SHA256).encode()).hexdigest()
    manifest = {
        "schema_version": SCHEMA_VERSION, "tokenizer": "gpt2", "vocab_size": 50257, "eot": EOT,
        "eot_convention": "one <|endoftext|> after every document", "dtype": "uint16",
        "vocab_sha256": vocab_hash, "source": "clean", "source_docs": corpus_stats.get("in", 0),
        "shards": shards,
        "totals": {s: {"docs": sum(x["docs"] for x in shards if x["split"] == s),
                       "tokens": sum(x["tokens"] for x in shards if x["split"] == s)} for s in ("train", "val")},
    }
    path = out / "manifest.json"
    if not path.exists() or read_json(path) != json.loads(json.dumps(manifest)):
        write_json(path, manifest)
    return path


def run(ctx: Context) -> dict:
    cfg: ShardConfig = ctx.cfg.shard
    started = time.time()
    inputs = require_shards(ctx.dir("clean"), "clean-*.parquet", "clean shards", "decontaminate")
    out = ctx.dir("tokens")
    tasks = []
    for src in inputs:
        n = shard_id(src)
        tasks.append(Task("shard", n, shard_docs, [src], [out / f"train-{n}.arrow", out / f"val-{n}.arrow"],
                          {"val_fraction": cfg.val_fraction, "tokenizer": "gpt2", "eot": "after-each-doc"}))
    res = run_phase(ctx, out, "shard", tasks)
    files = [(split, t.outputs[i]) for t in tasks for i, split in enumerate(("train", "val"))]
    write_manifest(ctx, out, files, res.stats.to_dict())
    return finish_stage(ctx, "shard", out, res.stats, to_dict(cfg), res.ran, res.skipped, started)

"""shard: ``clean/`` -> ``tokens/`` (BPE token shards, Arrow IPC, train/val, shuffled).

Phases, each resumable per task:
1. *tokenize*, one task per clean shard -> ``tokens/_meta/parts/part-NNNNN.arrow``: every
   document's tokens (GPT-2 BPE by default: tiktoken, or HF ``tokenizers``, or a user's
   ``tokenizer.json``), its split, and its shuffle key ``xxh3_64(seed, doc_id)``, sorted
   by key.
2. *assemble*, one task per output shard -> ``tokens/{train,val}-NNNNN.arrow``: documents
   in shuffle-key order are cut into shards of about ``shard_tokens`` tokens (default
   100M). A shard takes one key range from every part, so each shard is a uniform sample
   of the whole corpus. Memory: one output shard plus the key table (16 bytes a document).

Revisions: a page revisited with ``--refetch-after`` that changed has a newer document
with the same doc_id (so the same key) in a later clean shard. The newest part wins
(``live_masks``); when its tokens differ from the last version's, the old shards get
copies without it and the new version's shards carry the new tokens (``revised_docs``).

Output files are uncompressed Arrow IPC (memory-mappable; schema TOKENS, ``tokens`` as
``list<uint16>``, or ``list<uint32>`` when the vocabulary exceeds 65,536 ids). The list
offsets are the document-boundary index. EOT convention: every document's tokens are
followed by one ``<|endoftext|>``, so a shard's flat token values read
``doc EOT doc EOT ...``. Ids are checked against the dtype before any cast.

Split: a document goes to val when ``xxh3_64(url) mod 10^6 < val_fraction * 10^6``, a
function of the normalized URL alone, so the split is stable when documents are added.
``tokens/manifest.json`` lists every shard (split, documents, tokens, sha256), the
tokenizer (name, backend, vocabulary size and hash, dtype, EOT), the schema version and
the source corpus (documents and a fingerprint of the clean shards).
``--export nanogpt`` also writes ``tokens/nanogpt/{train,val}.bin``: the flat uint16
tokens that nanoGPT-style trainers read.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import xxhash

from webtext.pipeline import layout, progress
from webtext.pipeline.config import ShardConfig, to_dict
from webtext.pipeline.errors import ConfigError
from webtext.pipeline.executor import Context, PhaseResult, Task, finish_stage, run_phase
from webtext.pipeline.io import atomic_path, read_json, require_shards, sha256_file, shard_id, write_json
from webtext.pipeline.schemas import tokens_schema
from webtext.pipeline.stats import Stats

from .takedowns import Takedown, matching_docs
from .tokenlayout import LAYOUT_SCHEMA, folder_name, link_or_copy, migrate_flat, refresh, versions_of
from .tokenizer import TokenizerSpec, array_encoder, resolve_tokenizer

VAL_BUCKETS = 1_000_000
ENCODE_BATCH = 256          # documents per encoder call
PARTS = f"{layout.META}/{layout.PARTS}"     # tokens/_meta/parts/


def is_val(url: str, val_fraction: float) -> bool:
    return xxhash.xxh3_64_intdigest(url.encode()) % VAL_BUCKETS < val_fraction * VAL_BUCKETS


def shuffle_key(doc_id: str, seed: int) -> int:
    return xxhash.xxh3_64_intdigest(doc_id.encode(), seed=seed)


def shuffle_keys(doc_ids: list[str], seed: int) -> np.ndarray:
    return np.fromiter((shuffle_key(d, seed) for d in doc_ids), dtype=np.uint64, count=len(doc_ids))


def token_lists_array(token_lists: list[list[int]], dtype: str = "uint16", eot: int = 50256) -> pa.Array:
    """``list<dtype>``, each list followed by its EOT (appended in place). pyarrow's
    conversion checks that every id fits ``dtype``: nothing is cast blindly."""
    for t in token_lists:
        t.append(eot)
    try:
        return pa.array(token_lists, pa.list_(pa.from_numpy_dtype(np.dtype(dtype))))
    except (pa.ArrowInvalid, OverflowError) as e:
        raise ValueError(f"a token id does not fit {dtype}: {e}") from None


def token_table(doc_ids: list[str], token_lists: list[list[int]], dtype: str = "uint16", eot: int = 50256,
                extra: dict | None = None) -> pa.Table:
    """The TOKENS table for ``dtype`` (see ``token_lists_array``)."""
    t = pa.table({"doc_id": pa.array(doc_ids, pa.string()),
                  "tokens": token_lists_array([list(x) for x in token_lists], dtype, eot)},
                 schema=tokens_schema(dtype))
    for name, col in (extra or {}).items():
        t = t.append_column(name, col)
    return t


def write_ipc(table: pa.Table, path: Path) -> None:
    with atomic_path(path) as tmp:
        with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=8192)


def read_tokens(path: Path) -> pa.Table:
    """Memory-map a token shard (zero-copy)."""
    return pa.ipc.open_file(pa.memory_map(str(path), "r")).read_all()


def _spec(p: dict) -> TokenizerSpec:
    return TokenizerSpec(**p["tokenizer"])


def tokenize_part(task: Task) -> Stats:
    """One clean shard -> its documents' tokens, split and shuffle key, sorted by key.

    Streams the shard ``ENCODE_BATCH`` documents at a time; each batch's ids come back as
    one flat array, are cast to the shard dtype at once (after a check that they fit) and
    become a list array without a copy, so memory holds 2 (or 4) bytes a token, never
    Python ints. The key order is applied at the end by one Arrow ``take``."""
    (src,) = task.inputs
    p = task.params
    spec = _spec(p)
    encode = array_encoder(spec)
    limit = np.iinfo(spec.dtype).max
    ids, tokens, keys, val = [], [], [], []
    for batch in pq.ParquetFile(src).iter_batches(batch_size=ENCODE_BATCH, columns=["doc_id", "url", "text"]):
        flat, lens = encode(batch.column(2).to_pylist())
        if len(flat) and int(flat.max()) > limit:
            raise ValueError(f"a token id does not fit {spec.dtype}: {int(flat.max())}")
        offsets = np.r_[np.int32(0), np.cumsum(lens, dtype=np.int32)]     # a batch never nears 2**31 tokens
        tokens.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(spec.dtype, copy=False))))
        ids.append(batch.column(0).cast(pa.string()))
        keys.append(shuffle_keys(batch.column(0).to_pylist(), p["seed"]))
        urls = batch.column(1).to_pylist()
        val.append(np.fromiter((is_val(u, p["val_fraction"]) for u in urls), dtype=bool, count=len(urls)))
        progress.advance(len(flat))
    schema = tokens_schema(spec.dtype)
    key = np.concatenate(keys) if keys else np.empty(0, np.uint64)
    table = pa.table([pa.chunked_array(ids, pa.string()), pa.chunked_array(tokens, schema.field("tokens").type),
                      pa.array(key), pa.array(np.concatenate(val) if val else np.empty(0, bool))],
                     names=["doc_id", "tokens", "key", "val"])
    table = table.take(pa.array(np.argsort(key, kind="stable")))
    write_ipc(table, task.outputs[0])
    n_tokens = sum(len(c.values) for c in tokens)
    stats = Stats(records_in=len(key), records_out=len(key))
    stats.add_info("tokens", n_tokens)
    return stats


def _part_index(part: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(key, tokens per document, is_val) of a part, from its columns' buffers only."""
    t = read_tokens(part)
    if not t.num_rows:
        return np.empty(0, np.uint64), np.empty(0, np.int64), np.empty(0, bool)
    col = t["tokens"].combine_chunks() if t["tokens"].num_chunks != 1 else t["tokens"].chunk(0)
    lengths = pc.list_value_length(col).to_numpy()
    return t["key"].to_numpy(), lengths.astype(np.int64), t["val"].to_numpy(zero_copy_only=False)


def _keys(t: pa.Table) -> np.ndarray:
    return t["key"].to_numpy() if t.num_rows else np.empty(0, np.uint64)


def live_masks(keys: list[np.ndarray]) -> list[np.ndarray]:
    """Per part (in shard order), which rows are live: a document whose key a later part
    also holds was superseded there (a page revisited with ``--refetch-after`` that
    changed), and the newest revision is the corpus's. One sort over every key."""
    if not keys:
        return []
    sizes = [len(k) for k in keys]
    every = np.concatenate(keys)
    order = np.lexsort((np.repeat(np.arange(len(keys)), sizes), every))    # by key, then part
    ordered = every[order]
    last = np.ones(len(ordered), bool)                 # the newest part's row of each key
    last[:-1] = ordered[1:] != ordered[:-1]
    live = np.empty(len(every), bool)
    live[order] = last
    return np.split(live, np.cumsum(sizes)[:-1])


def token_hashes(t: pa.Table, want: np.ndarray, keys: np.ndarray) -> dict[int, int]:
    """xxh3_64 of the token bytes of the rows of ``t`` whose key (``keys``) is in ``want``,
    chunk by chunk (no copy of the column)."""
    out, base = {}, 0
    for chunk in t["tokens"].chunks:
        offsets, values = chunk.offsets.to_numpy(), chunk.values.to_numpy()
        for i in np.flatnonzero(np.isin(keys[base:base + len(chunk)], want)):
            out[int(keys[base + i])] = xxhash.xxh3_64_intdigest(values[offsets[i]:offsets[i + 1]].tobytes())
        base += len(chunk)
    return out


def plan(idx: list[tuple], shard_tokens: int, only: np.ndarray | None = None,
         skip_empty: bool = False) -> dict[str, list[tuple[int, int]]]:
    """Per split, the shuffle-key ranges [lo, hi) of the output shards, each about
    ``shard_tokens`` tokens, over every document of the parts' indexes ``idx`` (or those
    whose key is in ``only``). Keys are 64-bit hashes; ties are broken nowhere since a
    range boundary falls between two distinct keys. An empty split gets one empty shard,
    or none with ``skip_empty``."""
    if only is not None:
        idx = [(k[m], n[m], v[m]) for k, n, v in idx for m in [np.isin(k, only)]]
    out = {}
    for split in ("train", "val"):
        keys = np.concatenate([k[v == (split == "val")] for k, _, v in idx]) if idx else np.empty(0, np.uint64)
        lens = np.concatenate([n[v == (split == "val")] for _, n, v in idx]) if idx else np.empty(0, np.int64)
        order = np.argsort(keys, kind="stable")
        keys, lens = keys[order], lens[order]
        total = int(lens.sum())
        if skip_empty and not len(keys):
            out[split] = []
            continue
        n_shards = max(1, -(-total // shard_tokens))
        cum = np.cumsum(lens)
        cuts = [int(np.searchsorted(cum, total * i / n_shards, side="left")) + 1 for i in range(1, n_shards)]
        bounds = [0] + [int(keys[c]) if c < len(keys) else 2**64 for c in cuts] + [2**64]
        out[split] = [(bounds[i], bounds[i + 1]) for i in range(n_shards) if bounds[i] < bounds[i + 1] or total == 0]
    return out


def assemble(task: Task) -> Stats:
    """One output shard: from every part, its rows of this split with keys in [lo, hi)
    (and, in a later version, only the new documents, whose keys the last input lists)."""
    p = task.params
    lo, hi, want_val = p["lo"], p["hi"], p["split"] == "val"
    parts, only = (task.inputs[:-1], np.load(task.inputs[-1])) if p.get("only") else (task.inputs, None)
    slices = []
    for part in parts:
        t = read_tokens(part)
        keys = _keys(t)
        a, b = np.searchsorted(keys, np.uint64(lo)), (np.searchsorted(keys, np.uint64(hi)) if hi < 2**64 else len(keys))
        slices.append(t.slice(a, b - a))
    pieces = []
    for s, live in zip(slices, live_masks([s["key"].to_numpy() for s in slices])):
        if not s.num_rows:
            continue
        keep = pc.and_(pc.equal(s["val"], want_val), pa.array(live))
        if only is not None:
            keep = pc.and_(keep, pa.array(np.isin(s["key"].to_numpy(), only)))
        pieces.append(s.filter(keep))
    schema = tokens_schema(p["dtype"])
    table = pa.concat_tables(pieces).sort_by("key") if pieces else schema.empty_table()
    table = table.select(["doc_id", "tokens"]).cast(schema)
    write_ipc(table, task.outputs[0])
    stats = Stats(records_in=table.num_rows, records_out=table.num_rows)
    stats.add_info(f"docs_{p['split']}", table.num_rows)
    stats.add_info(f"tokens_{p['split']}", int(sum(len(c.flatten()) for c in table["tokens"].chunks)))
    return stats


def rewrite(task: Task) -> Stats:
    """A later version's copy of an earlier shard without the documents whose shuffle keys
    the second input lists (removed from the corpus); the earlier file stays as it is."""
    src, removed_file = task.inputs
    removed = np.load(removed_file)
    t = read_tokens(src)
    kept = t.filter(pa.array(~np.isin(shuffle_keys(t["doc_id"].to_pylist(), task.params["seed"]), removed)))
    write_ipc(kept, task.outputs[0])
    stats = Stats(records_in=t.num_rows, records_out=kept.num_rows)
    stats.drop("removed", t.num_rows - kept.num_rows)
    return stats


def _changed(out: Path, parts: list[Path], old_keys: dict[str, np.ndarray], cand: np.ndarray) -> np.ndarray:
    """Of the revisited documents in the last version (``cand``), those whose newest
    revision's tokens differ from the version's: they leave the old shards (a rewrite)
    and come back in the new version's shards."""
    if not len(cand):
        return np.empty(0, np.uint64)
    newest: dict[int, int] = {}
    for part in parts:                          # in shard order: a later revision overwrites
        t = read_tokens(part)
        newest.update(token_hashes(t, cand, _keys(t)))
    old: dict[int, int] = {}
    for f, keys in old_keys.items():
        if np.isin(keys, cand).any():
            old.update(token_hashes(read_tokens(out / f), cand, keys))
    return np.array(sorted(k for k in cand.tolist() if k in newest and newest[k] != old.get(k)), np.uint64)


def shard_keys(path: Path, seed: int) -> np.ndarray:
    return shuffle_keys(read_tokens(path)["doc_id"].to_pylist(), seed)


def _flat(path: Path) -> np.ndarray:
    t = read_tokens(path)
    return np.concatenate([c.flatten().to_numpy() for c in t["tokens"].chunks]) if t.num_rows else np.empty(0, np.uint16)


def export_nanogpt(out: Path, files: list[tuple[str, Path]], dtype: str) -> dict:
    """``out/nanogpt/{train,val}.bin`` (``out``: the version's folder, ``tokens/vNNNN``):
    every shard's flat tokens, in manifest order."""
    if dtype != "uint16":
        raise ConfigError("--export nanogpt writes uint16 .bin files; this vocabulary needs uint32",
                          "Use a vocabulary of at most 65,536 tokens, or read the Arrow shards")
    sizes = {}
    for split in ("train", "val"):
        path = out / "nanogpt" / f"{split}.bin"
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            n = 0
            for s, shard in files:
                if s == split:
                    arr = _flat(shard).astype(np.uint16, copy=False)
                    arr.tofile(f)
                    n += len(arr)
        sizes[split] = n
    return sizes




def _totals(entries: list[dict]) -> dict:
    return {s: {"docs": sum(x["docs"] for x in entries if x["split"] == s),
                "tokens": sum(x["tokens"] for x in entries if x["split"] == s)} for s in ("train", "val")}


def shard_entry(ctx: Context, out: Path, path: Path, split: str, version: int) -> dict:
    """A shard's manifest entry; ``file`` is its path relative to ``tokens/`` (``v0002/train-00000.arrow``)."""
    t = read_tokens(path)
    # flatten() of each chunk is a zero-copy view; combine_chunks() would copy every token.
    return {"file": path.relative_to(out).as_posix(), "split": split, "docs": t.num_rows, "version": version,
            "tokens": sum(len(chunk.flatten()) for chunk in t["tokens"].chunks), "sha256": ctx.state.digest(path)}


def write_manifest(out: Path, files: dict[str, dict], versions: list[dict], spec: TokenizerSpec,
                   cfg: ShardConfig) -> Path:
    """``manifest.json``: every shard file of the kept versions (``shard_files``, keyed by
    the path relative to ``tokens/``), the versions (each naming its ``folder`` and listing
    its shards), and, for readers that know no versions, the latest version's ``shards``,
    ``totals`` and ``source``."""
    latest = versions[-1]
    shards = [files[f] for f in latest["shards"]]
    manifest = {
        "schema_version": LAYOUT_SCHEMA, "tokenizer": spec.name, "backend": spec.backend,
        "vocab_size": spec.vocab_size, "eot": spec.eot, "eot_convention": "one <|endoftext|> after every document",
        "dtype": spec.dtype, "vocab_sha256": spec.vocab_sha256, "tokenizer_path": spec.path,
        "shuffle_seed": cfg.seed, "shard_tokens": cfg.shard_tokens, "version": latest["version"],
        "folder": latest["folder"],
        "source": latest["source"], "shards": shards, "totals": _totals(shards),
        "versions": versions, "shard_files": files,
    }
    path = out / "manifest.json"
    if not path.exists() or read_json(path) != json.loads(json.dumps(manifest)):
        write_json(path, manifest)
    return path


def select_version(manifest: dict, version: int = 0) -> dict:
    """The manifest as of ``version`` (0 = latest): its ``shards``, ``totals`` and ``folder``
    (None in the old flat layout). A version that gc removed is an error."""
    versions = versions_of(manifest)
    if not version or not versions or version == versions[-1]["version"]:
        return {**manifest, "folder": versions[-1].get("folder") if versions else None}
    found = [v for v in versions if v["version"] == version]
    if not found:
        gone = [g["version"] for g in manifest.get("removed_versions", [])]
        raise ConfigError(f"tokens/ has no corpus version {version}"
                          + (" (`webtext gc` removed it)" if version in gone else ""),
                          f"Versions: {', '.join(str(v['version']) for v in versions)}")
    shards = [{**manifest["shard_files"][f], "file": f} for f in found[0]["shards"]]
    return {**manifest, "version": version, "shards": shards, "totals": _totals(shards), "source": found[0]["source"],
            "folder": found[0].get("folder")}


def verify_manifest(tokens_dir: Path, manifest: dict | None = None) -> list[str]:
    """Shard files (of ``manifest``'s version; default the latest) whose sha256 no longer
    matches the manifest (empty when all match)."""
    m = manifest or read_json(Path(tokens_dir) / "manifest.json")
    bad = []
    for s in m["shards"]:
        f = Path(tokens_dir) / s["file"]
        if not f.is_file():
            bad.append(s["file"])
            continue
        if sha256_file(f) != s["sha256"]:      # not the state's cached digest: the bytes, now
            bad.append(s["file"])
    return bad


def _cut_version(ctx: Context, out: Path, v: int, last: dict | None, files: dict[str, dict], idx: list[tuple],
                 parts: list[Path], new: np.ndarray | None, removed: np.ndarray, old_keys: dict[str, np.ndarray],
                 base: dict, spec: TokenizerSpec) -> tuple[list[str], list[tuple[str, Path]], PhaseResult]:
    """Version ``v``'s folder ``tokens/vNNNN/``: the last version's shards (hard-linked, or
    a copy without the ``removed`` documents), then new shards of the ``new`` documents
    (every document for version 1). Names count up per split inside the folder. Returns
    the version's shard paths (relative to ``out``), the new shards, and the phase."""
    cfg: ShardConfig = ctx.cfg.shard
    vdir, meta = out / folder_name(v), out / "_versions"
    vdir.mkdir(parents=True, exist_ok=True)
    meta.mkdir(exist_ok=True)
    count = {"train": 0, "val": 0}

    def name(split: str) -> Path:
        count[split] += 1
        return vdir / f"{split}-{count[split] - 1:05d}.arrow"

    tasks, kept, replaced = [], [], {}
    if len(removed):
        np.save(meta / f"v{v:04d}-removed.npy", removed)
    for f in last["shards"] if last else []:
        g = name(files[f]["split"])
        if len(removed) and np.isin(old_keys[f], removed).any():
            replaced[f] = g
            tasks.append(Task("rewrite", f"v{v:04d}-{g.stem}", rewrite, [out / f, meta / f"v{v:04d}-removed.npy"], [g],
                              {"seed": cfg.seed}))
        kept.append((f, g))
    extra, only = [], new is not None
    if only:
        np.save(meta / f"v{v:04d}-new.npy", new)
        extra = [meta / f"v{v:04d}-new.npy"]
    made = []
    for split, ranges in plan(idx, cfg.shard_tokens, new, skip_empty=v > 1).items():
        for lo, hi in ranges:
            f = name(split)
            made.append((split, f))
            tasks.append(Task("assemble", f"v{v:04d}-{f.stem}", assemble, parts + extra, [f],
                              {**base, "split": split, "lo": lo, "hi": hi, "dtype": spec.dtype,
                               "shard_tokens": cfg.shard_tokens, "only": only}))
    done = run_phase(ctx, out, "assemble", tasks)
    ctx.materialize([f for _, f in made] + list(replaced.values()))
    if ctx.store is not None:       # a reused shard is copied: its bytes, not a bucket's placeholder
        ctx.materialize([out / f for f, _ in kept if f not in replaced])
    shards = []
    for f, g in kept:
        split = files[f]["split"]
        if f not in replaced:           # unchanged: the same file in this version's folder
            link_or_copy(out / f, g, copy=ctx.store is not None)
            files[g.relative_to(out).as_posix()] = {**files[f], "file": g.relative_to(out).as_posix(), "version": v,
                                                    "origin": files[f].get("origin") or f}
            shards.append(g.relative_to(out).as_posix())
        elif read_tokens(g).num_rows:
            entry = shard_entry(ctx, out, g, split, v)
            files[entry["file"]] = entry
            shards.append(entry["file"])
    for split, f in made:
        entry = shard_entry(ctx, out, f, split, v)
        files[entry["file"]] = entry
        shards.append(entry["file"])
    return shards, made, done


def run(ctx: Context, export: str | None = None) -> dict:
    """Tokenize new clean shards, then add a corpus version (its own folder
    ``tokens/vNNNN/``) holding the last version's shards, less removed documents, and
    the documents that are new since then in new shards. Earlier versions' files are
    never rewritten."""
    cfg: ShardConfig = ctx.cfg.shard
    started = time.time()
    inputs = require_shards(ctx.dir("clean"), "clean-*.parquet", "clean shards", "decontaminate")
    spec = resolve_tokenizer(cfg.tokenizer, cfg.backend)
    out = ctx.dir("tokens")
    base = {"val_fraction": cfg.val_fraction, "seed": cfg.seed, "eot": "after-each-doc",
            "tokenizer": {k: getattr(spec, k) for k in ("name", "backend", "vocab_size", "eot", "vocab_sha256", "path")}}
    mpath = out / "manifest.json"
    if mpath.exists():
        ctx.materialize(out / f for v in versions_of(read_json(mpath)) for f in v["shards"] if "/" not in f)
        migrate_flat(out, copy=ctx.store is not None, log=ctx.log)       # the old flat layout, once
    prev = read_json(mpath) if mpath.exists() else None
    if prev and (prev.get("vocab_sha256"), prev.get("shuffle_seed"), prev.get("dtype")) != \
            (spec.vocab_sha256, cfg.seed, spec.dtype):
        raise ConfigError(f"{out} holds shards made with another tokenizer or shuffle seed; shards are never "
                          "rewritten", f"Move {out} away to build a new corpus, or use the earlier settings")
    parts = [out / PARTS / f"part-{shard_id(s)}.arrow" for s in inputs]
    tokenized = run_phase(ctx, out, "tokenize", [
        Task("tokenize", shard_id(s), tokenize_part, [s], [p], base, units="tokens") for s, p in zip(inputs, parts)
    ])
    versions = versions_of(prev)
    files: dict[str, dict] = dict(prev.get("shard_files") or {x["file"]: x for x in prev["shards"]}) if prev else {}
    idx = [_part_index(p) for p in ctx.materialize(parts)]     # (bucket work directory: read here)
    live = live_masks([k for k, _, _ in idx])
    # keys held by several parts (revisited pages): those of the superseded rows
    revised = np.unique(np.concatenate([k[~m] for (k, _, _), m in zip(idx, live)])) if idx else np.empty(0, np.uint64)
    idx = [(k[m], n[m], v[m]) for (k, n, v), m in zip(idx, live)]
    current = np.concatenate([k for k, _, _ in idx]) if idx else np.empty(0, np.uint64)
    takedowns = ctx.state.takedowns()
    # `webtext remove`: matching documents (stages.takedowns) out of this version and every later one
    taken, covered = matching_docs(ctx.materialize(inputs), [Takedown(t["kind"], t["url"]) for t in takedowns])
    gone = shuffle_keys(taken, cfg.seed)
    if takedowns:
        current = current[~np.isin(current, gone)]
    fingerprint = hashlib.sha256("".join(ctx.state.digest(s) for s in inputs).encode()).hexdigest()
    source = {"folder": "clean", "docs": tokenized.stats.records_in, "shards": len(inputs), "sha256": fingerprint}
    stats = Stats(records_in=tokenized.stats.records_in)
    ran, skipped = tokenized.ran, tokenized.skipped
    last = versions[-1] if versions else None
    old_keys = {f: shard_keys(p, cfg.seed) for f, p in zip(last["shards"], ctx.materialize(out / f for f in last["shards"]))} \
        if last else {}
    previous = np.concatenate(list(old_keys.values())) if old_keys else np.empty(0, np.uint64)
    changed = _changed(out, parts, old_keys, np.intersect1d(np.intersect1d(revised, previous), current))
    new = np.union1d(np.setdiff1d(current, previous), changed) if last or takedowns else None
    removed = np.union1d(np.setdiff1d(previous, current), changed)
    if last is None or len(new) or len(removed):
        v = last["version"] + 1 if last else 1
        shards, made, done = _cut_version(ctx, out, v, last, files, idx, parts, new, removed, old_keys, base, spec)
        ran, skipped = ran + done.ran, skipped + done.skipped
        n_new = sum(files[f.relative_to(out).as_posix()]["docs"] for _, f in made)
        versions = versions + [{"version": v, "folder": folder_name(v), "source": source, "shards": shards,
                                "added_docs": n_new - len(changed),
                                "added_tokens": sum(files[f.relative_to(out).as_posix()]["tokens"] for _, f in made),
                                "removed_docs": int(len(removed) - len(changed)), "revised_docs": int(len(changed))}]
        # when it was made, and the takedowns it applied: beside the manifest, which stays
        # a function of the inputs
        applied = [t for t, ids in zip(takedowns, covered) if ids and np.isin(shuffle_keys(ids, cfg.seed), removed).any()]
        write_json(out / "_versions" / f"v{v:04d}.json", {"version": v, "created": time.time(),
                                                         "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                                         "takedowns": applied})
        ctx.state.mark_takedowns([t["doc_id"] for t in applied], v)
        ctx.log(f"  shard: corpus version {v} in {out / folder_name(v)}: {n_new - len(changed):,} new document(s), "
                f"{len(changed):,} revised, {len(removed) - len(changed):,} removed")
    kept_folders = {v["folder"] for v in versions}
    for stale in [*out.glob("v*/train-*.arrow"), *out.glob("v*/val-*.arrow")]:
        if stale.relative_to(out).as_posix() not in files:
            stale.unlink()          # from a run that crashed before its manifest
    for d in out.glob("v[0-9]*"):
        if d.is_dir() and d.name not in kept_folders and not any(d.glob("*.arrow")):
            shutil.rmtree(d)
    write_manifest(out, files, versions, spec, cfg)
    refresh(out, read_json(mpath), symlink=ctx.store is None)     # folder manifests, card, then latest
    latest = versions[-1]
    entries = [files[f] for f in latest["shards"]]
    totals = _totals(entries)
    stats.records_out = totals["train"]["docs"] + totals["val"]["docs"]
    for split in ("train", "val"):
        stats.add_info(f"docs_{split}", totals[split]["docs"])
        stats.add_info(f"tokens_{split}", totals[split]["tokens"])
    stats.add_info("version", latest["version"])
    stats.add_info("folder", latest["folder"])
    made_now = latest if latest is not last else {}            # this run's version, if it cut one
    for key in ("added_docs", "added_tokens", "removed_docs", "revised_docs"):
        stats.add_info(key, made_now.get(key, 0))
    stats.add_info("tokenizer", f"{spec.name} ({spec.backend})")
    if export == "nanogpt":
        ctx.materialize(out / f for f in latest["shards"])
        for split, n in export_nanogpt(out / latest["folder"], [(files[f]["split"], out / f) for f in latest["shards"]],
                                       spec.dtype).items():
            stats.add_info(f"nanogpt_{split}_tokens", n)
    elif export:
        raise ConfigError(f"unknown export format {export!r}", "Use --export nanogpt")
    return finish_stage(ctx, "shard", out, stats, to_dict(cfg), ran, skipped, started)

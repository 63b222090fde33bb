"""``tokens/README.md``: the token corpus's dataset card.

Its YAML front matter lists ``configs``, so ``datasets.load_dataset("<workdir>/tokens")``
loads the latest version's ``train`` and ``val`` splits and nothing else (config
``default``), and ``load_dataset(tokens, "v0001")`` an older kept version. The body says
what a row is, lists the versions with their documents and tokens, and how to read them
(datasets, pyarrow, nanoGPT's np.memmap). Written by ``tokenlayout.refresh`` whenever the
manifest changes; ``huggingface_hub.DatasetCard.load`` parses it (tested).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from webtext.pipeline.io import write_text_if_changed

from .tokenlayout import LINK, NANOGPT, versions_of


def _data_files(folder: str) -> list[dict]:
    return [{"split": s, "path": f"{folder}/{s}-*.arrow"} for s in ("train", "val")]


def card_yaml(manifest: dict) -> dict:
    versions = versions_of(manifest)
    latest = versions[-1]["folder"]
    configs = [{"config_name": "default", "data_files": _data_files(latest), "default": True}]
    configs += [{"config_name": v["folder"], "data_files": _data_files(v["folder"])} for v in versions]
    return {"pretty_name": "webtext GPT-2 BPE token shards", "license": "other", "task_categories": ["text-generation"],
            "configs": configs}


def _counts(manifest: dict, v: dict) -> dict:
    files = manifest["shard_files"]
    return {s: (sum(files[f]["docs"] for f in v["shards"] if files[f]["split"] == s),
                sum(files[f]["tokens"] for f in v["shards"] if files[f]["split"] == s)) for s in ("train", "val")}


def card_text(tokens: Path, manifest: dict) -> str:
    """The card. It names no absolute path: the same corpus gives the same bytes wherever
    the work directory lies (a bucket's scratch, a copy), and the recipes take the folder's
    path as ``TOKENS``."""
    versions = versions_of(manifest)
    latest = versions[-1]
    dtype, eot = manifest.get("dtype", "uint16"), manifest.get("eot", 50256)
    rows = []
    for v in versions:
        c = _counts(manifest, v)
        rows.append(f"| {v['folder']} | {c['train'][0]:,} | {c['train'][1]:,} | {c['val'][0]:,} | {c['val'][1]:,} "
                    f"| {v.get('added_docs', c['train'][0] + c['val'][0]):,} | {v.get('removed_docs', 0):,} |"
                    + (" latest |" if v is latest else " |"))
    export = f"{LINK}/{NANOGPT}/train.bin"
    body = f"""
# webtext token shards

{manifest.get('tokenizer', 'gpt2')} BPE token ids ({manifest.get('backend', '')}, vocabulary {manifest.get('vocab_size', 0):,},
stored as `{dtype}`), one Arrow IPC file per shard (uncompressed, memory-mappable). A row is one document:
`doc_id` (string) and `tokens` (`list<{dtype}>`). Exactly one `<|endoftext|>` (id {eot}) follows every
document, so a shard's flat tokens read `doc EOT doc EOT ...`. Documents are shuffled across shards by a
seeded hash of their id (seed {manifest.get('shuffle_seed', 0)}); a document's split (train or val) is a
hash of its URL.

## Versions

Each folder `vNNNN/` holds exactly one corpus version's shards (a shard reused unchanged from an earlier
version is a hard link) and its own `manifest.json` (files, documents, tokens, sha256). `LATEST` names the
current folder and `latest` links to it. `manifest.json` here indexes every version (the trainer reads it).

| version | train docs | train tokens | val docs | val tokens | added docs | removed docs | |
|---|---|---|---|---|---|---|---|
""" + "\n".join(rows) + f"""

## Loading

`TOKENS` is the path of this folder (a work directory's `tokens/`, or a copy of it).

```python
TOKENS = "path/to/tokens"
import datasets
ds = datasets.load_dataset(TOKENS)                   # the latest version: train and val
old = datasets.load_dataset(TOKENS, "{versions[0]['folder']}")        # a kept earlier version

import glob, pyarrow as pa
for path in sorted(glob.glob(f"{{TOKENS}}/{LINK}/train-*.arrow")):
    table = pa.ipc.open_file(pa.memory_map(path)).read_all()   # zero-copy

import numpy as np                                   # after `webtext shard --export nanogpt`
train = np.memmap(f"{{TOKENS}}/{export}", dtype=np.{dtype}, mode="r")
```

DuckDB does not read Arrow IPC files; for SQL, export the text release (`webtext export --format parquet OUT`).
`webtext train --corpus-version N` trains on version N; `webtext gc --keep N` removes all but the newest N
versions (never one a run under `runs/` was trained on, unless `--force`).
"""
    return "---\n" + yaml.safe_dump(card_yaml(manifest), sort_keys=False) + "---\n" + body


def write_card(tokens: Path, manifest: dict) -> Path:
    path = Path(tokens) / "README.md"
    write_text_if_changed(path, card_text(Path(tokens), manifest))
    return path

"""Token windows from ``tokens/`` Arrow shards, memory-mapped through the manifest.

All shards of a split are memory-mapped and their ``tokens`` values (uint16, documents
separated by EOT) concatenated logically. ``RandomWindows`` samples (B, T+1) windows at
uniformly random offsets with a seeded generator, as nanoGPT does; x is the first T
tokens and y the next T. Nothing is copied into RAM but the sampled batch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch

from pipeline.errors import MissingInputError


def read_manifest(tokens_dir: Path, verify: bool = True) -> dict:
    """``tokens/manifest.json``; with ``verify``, every shard's size and sha256 are checked
    against it first (a shard changed or truncated since ``webtext shard`` is an error)."""
    manifest_path = Path(tokens_dir) / "manifest.json"
    if not manifest_path.exists():
        raise MissingInputError(f"no {manifest_path}", "Run `webtext shard` first")
    manifest = json.loads(manifest_path.read_text())
    if verify:
        from stages.shard import verify_manifest

        bad = verify_manifest(Path(tokens_dir))
        if bad:
            raise MissingInputError(f"token shard(s) {', '.join(bad)} do not match the sha256 in {manifest_path}",
                                    "Rerun `webtext shard` (delete tokens/ first if the files were edited)")
    return manifest


def load_split(tokens_dir: Path, split: str, manifest: dict | None = None) -> list[np.ndarray]:
    """Zero-copy views (uint16, or uint32 for large vocabularies) of every non-empty shard
    of ``split``."""
    manifest = manifest or read_manifest(tokens_dir)
    arrays = []
    for shard in manifest["shards"]:
        if shard["split"] != split or shard["tokens"] == 0:
            continue
        reader = pa.ipc.open_file(pa.memory_map(str(Path(tokens_dir) / shard["file"]), "r"))
        for i in range(reader.num_record_batches):
            col = reader.get_batch(i).column("tokens")
            arrays.append(col.flatten().to_numpy(zero_copy_only=True))
    return [a for a in arrays if len(a)]


class RandomWindows:
    def __init__(self, arrays: list[np.ndarray], block_size: int, batch_size: int, seed: int):
        self.arrays = [a for a in arrays if len(a) > block_size + 1]
        if not self.arrays:
            total = sum(len(a) for a in arrays)
            raise MissingInputError(
                f"not enough tokens for one window of {block_size + 1} (have {total} in the largest shard set)",
                "Use a smaller --block-size or a larger corpus",
            )
        self.sizes = np.array([len(a) - block_size - 1 for a in self.arrays], dtype=np.float64)
        self.block_size, self.batch_size = block_size, batch_size
        self.rng = np.random.default_rng(seed)

    def state(self) -> dict:
        return self.rng.bit_generator.state

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        T = self.block_size
        shard = self.rng.choice(len(self.arrays), size=self.batch_size, p=self.sizes / self.sizes.sum())
        rows = []
        for s in shard:
            off = int(self.rng.integers(0, int(self.sizes[s]) + 1))
            rows.append(self.arrays[s][off:off + T + 1].astype(np.int64))
        xy = torch.from_numpy(np.stack(rows))
        return xy[:, :-1].contiguous(), xy[:, 1:].contiguous()

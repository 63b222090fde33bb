"""Run under torchrun by test_train.py: records which training windows this rank reads,
then runs the real CLI (`webtext train`) so that rank 0 and the others take their own
paths. Not a test module itself."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import webtext.model.data as D  # noqa: E402
import webtext.model.train as T  # noqa: E402

seen: list[tuple[int, int]] = []
train_arrays: list = []                 # the training sampler's shards (validation reads others)
_gather, _make_sampler = D._gather, T.make_sampler


def recording_make_sampler(kind, arrays, *args, **kw):
    train_arrays.append(arrays)
    return _make_sampler(kind, arrays, *args, **kw)


def recording_gather(arrays, which, starts, length):
    if any(arrays is a for a in train_arrays):
        seen.extend(zip(map(int, which), map(int, starts)))
    return _gather(arrays, which, starts, length)


D._gather = recording_gather
T.make_sampler = recording_make_sampler

from webtext.pipeline.cli import app  # noqa: E402

rank = int(os.environ["RANK"])
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    out = Path(os.environ["PROBE_OUT"]) / f"rank{rank}.json"
    out.write_text(json.dumps({"windows": seen, "world": int(os.environ["WORLD_SIZE"])}))

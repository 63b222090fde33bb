"""Run under torchrun by test_train.py: records which training windows this rank reads,
then runs the real CLI (`webtext train`) so that rank 0 and the others take their own
paths. Not a test module itself."""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import model.data as D  # noqa: E402
import model.train  # noqa: E402,F401  (binds its own _gather for validation first)

seen: list[tuple[int, int]] = []
_gather = D._gather


def recording_gather(arrays, which, starts, length):
    seen.extend(zip(map(int, which), map(int, starts)))
    return _gather(arrays, which, starts, length)


D._gather = recording_gather

from pipeline.cli import app  # noqa: E402

rank = int(os.environ["RANK"])
try:
    app(sys.argv[1:], standalone_mode=False)
finally:
    out = Path(os.environ["PROBE_OUT"]) / f"rank{rank}.json"
    out.write_text(json.dumps({"windows": seen, "world": int(os.environ["WORLD_SIZE"])}))

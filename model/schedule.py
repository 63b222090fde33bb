"""The learning-rate schedule: linear warmup, cosine decay, and what happens when a run's
``steps`` change.

Step s (0-based) trains at ``lr * (s + 1) / warmup_steps`` during warmup, then at
``min_lr + (lr - min_lr) * (1 + cos(pi * p)) / 2`` with p going from 0 at the end of
warmup to 1 at ``steps`` (nanoGPT's ``get_lr``).

Changing ``steps`` of a run that is past its warmup does not recompute that cosine over
the new length (which would jump the rate up: 12 -> 24 steps took a run from 3.0e-4 to
1.75e-3). The schedule continues from where it stands instead: from the step the run
resumes at, a new cosine from the rate that step had under the old schedule down to
``min_lr`` at the new ``steps``. The rate never rises across an extension; a run that had
finished (at ``min_lr``) continues at ``min_lr``. During warmup nothing has decayed yet,
so the warmup simply runs on into a cosine over the new length. Every change is kept in
the checkpoint (``segments``), so the rates of all past steps stay reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


def cosine(start: float, end: float, i: int, n: int) -> float:
    """From ``start`` at i = 0 to ``end`` at i = n (and after)."""
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * min(1.0, i / max(1, n))))


@dataclass
class Schedule:
    lr: float
    min_lr: float
    warmup_steps: int
    steps: int                      # the original length
    segments: list = field(default_factory=list)   # [from step, rate there, new end], one per change of steps

    @property
    def end(self) -> int:
        return self.segments[-1][2] if self.segments else self.steps

    def __call__(self, step: int) -> float:
        for start, rate, end in reversed(self.segments):
            if step >= start:
                return cosine(rate, self.min_lr, step - start, end - start)
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        return cosine(self.lr, self.min_lr, step - self.warmup_steps, self.steps - self.warmup_steps)

    def resize(self, at: int, steps: int) -> str | None:
        """The run, at step ``at``, now ends at ``steps``; returns what that does (None: no change)."""
        if steps == self.end:
            return None
        if not self.segments and at < self.warmup_steps:
            self.steps = steps
            return f"still warming up: the cosine now decays over {steps:,} steps"
        rate = self(at)
        self.segments.append([at, rate, steps])
        return (f"the learning rate continues from {rate:.2e} at step {at:,}, decaying to {self.min_lr:.2e} "
                f"at step {steps:,} (no new warmup)")

    def state(self) -> dict:
        return {"lr": self.lr, "min_lr": self.min_lr, "warmup_steps": self.warmup_steps, "steps": self.steps,
                "segments": [list(s) for s in self.segments]}

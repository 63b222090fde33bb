"""``runs/<name>/metrics.jsonl`` (or ``.csv``), and TensorBoard events when asked.

A line every ``log_every`` steps (``model.train``): step, loss, lr, grad norm, tokens/s
and MFU (training time only), val loss at evaluations, ``eval_s`` and ``ckpt_s`` (seconds
spent evaluating and checkpointing since the previous line) and ``elapsed_s``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from webtext.pipeline.config import TrainConfig
from webtext.pipeline.errors import ConfigError
from webtext.pipeline.io import atomic_path

CSV_FIELDS = ("step", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "val_loss", "eval_s", "ckpt_s", "elapsed_s")


class Metrics:
    """Rank 0's metrics sink: JSONL or CSV, plus TensorBoard when asked. On resume, rows
    past the checkpoint's step (written before a crash) are dropped first."""

    def __init__(self, run_dir: Path, cfg: TrainConfig, resume_step: int, enabled: bool):
        self.enabled = enabled
        self.path = run_dir / f"metrics.{cfg.metrics_format}"
        self.fmt, self.tb, self.f = cfg.metrics_format, None, None
        if not enabled:
            return
        if self.path.exists():
            self._truncate(resume_step)
        new = not self.path.exists() or self.path.stat().st_size == 0
        self.f = open(self.path, "a", newline="")
        if self.fmt == "csv":
            self.w = csv.DictWriter(self.f, CSV_FIELDS, extrasaction="ignore")
            if new:
                self.w.writeheader()
        if cfg.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("train.tensorboard = true needs the tensorboard package",
                                  "pip install tensorboard, or set tensorboard = false") from None
            self.tb = SummaryWriter(str(run_dir / "tensorboard"), purge_step=resume_step + 1)

    def _truncate(self, step: int) -> None:
        lines = self.path.read_text().splitlines(keepends=True)
        if self.fmt == "csv":
            keep = lines[:1] + [ln for ln in lines[1:] if ln.strip() and int(ln.split(",", 1)[0]) <= step]
        else:
            keep = [ln for ln in lines if ln.strip() and json.loads(ln)["step"] <= step]
        if len(keep) != len(lines):
            with atomic_path(self.path) as tmp:
                Path(tmp).write_text("".join(keep))

    def write(self, rec: dict) -> None:
        if not self.enabled:
            return
        if self.fmt == "csv":
            self.w.writerow(rec)
        else:
            self.f.write(json.dumps(rec) + "\n")
        self.f.flush()
        if self.tb:
            for k, v in rec.items():
                if k != "step" and v is not None:
                    self.tb.add_scalar(f"train/{k}", v, rec["step"])

    def close(self) -> None:
        if self.f:
            self.f.close()
        if self.tb:
            self.tb.close()

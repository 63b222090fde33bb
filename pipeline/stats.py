"""Counting what a stage keeps and drops.

Every record a stage reads ends up either in its output (``out``) or under exactly one
drop reason (``dropped[reason]``). ``info`` holds numbers that are not records (bytes,
tokens, parameters). Per-shard stats are merged into the stage's ``_meta/stats.json``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass(slots=True)
class Stats:
    records_in: int = 0
    records_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    info: dict = field(default_factory=dict)

    def drop(self, reason: str, n: int = 1) -> None:
        if n:
            self.dropped[reason] += n

    def add_info(self, key: str, value) -> None:
        """Sum numeric info values; keep the last value otherwise."""
        if isinstance(value, (int, float)) and isinstance(self.info.get(key), (int, float)):
            self.info[key] += value
        else:
            self.info[key] = value

    def to_dict(self) -> dict:
        return {
            "in": self.records_in,
            "out": self.records_out,
            "dropped": {k: v for k, v in sorted(self.dropped.items()) if v},
            "info": dict(sorted(self.info.items())),
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Stats":
        return cls(d.get("in", 0), d.get("out", 0), Counter(d.get("dropped", {})), dict(d.get("info", {})))

    def merge(self, other: "Stats") -> "Stats":
        self.records_in += other.records_in
        self.records_out += other.records_out
        self.dropped.update(other.dropped)
        for k, v in other.info.items():
            self.add_info(k, v)
        return self

    @property
    def unaccounted(self) -> int:
        """Records neither kept nor dropped under a reason; 0 for a correct stage."""
        return self.records_in - self.records_out - sum(self.dropped.values())

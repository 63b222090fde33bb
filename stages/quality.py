"""Extract's own line signals: short lines and boilerplate lines (rules ``short_lines`` and
``boilerplate_lines``, decided in ``stages.decide`` from these recorded shares).

In:  extracted texts. Out: ``compute(texts, short_line_words)`` -> ``{signal: [value per text]}``.

- ``short_line_share``: non-empty lines with fewer than ``short_line_words`` words (menus,
  link lists, tables of fragments). ``short_line_words`` is read when the signal is computed,
  so changing it means extracting again; the share's limit (``max_short_line_share``) is a
  rule threshold that ``webtext filter`` re-decides.
- ``boilerplate_line_share``: non-empty lines under 200 characters that name a cookie
  notice, a sign-up prompt, a copyright line and the like.

A text without a non-empty line has both shares at 1.0 (it fails ``short_lines``, as before).
The Gopher rules that lived here are ``stages.signals``' rules now.
"""

from __future__ import annotations

import re

import pyarrow as pa

_BOILERPLATE = re.compile(
    r"cookie|javascript|sign ?up|log ?in|subscribe|newsletter|all rights reserved|terms of (use|service)"
    r"|privacy policy|click here|read more|share this|follow us|advertisement",
    re.I,
)

FIELDS = [pa.field("short_line_share", pa.float64()), pa.field("boilerplate_line_share", pa.float64())]


def shares(text: str, short_line_words: int) -> tuple[float, float]:
    """(short_line_share, boilerplate_line_share) of one text."""
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return 1.0, 1.0
    k = short_line_words   # a line is short with under k words: split no further than k + 1 parts
    short = sum(1 for ln in lines if len(ln.split(None, k)) < k)
    boiler = sum(1 for ln in lines if len(ln) < 200 and _BOILERPLATE.search(ln))
    return short / len(lines), boiler / len(lines)


def compute(texts: list[str], short_line_words: int) -> dict[str, list[float]]:
    pairs = [shares(t, short_line_words) for t in texts]
    return {"short_line_share": [a for a, _ in pairs], "boilerplate_line_share": [b for _, b in pairs]}

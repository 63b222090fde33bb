"""Document quality filters for extract: each returns None to keep or a drop reason.

- ``short_lines``: more than ``max_short_line_share`` of the lines have fewer than
  ``short_line_words`` words (menus, link lists, tables of fragments).
- ``boilerplate_lines``: more than ``max_boilerplate_line_share`` of the lines are
  boilerplate (cookie notices, sign-up prompts, copyright lines, ...).
- Gopher rules (Rae et al. 2021), on when ``gopher`` is set: mean word length outside
  3-10 characters (``gopher_word_length``), more than 0.1 symbols ("#", "...") per word
  (``gopher_symbols``), fewer than 2 of the stop words the, be, to, of, and, that, have,
  with (``gopher_stopwords``).
"""

from __future__ import annotations

import re

_BOILERPLATE = re.compile(
    r"cookie|javascript|sign ?up|log ?in|subscribe|newsletter|all rights reserved|terms of (use|service)"
    r"|privacy policy|click here|read more|share this|follow us|advertisement",
    re.I,
)
_STOP = frozenset("the be to of and that have with".split())


def check(text: str, cfg) -> str | None:
    lines = [ln for ln in text.split("\n") if ln.strip()]
    if not lines:
        return "short_lines"
    k = cfg.short_line_words   # a line is short with under k words: split no further than k + 1 parts
    short = sum(1 for ln in lines if len(ln.split(None, k)) < k)
    if short / len(lines) > cfg.max_short_line_share:
        return "short_lines"
    boiler = sum(1 for ln in lines if len(ln) < 200 and _BOILERPLATE.search(ln))
    if boiler / len(lines) > cfg.max_boilerplate_line_share:
        return "boilerplate_lines"
    if cfg.gopher:
        return gopher(text)
    return None


def gopher(text: str) -> str | None:
    words = text.split()
    if not words:
        return "gopher_word_length"
    mean = len("".join(words)) / len(words)
    if not 3 <= mean <= 10:
        return "gopher_word_length"
    if (text.count("#") + text.count("...") + text.count("…")) / len(words) > 0.1:
        return "gopher_symbols"
    if len(_STOP.intersection(text.lower().split())) < 2:   # lowering never makes or removes a space
        return "gopher_stopwords"
    return None

"""Quality signals for a document's text, and named filter rules that read only those signals.

In:  extracted texts (``compute(texts)``).
Out: a pyarrow table, one row per text, one column per signal (``SCHEMA``); and, from
     ``apply(signals, settings)``, the drop reason per row (the name of the first failing
     enabled rule, or null to keep). ``apply`` never looks at text, so ``webtext filter`` can
     re-apply other thresholds to recorded signals without extracting again.

The signals follow the peers' definitions (Gopher: Rae et al. 2021, appendix A, table A1;
C4: Raffel et al. 2020 section 2.2 and TFDS ``c4_utils``; FineWeb: Penedo et al. 2024, as
implemented in datatrove's ``gopher_quality_filter``, ``gopher_repetition_filter``,
``c4_filters`` and ``fineweb_quality_filter``), with these deliberate differences:

- Words are whitespace tokens, not NLTK tokens (NLTK costs more than the whole extraction).
  Where datatrove drops pure-punctuation tokens (word count, mean word length, stop words) we
  strip leading and trailing punctuation from each token and drop tokens left empty; the
  n-gram signals use the tokens as they are. ``symbol_word_ratio`` and ``alpha_word_share``
  divide by the number of whitespace tokens.
- Stop words are matched lowercased (datatrove is case-sensitive, so "The" does not count);
  ``stopword_count`` is the number of distinct stop words present (0 to 8), as in datatrove.
- C4 counts sentences by terminal punctuation followed by space or end of line (at least one
  per kept line), not with NLTK's punkt.
- FineWeb's terminal punctuation is Unicode's sentence terminators; we list the common ones
  (``_SENTENCE_END``): the ASCII ones, ``. ! ?``, are the same.

Signals (floats are shares in [0, 1] unless said; ints are counts):

=====================  =====================================================================
word_count             words with a non-punctuation character (Gopher)
mean_word_length       mean length of those words, punctuation stripped (Gopher)
symbol_word_ratio      max("#" per word, "..."/"…" per word) (Gopher: "either the hash or
                       the ellipsis"); ``hash_word_ratio`` and ``ellipsis_word_ratio`` apart
stopword_count         distinct Gopher stop words (the be to of and that have with) present
bullet_line_share      lines (``str.splitlines``) starting with "•" or "-" after left strip
ellipsis_line_share    lines ending with "..." or "…" after right strip
alpha_word_share       words with at least one alphabetic character
line_count, para_count lines split on runs of "\\n"; paragraphs split on "\\n\\n+" (Gopher)
dup_line_frac          duplicate lines / lines; ``dup_para_frac`` the same for paragraphs
dup_line_char_frac     characters in duplicate lines / characters of the text (paragraphs too)
top_{2,3,4}gram_frac   characters of the most frequent n-gram (joined by spaces) times its
                       count / characters of the text
dup_{5..10}gram_frac   characters of words in duplicated n-grams, counted once per word
                       (greedy scan that skips a found duplicate) / characters of the text
c4_line_count          non-empty lines; the C4 line filters then count, in TFDS's order:
                       ``c4_long_word_lines`` (a word over 1,000 characters),
                       ``c4_no_punct_lines`` (no terminal . ? ! " ' or ends in "..."),
                       ``c4_few_words_lines`` (under 3 words), ``c4_javascript_lines``,
                       ``c4_policy_lines`` (terms of use, privacy policy, cookie policy, uses
                       cookies, use of cookies, use cookies), and keep ``c4_kept_lines``
c4_kept_line_share     c4_kept_lines / c4_line_count (1 - the share C4 removes)
c4_punct_line_share    non-empty lines ending in C4's terminal punctuation, citations removed
c4_lorem_ipsum         1 if "lorem ipsum" is in a line that passed punctuation and words
c4_curly_brace         1 if "{" is in such a line that does not mention javascript
c4_sentence_count      sentences in the lines C4 keeps
line_punct_ratio       non-empty lines ending in a sentence terminator (FineWeb)
short_line_ratio       non-empty lines of at most 30 characters (FineWeb)
char_dup_ratio         characters in duplicate non-empty lines / characters without "\\n"
newline_word_ratio     "\\n" per word (FineWeb's later "list ratio")
=====================  =====================================================================

Run ``python benchmarks/filter_rules.py`` for each rule's rejection rate on real pages.
"""

from __future__ import annotations

import math
import re
import string
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from webtext.pipeline.errors import ConfigError

_PUNCT = string.punctuation + "“”‘’«»„‚–—…•·‹›¿¡、。，；：！？（）【】「」《》"
_STOP = frozenset("the be to of and that have with".split())
_ALPHA = re.compile(r"[^\W\d_]")
_PARA_SPLIT = re.compile(r"\n{2,}")
_LINE_SPLIT = re.compile(r"\n+")
_C4_END = (".", "?", "!", '"', "'")
_C4_CITATION = re.compile(r"\[\d*\]|\[edit\]|\[citation needed\]")
_C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")
_C4_SENTENCE = re.compile(r"[.!?]+[\"')\]]*(?:\s|$)")
_SENTENCE_END = tuple(".!?։؟۔।॥။።‼‽⁇⁈⁉。！？．｡")
_HASH_MUL = np.uint64(0x9E3779B97F4A7C15)     # odd 64-bit multiplier for the n-gram hashes

_INT = ["word_count", "stopword_count", "line_count", "para_count", "c4_line_count", "c4_long_word_lines",
        "c4_no_punct_lines", "c4_few_words_lines", "c4_javascript_lines", "c4_policy_lines", "c4_kept_lines",
        "c4_lorem_ipsum", "c4_curly_brace", "c4_sentence_count"]
_FLOAT = ["mean_word_length", "hash_word_ratio", "ellipsis_word_ratio", "symbol_word_ratio", "bullet_line_share",
          "ellipsis_line_share", "alpha_word_share", "dup_line_frac", "dup_para_frac", "dup_line_char_frac",
          "dup_para_char_frac", *(f"top_{n}gram_frac" for n in (2, 3, 4)),
          *(f"dup_{n}gram_frac" for n in range(5, 11)), "c4_kept_line_share", "c4_punct_line_share",
          "line_punct_ratio", "short_line_ratio", "char_dup_ratio", "newline_word_ratio"]
# float64, not float32: a share of exactly 0.3 must compare equal to a threshold of 0.3
SCHEMA = pa.schema([*(pa.field(c, pa.int32()) for c in _INT), *(pa.field(c, pa.float64()) for c in _FLOAT)])


def compute(texts: list[str]) -> pa.Table:
    """One row of signals (``SCHEMA``) per text."""
    cols: dict[str, list] = {name: [] for name in SCHEMA.names}
    for text in texts:
        for name, value in one(text).items():
            cols[name].append(value)
    return pa.table(cols, schema=SCHEMA)


def one(text: str) -> dict[str, float]:
    """The signals of one text, as a dict in ``SCHEMA`` order."""
    s: dict[str, float] = {}
    tokens = text.split()
    n_tok = len(tokens)
    stripped = [w for w in (t.strip(_PUNCT) for t in tokens) if w]
    s["word_count"] = len(stripped)
    s["stopword_count"] = len(_STOP.intersection(w.lower() for w in stripped))
    s.update(_repetition_counts(text))
    s.update(_c4(text))
    n_hash, n_ell = text.count("#"), text.count("...") + text.count("…")
    lines = text.splitlines()
    s["mean_word_length"] = sum(map(len, stripped)) / len(stripped) if stripped else 0.0
    s["hash_word_ratio"] = n_hash / n_tok if n_tok else 0.0
    s["ellipsis_word_ratio"] = n_ell / n_tok if n_tok else 0.0
    s["symbol_word_ratio"] = max(s["hash_word_ratio"], s["ellipsis_word_ratio"])
    s["bullet_line_share"] = _share(sum(1 for ln in lines if ln.lstrip().startswith(("•", "-"))), len(lines))
    s["ellipsis_line_share"] = _share(sum(1 for ln in lines if ln.rstrip().endswith(("...", "…"))), len(lines))
    s["alpha_word_share"] = _share(sum(1 for t in tokens if _ALPHA.search(t)), n_tok)
    s.update(_repetition_fracs(text, tokens))
    s.update(_fineweb(text, n_tok))
    return {name: s[name] for name in SCHEMA.names}


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _duplicates(items: list[str]) -> tuple[int, int]:
    """(duplicate items, characters in them): every occurrence after the first counts."""
    seen: set[str] = set()
    n = chars = 0
    for x in items:
        if x in seen:
            n += 1
            chars += len(x)
        else:
            seen.add(x)
    return n, chars


def _repetition_counts(text: str) -> dict[str, int]:
    paras = _PARA_SPLIT.split(text.strip())
    return {"line_count": len(_LINE_SPLIT.split(text)), "para_count": len(paras)}


def _repetition_fracs(text: str, words: list[str]) -> dict[str, float]:
    """Gopher's repetition signals (table A1): duplicate lines and paragraphs, top and
    duplicated n-grams, each as a fraction of the text's characters."""
    out: dict[str, float] = {}
    size = len(text)
    paras = _PARA_SPLIT.split(text.strip())
    lines = _LINE_SPLIT.split(text)
    for key, items in (("para", paras), ("line", lines)):
        n, chars = _duplicates(items)
        out[f"dup_{key}_frac"] = _share(n, len(items))
        out[f"dup_{key}_char_frac"] = _share(chars, size)
    # n-grams as 64-bit hashes over word hashes: g_n[i] = g_{n-1}[i] * M + h[i + n - 1]
    length = len(words)
    h = np.fromiter((hash(w) for w in words), dtype=np.int64, count=length).view(np.uint64)
    ends = np.zeros(length + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, words), dtype=np.int64, count=length), out=ends[1:])
    g = h
    for n in range(1, 11):
        if n > 1:
            g = g[:-1] * _HASH_MUL + h[n - 1:] if len(g) > 1 else g[:0]
        if n < 2:
            continue
        key = f"top_{n}gram_frac" if n <= 4 else f"dup_{n}gram_frac"
        if len(g) == 0 or size == 0:
            out[key] = 0.0
            continue
        chars = ends[n:] - ends[:-n]                     # characters of the words of each n-gram
        _, first, inverse, counts = np.unique(g, return_index=True, return_inverse=True, return_counts=True)
        if n <= 4:                                       # the most frequent n-gram; ties: first seen
            top = counts.max()
            i = first[counts == top].min()
            out[key] = (int(chars[i]) + n - 1) * int(top) / size
        else:
            out[key] = _dup_ngram_chars(g, chars, counts[inverse] > 1, n) / size
    return out


def _dup_ngram_chars(g: np.ndarray, chars: np.ndarray, repeated: np.ndarray, n: int) -> int:
    """Gopher's duplicated n-gram characters: scan left to right; an n-gram seen before adds
    its characters and the scan jumps past it (its words count once); skipped n-grams are not
    remembered. Only n-grams that occur more than once can matter, so only those are visited."""
    seen: set[int] = set()
    total, resume = 0, 0
    for i in np.flatnonzero(repeated).tolist():
        if i < resume:
            continue
        key = int(g[i])
        if key in seen:
            total += int(chars[i])
            resume = i + n
        else:
            seen.add(key)
    return total


def _c4(text: str) -> dict[str, int | float]:
    """C4's line filters in TFDS's order (each line counted by the first that removes it)."""
    c = dict.fromkeys(("c4_line_count", "c4_long_word_lines", "c4_no_punct_lines", "c4_few_words_lines",
                       "c4_javascript_lines", "c4_policy_lines", "c4_kept_lines", "c4_lorem_ipsum",
                       "c4_curly_brace", "c4_sentence_count"), 0)
    punct = 0
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        c["c4_line_count"] += 1
        words = line.split()
        if "[" in line:                                  # citations go before the punctuation test
            line = _C4_CITATION.sub("", line)
        ends_ok = line.endswith(_C4_END) and not line.endswith("...")
        punct += ends_ok
        if any(len(w) > 1000 for w in words):
            c["c4_long_word_lines"] += 1
            continue
        if not ends_ok:
            c["c4_no_punct_lines"] += 1
            continue
        if len(words) < 3:
            c["c4_few_words_lines"] += 1
            continue
        low = line.lower()
        if "lorem ipsum" in low:
            c["c4_lorem_ipsum"] = 1
        if "javascript" in low:
            c["c4_javascript_lines"] += 1
            continue
        if "{" in line:
            c["c4_curly_brace"] = 1
        if any(p in low for p in _C4_POLICY):
            c["c4_policy_lines"] += 1
            continue
        c["c4_kept_lines"] += 1
        c["c4_sentence_count"] += max(1, len(_C4_SENTENCE.findall(line)))
    c["c4_kept_line_share"] = _share(c["c4_kept_lines"], c["c4_line_count"])
    c["c4_punct_line_share"] = _share(punct, c["c4_line_count"])
    return c


def _fineweb(text: str, n_words: int) -> dict[str, float]:
    lines = [ln for ln in text.split("\n") if ln.strip()]
    n = len(lines)
    _, dup_chars = _duplicates(lines)
    return {
        "line_punct_ratio": _share(sum(1 for ln in lines if ln.endswith(_SENTENCE_END)), n),
        "short_line_ratio": _share(sum(1 for ln in lines if len(ln) <= 30), n),
        "char_dup_ratio": _share(dup_chars, len(text) - text.count("\n")),
        "newline_word_ratio": _share(text.count("\n"), n_words),
    }


# ---------------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class Rule:
    """Drop a document when its ``signal`` is below ``min`` or above ``max`` (None: no bound).
    ``limits`` is the range a threshold may be set to; ``peer`` says, where the default differs
    from the peers (off, or another threshold), their setting and what it rejects."""

    name: str
    signal: str
    min: float | None = None
    max: float | None = None
    enabled: bool = True
    limits: tuple[float, float] = (0.0, 1.0)
    peer: str = ""

    def drops(self, values: np.ndarray) -> np.ndarray:
        out = np.zeros(len(values), dtype=bool)
        if self.min is not None:
            out |= values < self.min
        if self.max is not None:
            out |= values > self.max
        return out


_COUNT = (0.0, math.inf)
_JS_CODE = "real articles about programming mention it and show code"
# In order: the first failing enabled rule names the drop. Defaults chosen by measurement on
# the 185 English pages of trafilatura's evaluation set (benchmarks/results/filter_rules.txt):
# a rule that rejects over 2% of them at the peers' threshold is off or loosened, and the
# enabled set together keeps at least 98% of them. ``peer`` holds the peers' setting where the
# default differs, with the share of real English pages it rejects there.
RULES: dict[str, Rule] = {r.name: r for r in [
    Rule("gopher_word_count", "word_count", min=50, max=100_000, enabled=False, limits=_COUNT,
         peer="on: 1.6%, all three under 50 words are failed extractions, which extract's min_words "
              "(100) drops before these rules see them"),
    Rule("gopher_mean_word_length", "mean_word_length", min=3, max=10, limits=(0.0, 1000.0)),
    Rule("gopher_symbol_ratio", "symbol_word_ratio", max=0.1, limits=_COUNT),
    Rule("gopher_bullet_lines", "bullet_line_share", max=0.9),
    Rule("gopher_ellipsis_lines", "ellipsis_line_share", max=0.5,
         peer="0.3: 0.5%, a 95-word page of truncated reviews"),
    Rule("gopher_alpha_words", "alpha_word_share", min=0.6,
         peer="0.8: 3.2%, recipes, a game wiki's tables, numbers-heavy articles"),
    Rule("gopher_stopwords", "stopword_count", min=2, limits=(0.0, 8.0)),
    Rule("gopher_dup_line_frac", "dup_line_frac", max=0.30, enabled=False,
         peer="on: 2.2%, short repeated lines (a recipe's ingredient list given twice)"),
    Rule("gopher_dup_para_frac", "dup_para_frac", max=0.30),
    Rule("gopher_dup_line_char_frac", "dup_line_char_frac", max=0.30,
         peer="0.2: 1.6%, a recipe whose ingredient list is extracted twice (0.22)"),
    Rule("gopher_dup_para_char_frac", "dup_para_char_frac", max=0.20),
    Rule("gopher_top_2gram", "top_2gram_frac", max=0.20),
    Rule("gopher_top_3gram", "top_3gram_frac", max=0.18),
    Rule("gopher_top_4gram", "top_4gram_frac", max=0.25, peer="0.16: 1.1%, a 24-word photo caption"),
    *(Rule(f"gopher_dup_{n}gram", f"dup_{n}gram_frac", max=round(0.15 - 0.01 * (n - 5), 2), enabled=False,
           peer="on: 2.7-3.2%, an article body extracted twice, per-item boilerplate, wiki tables")
      for n in range(5, 11)),
    Rule("c4_terminal_punct", "c4_punct_line_share", min=0.5, enabled=False,
         peer="on: 30%, headings, captions and bylines are lines without terminal punctuation"),
    Rule("c4_sentences", "c4_sentence_count", min=5, limits=_COUNT, enabled=False,
         peer="on: 9.2%, short news items"),
    Rule("c4_javascript", "c4_javascript_lines", max=0, limits=_COUNT, enabled=False, peer=f"on: 1.6%, {_JS_CODE}"),
    Rule("c4_lorem_ipsum", "c4_lorem_ipsum", max=0),
    Rule("c4_curly_brace", "c4_curly_brace", max=0, enabled=False, peer=f"on: 0.5%, {_JS_CODE}"),
    Rule("c4_policy", "c4_policy_lines", max=0, limits=_COUNT, enabled=False,
         peer="on: 2.2%, one privacy-policy line in an article's footer"),
    Rule("fineweb_line_punct", "line_punct_ratio", min=0.12, enabled=False,
         peer="on: 8.1%, lists, recipes and tables of short lines"),
    Rule("fineweb_short_lines", "short_line_ratio", max=0.67, enabled=False, peer="on: 1.1%, recipes and lists"),
    Rule("fineweb_char_dup", "char_dup_ratio", max=0.01, enabled=False,
         peer="on: 9.7%, one repeated line (a newsletter prompt, a caption) is enough"),
    Rule("fineweb_list_ratio", "newline_word_ratio", max=0.3, limits=_COUNT),
]}


def rules(settings: dict[str, dict] | None = None) -> list[Rule]:
    """``RULES`` with ``settings`` applied: ``{name: {"enabled": bool, "min": x, "max": x,
    "threshold": x}}`` (``threshold`` sets a one-sided rule's only bound). Raises ConfigError
    on an unknown rule or key, or a threshold outside the rule's limits."""
    out = dict(RULES)
    for name, over in (settings or {}).items():
        rule = RULES.get(name)
        if rule is None:
            raise ConfigError(f"unknown filter rule {name!r}", f"known rules: {', '.join(RULES)}")
        if not isinstance(over, dict):
            raise ConfigError(f"filter rule {name!r} takes a table of settings, not {over!r}",
                              'e.g. {"enabled": true, "threshold": 0.3}')
        changes: dict = {}
        for key, value in over.items():
            if key == "enabled":
                if not isinstance(value, bool):
                    raise ConfigError(f"filter rule {name!r}: enabled must be true or false, not {value!r}")
                changes["enabled"] = value
                continue
            if key == "threshold":
                if (rule.min is None) == (rule.max is None):
                    raise ConfigError(f"filter rule {name!r} has two bounds", "set min and max instead of threshold")
                key = "min" if rule.min is not None else "max"
            if key not in ("min", "max"):
                raise ConfigError(f"filter rule {name!r} has no setting {key!r}", "use enabled, min, max or threshold")
            lo, hi = rule.limits
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
                raise ConfigError(f"filter rule {name!r}: {key} = {value!r} is outside [{lo}, {hi}]")
            changes[key] = float(value)
        out[name] = replace(rule, **changes)
    return list(out.values())


def apply(signals: pa.Table, settings: dict[str, dict] | None = None) -> pa.Array:
    """The drop reason per row (the first failing enabled rule's name), null to keep."""
    active = [r for r in rules(settings) if r.enabled]
    first = np.full(signals.num_rows, -1, dtype=np.int64)
    for i, rule in enumerate(active):
        if rule.signal not in signals.column_names:
            raise ConfigError(f"filter rule {rule.name!r} reads signal {rule.signal!r}, which these signals lack",
                              "recompute the signals (extract again) or disable the rule")
        values = signals.column(rule.signal).to_numpy(zero_copy_only=False).astype(np.float64)
        hit = rule.drops(values) & (first < 0)
        first[hit] = i
    names = np.array([r.name for r in active] + [None], dtype=object)
    return pa.array(names[first], type=pa.string())   # index -1 picks the trailing None


def reasons_count(reasons: pa.Array) -> dict[str, int]:
    """{reason: documents} for the dropped rows, plus "kept"."""
    out = {"kept": reasons.null_count}
    vc = reasons.drop_null().value_counts()
    for item in vc.to_pylist():
        out[item["values"]] = item["counts"]
    return out

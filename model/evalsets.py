"""The GPT-2 paper's evaluation sets as text to score: detokenizers and unit counts.

In: a ``Benchmark`` (a file in its publisher's format, see data/benchmarks.toml).
Out: an ``LMText`` for the perplexity / bits-per-character sets: the detokenized text in
pieces (one per line of the file), each with the number of *units* the publishers (and
the paper) count for it, so the score is normalized per original unit whatever the
tokenizer and whatever prefix ``--limit`` keeps:

- word-level sets (WikiText-2/103, PTB, One Billion Word): a line's words
  (whitespace-separated tokens of the original file) plus one ``<eos>`` for the line
  break, which the model is scored on as ``"\\n"``. WikiText-2 test: 241,211 words +
  4,358 lines = 245,569; PTB test: 78,669 + 3,761 = 82,430 (the standard counts).
- enwik8: bytes of the test split (its last 5M bytes); text8: characters (its last 5M).

Detokenizers undo the sets' tokenization so the text looks like what GPT-2 read on the
web (the paper's "invertible de-tokenizers" were not published; these rule lists follow
the common ones of Megatron-LM and lm-evaluation-harness). They work line by line and
keep every line, so the unit count per piece stays exact. ``<unk>`` and PTB's ``N`` are
kept as literal text (the paper did the same: they are in the original test sets).
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

from webtext.pipeline.errors import ConfigError
from webtext.stages.benchmarks import TEST_TAIL, Benchmark, read_tail

_CLITICS = re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d|')(?=\s|$)", re.I)
_NO_SPACE_BEFORE = re.compile(r" ([,.;:!?%)\]}])")
_NO_SPACE_AFTER = re.compile(r"([(\[{$]) (?=\S)")
_QUOTES = re.compile(r'" ([^"]*?) "')
_HEADING = re.compile(r"^((?:= )+)(.*?)((?: =)+)$")


def _common(s: str) -> str:
    s = _CLITICS.sub(r"\1", s)
    s = _QUOTES.sub(r'"\1"', s)
    s = _NO_SPACE_BEFORE.sub(r"\1", s)
    return _NO_SPACE_AFTER.sub(r"\1", s)


def detokenize_wikitext(text: str) -> str:
    """WikiText (``wiki.test.tokens`` or ``.raw``), line by line: ``@-@ @,@ @.@`` joined,
    ``= = x = =`` -> ``== x ==``, no space before ``, . ; : ! ? % ) ]`` or inside quotes
    and brackets, clitics rejoined, each line stripped."""
    out = []
    for line in text.split("\n"):
        s = line.strip().replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
        m = _HEADING.match(s)
        if m:
            s = "=" * m.group(1).count("=") + " " + m.group(2).strip() + " " + "=" * m.group(3).count("=")
        else:
            s = _common(s)
        out.append(s)
    return "\n".join(out)


def detokenize_ptb(text: str) -> str:
    """PTB (Mikolov's lowercased ``ptb.test.txt``) and other PTB-style tokenized text
    (One Billion Word, CBT): ``\\/`` -> ``/``, ````` and ``''`` -> ``"``, clitics rejoined
    (``do n't`` -> ``don't``), no space before punctuation or inside quotes and brackets,
    ``$ 5`` -> ``$5``, each line stripped."""
    out = []
    for line in text.split("\n"):
        s = " " + line.strip().replace("\\/", "/").replace("``", '"').replace("''", '"') + " "
        out.append(_common(" ".join(s.split())).strip())
    return "\n".join(out)


DETOKENIZERS = {"wikitext": detokenize_wikitext, "wikitext-tokens": detokenize_wikitext,
                "ptb": detokenize_ptb, "1bw": detokenize_ptb, "lines": lambda s: s}


@dataclass(slots=True)
class LMText:
    """A perplexity set: detokenized pieces (one per line, with its ``\\n``) and the
    publisher's units in each (see the module docstring)."""
    pieces: list[str]
    units: list[int]
    unit: str                     # "word" | "byte" | "char"
    _ends: list[int] = field(init=False, repr=False)   # cumulative characters, for units_in_prefix

    def __post_init__(self):
        self._ends = []
        total = 0
        for p in self.pieces:
            total += len(p)
            self._ends.append(total)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def total_units(self) -> int:
        return sum(self.units)

    def units_in_prefix(self, chars: int) -> int:
        """Units of the first ``chars`` characters of ``text``: every whole piece, and the
        part of the last one pro rata by characters (``--limit`` cuts mid-line)."""
        k = bisect.bisect_right(self._ends, chars)
        done = sum(self.units[:k])
        if k < len(self.pieces) and self.pieces[k]:
            start = self._ends[k - 1] if k else 0
            done += round(self.units[k] * (chars - start) / len(self.pieces[k]))
        return done


def lm_text(b: Benchmark, tail: int = TEST_TAIL) -> LMText:
    """The scored text of a perplexity or bits-per-character set (one-line error for a
    format that is not one)."""
    if b.format == "enwik8":
        data = read_tail(b.path, "enwik8", tail)
        chunks = data.split(b"\n")
        raw = [c + b"\n" for c in chunks[:-1]] + ([chunks[-1]] if chunks[-1] else [])
        # A split that starts inside a UTF-8 character scores its bytes as U+FFFD.
        return LMText([c.decode("utf-8", errors="replace") for c in raw], [len(c) for c in raw], "byte")
    if b.format == "text8":
        text = read_tail(b.path, "text8", tail)
        return LMText([text], [len(text)], "char")
    if b.format not in DETOKENIZERS:
        raise ConfigError(f"benchmark {b.name} has format {b.format}; perplexity reads "
                          f"{', '.join([*DETOKENIZERS, 'enwik8', 'text8'])}")
    lines = b.path.read_text(encoding="utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()               # the file's final newline ends its last line
    detok = DETOKENIZERS[b.format]("\n".join(lines)).split("\n")
    assert len(detok) == len(lines)
    return LMText([d + "\n" for d in detok], [len(x.split()) + 1 for x in lines], "word")


def fill(question: str, candidate: str) -> tuple[str, str]:
    """A CBT question with ``candidate`` in place of ``XXXXX``, cut into (the text before
    the choice, the choice and the rest of the sentence); the space before the choice
    goes with the choice, as GPT-2's tokens carry their leading space."""
    before, _, after = question.partition("XXXXX")
    head = before.rstrip(" ")
    return head, before[len(head):] + candidate + after

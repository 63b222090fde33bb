"""Benchmark test sets for decontamination: a registry of names, and loaders per format.

``data/benchmarks.toml`` names the sets webtext knows (LAMBADA, WikiText-2 raw and
tokenized, PTB, WSC273 as XML or jsonl); its ``[eval.NAME]`` tables add the rest of the
GPT-2 paper's Table 3 and HellaSwag (``load_registry(evalsets=True)``, as ``webtext eval``
reads it). ``[decontaminate] registry`` adds a file of the same shape, so a user adds a
benchmark without code. A ``benchmarks`` entry is a
registry name, a file path (format by extension: ``.jsonl`` -> ``text`` field,
``.xml`` -> wsc-xml, ``.tokens`` -> wikitext-tokens, else the whole file), or
``PATH.jsonl:FIELD``.

Loaders yield *segments*: pieces of text that n-grams may span. A record (a passage, an
article, a sentence) is one segment, cut where a test set hides a word (``<unk>``, PTB's
number token ``N``), so no n-gram pretends to know the hidden word.
"""

from __future__ import annotations

import json
import re
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from webtext.pipeline.errors import ConfigError, MissingInputError

REGISTRY = Path(__file__).resolve().parent.parent / "data" / "benchmarks.toml"
FORMATS = ("jsonl", "text", "lines", "wikitext", "wikitext-tokens", "ptb", "wsc-xml",
           "1bw", "enwik8", "text8", "cbt", "hellaswag")
TEST_TAIL = 5_000_000      # enwik8 / text8: the test split is the last 5M bytes / characters


@dataclass(frozen=True)
class Benchmark:
    name: str
    path: Path
    format: str
    field: str = "text"


def load_registry(extra: str | None = None, evalsets: bool = False) -> dict[str, dict]:
    """Registry name -> {file, format, field}; ``[eval.NAME]`` tables only with ``evalsets``."""
    reg = tomllib.loads(REGISTRY.read_text(encoding="utf-8"))
    more = reg.pop("eval", {})
    if extra:
        p = Path(extra)
        if not p.is_file():
            raise MissingInputError(f"benchmark registry {p} not found", "Check [decontaminate] registry")
        try:
            user = tomllib.loads(p.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"benchmark registry {p}: {e}") from None
        more.update(user.pop("eval", {}))
        reg.update(user)
    if evalsets:
        reg.update(more)
    for name, spec in reg.items():
        if not isinstance(spec, dict) or "file" not in spec or spec.get("format", "text") not in FORMATS:
            raise ConfigError(f"benchmark registry entry [{name}] needs file = ... and a format of "
                              f"{', '.join(FORMATS)}")
    return reg


def resolve(entry: str, base_dir: str, registry: dict[str, dict]) -> Benchmark:
    """A ``benchmarks`` entry -> a Benchmark whose file exists (or a one-line error)."""
    if entry in registry:
        spec = registry[entry]
        path = Path(base_dir) / spec["file"]
        b = Benchmark(entry, path, spec.get("format", "text"), spec.get("field", "text"))
        hint = f"[{entry}] in the benchmark registry expects it under benchmark_dir = {base_dir!r}"
    else:
        raw, fld = entry, "text"
        m = re.fullmatch(r"(.+\.jsonl):(\w+)", entry)
        if m:
            raw, fld = m.groups()
        path = Path(raw)
        fmt = {".jsonl": "jsonl", ".xml": "wsc-xml", ".tokens": "wikitext-tokens"}.get(path.suffix, "text")
        b = Benchmark(path.stem, path, fmt, fld)
        hint = f"Use a registry name ({', '.join(sorted(registry))}) or a path to a test set"
    if not b.path.is_file():
        raise MissingInputError(f"benchmark file {b.path} not found", hint)
    return b


_HIDDEN_TOKENS = re.compile(r"<unk>")
_HIDDEN_PTB = re.compile(r"<unk>|(?<!\S)N(?!\S)")
_WIKI_HEADING = re.compile(r"^ = [^=].* = $")


def segments(b: Benchmark) -> Iterator[str]:
    """The benchmark's text pieces (see the module docstring); malformed input is a
    one-line error naming the file and line."""
    if b.format == "jsonl":
        with b.path.open(encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                if not line.strip():
                    continue
                try:
                    yield str(json.loads(line)[b.field])
                except (ValueError, KeyError, TypeError):
                    raise MissingInputError(f"{b.path}:{n} is not JSON with a '{b.field}' field") from None
    elif b.format == "text":
        yield b.path.read_text(encoding="utf-8", errors="replace")
    elif b.format in ("enwik8", "text8"):
        yield read_tail(b.path, b.format)
    elif b.format == "cbt":
        for ex in read_cbt(b.path):
            yield from _cut(" ".join(ex.context) + " " + ex.question, re.compile("XXXXX"))
    elif b.format == "hellaswag":
        for ex in read_hellaswag(b.path):
            yield ex.context + " " + ex.endings[ex.label]
    elif b.format in ("lines", "ptb", "1bw"):
        with b.path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                yield from _cut(line, _HIDDEN_PTB if b.format == "ptb" else None)
    elif b.format in ("wikitext", "wikitext-tokens"):
        article: list[str] = []
        with b.path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                if _WIKI_HEADING.match(line.rstrip("\n")) and article:
                    yield from _cut("".join(article), _HIDDEN_TOKENS if b.format == "wikitext-tokens" else None)
                    article = []
                article.append(line)
        if article:
            yield from _cut("".join(article), _HIDDEN_TOKENS if b.format == "wikitext-tokens" else None)
    elif b.format == "wsc-xml":
        try:
            root = ET.parse(b.path).getroot()
        except ET.ParseError as e:
            raise MissingInputError(f"{b.path} is not WSC XML: {e}") from None
        for schema in root.iter("schema"):
            t = schema.find("text")
            if t is not None:
                yield " ".join(" ".join((x.text or "") for x in t).split())


def _cut(text: str, hidden: re.Pattern | None) -> Iterator[str]:
    if hidden is None:
        yield text
    else:
        yield from (piece for piece in hidden.split(text) if piece.strip())


@dataclass(slots=True)
class Cloze:
    """A Children's Book Test example: 20 context sentences, a question with ``XXXXX``
    where a word was removed, the answer and the 10 candidates (the answer among them)."""
    context: list[str]
    question: str
    answer: str
    candidates: list[str]


@dataclass(slots=True)
class Choice:
    """A HellaSwag example: a context and 4 endings, ``label`` the right one."""
    context: str
    endings: list[str]
    label: int


def read_tail(path: Path, fmt: str, tail: int = TEST_TAIL) -> str | bytes:
    """enwik8's test split as bytes (its last ``tail`` bytes) or text8's as text (its last
    ``tail`` characters; text8 is ASCII, one line)."""
    if fmt == "enwik8":
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - tail))
            return f.read()
    return path.read_text(encoding="utf-8", errors="replace")[-tail:]


def read_cbt(path: Path) -> Iterator[Cloze]:
    """``cbtest_{CN,NE}_test_2500ex.txt``: examples of 21 numbered lines ("1 ..." to "20 ..."
    context, then "21 question<TAB>answer<TAB><TAB>c1|c2|...|c10"), a blank line between."""
    lines: list[str] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            num, _, body = line.partition(" ")
            if not num.isdigit():
                raise MissingInputError(f"{path}:{n} is not a numbered CBT line")
            if num != "21":
                lines.append(body)
                continue
            parts = body.split("\t")
            if len(parts) < 4 or "XXXXX" not in parts[0] or len(lines) != 20:
                raise MissingInputError(f"{path}:{n} is not a CBT question line (question, answer, "
                                        "candidates separated by tabs, after 20 context lines)")
            cands = [c for c in parts[-1].split("|") if c]
            yield Cloze(lines, parts[0], parts[1], cands)
            lines = []


def read_hellaswag(path: Path) -> Iterator[Choice]:
    """``hellaswag_val.jsonl``: one JSON object a line with ``ctx``, ``endings`` (4) and ``label``."""
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                yield Choice(str(d["ctx"]), [str(e) for e in d["endings"]], int(d["label"]))
            except (ValueError, KeyError, TypeError):
                raise MissingInputError(f"{path}:{n} is not a HellaSwag record (ctx, endings, label)") from None

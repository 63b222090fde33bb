"""Benchmark test sets for decontamination: a registry of names, and loaders per format.

``data/benchmarks.toml`` names the sets webtext knows (LAMBADA, WikiText-2 raw and
tokenized, PTB, WSC273 as XML or jsonl); ``[decontaminate] registry`` adds a file of the
same shape, so a user adds a benchmark without code. A ``benchmarks`` entry is a
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
FORMATS = ("jsonl", "text", "lines", "wikitext", "wikitext-tokens", "ptb", "wsc-xml")


@dataclass(frozen=True)
class Benchmark:
    name: str
    path: Path
    format: str
    field: str = "text"


def load_registry(extra: str | None = None) -> dict[str, dict]:
    reg = tomllib.loads(REGISTRY.read_text(encoding="utf-8"))
    if extra:
        p = Path(extra)
        if not p.is_file():
            raise MissingInputError(f"benchmark registry {p} not found", "Check [decontaminate] registry")
        try:
            reg.update(tomllib.loads(p.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"benchmark registry {p}: {e}") from None
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
    elif b.format in ("lines", "ptb"):
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

"""Text normalization, word n-grams and their 64-bit hashes, shared by dedup and decontaminate."""

from __future__ import annotations

import re

import xxhash

_WORD = re.compile(r"[a-z0-9]+")


def words(text: str) -> list[str]:
    """Lowercase alphanumeric words: punctuation stripped, whitespace collapsed."""
    return _WORD.findall(text.lower())


def shingles(ws: list[str], n: int) -> list[bytes]:
    """Word n-grams as bytes; a text shorter than n words is one shingle."""
    if len(ws) < n:
        return [" ".join(ws).encode()] if ws else []
    return [" ".join(ws[i:i + n]).encode() for i in range(len(ws) - n + 1)]


def ngram_hashes(ws: list[str], n: int) -> list[int]:
    """xxh3_64 of every word n-gram (no n-gram for texts shorter than n words)."""
    h = xxhash.xxh3_64_intdigest
    return [h(" ".join(ws[i:i + n]).encode()) for i in range(len(ws) - n + 1)]

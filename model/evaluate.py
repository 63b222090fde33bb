"""Zero-shot evaluation and sampling (``webtext eval``, ``webtext sample``).

The GPT-2 paper's Table 3 sets and HellaSwag, scored the same way for our checkpoints
and for Hugging Face GPT-2 checkpoints (``webtext eval --hf``, loaded by model/hf.py into
our GPT class). Every scored text starts after one ``<|endoftext|>``, as documents do in
training. The registry (data/benchmarks.toml) maps names to files and formats.

- **Perplexity / bits per character** (WikiText-2/103, PTB, 1BW; enwik8, text8): the
  test file is detokenized (model/evalsets.py), encoded whole, and scored with
  overlapping windows of ``block_size`` tokens: after the first window, each window
  scores only its last ``stride`` tokens (default ``block_size / 2``). The summed NLL is
  divided by the publisher's units (words + one ``<eos>`` per line; bytes; characters),
  with or without ``--limit`` (then the units of the scored prefix).
- **LAMBADA** (OpenAI's ``lambada_test.jsonl``): the target is each passage's last word
  (after its last space). Perplexity: exp of the mean over passages of the target
  word's summed NLL. ``accuracy``: every token of `` word`` is the greedy choice given the
  passage and the target's earlier tokens (no filter). ``accuracy_stopword``: the same,
  but the first token is the likeliest one that starts a word (a leading space, then a
  letter or digit) and is not an English stop word (``STOP_WORDS``) - our reading of the
  paper's "stop-word filter", whose code was not published. The paper's 45.99% (117M)
  is the filtered figure (its text: 52.66% without, 63.24% with, for 1542M).
- **CBT-CN / CBT-NE**: for each of the 10 candidates, the log-probability of the
  candidate and the rest of the question sentence, given the 20 context sentences and
  the question up to the blank (the paper's protocol); the likeliest is the answer.
- **HellaSwag** (``hellaswag_val.jsonl``, as nanoGPT/llm.c): each ending `` ending`` after
  ``ctx``; ``acc`` picks the least summed loss, ``acc_norm`` the least mean loss per token.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from webtext.pipeline.errors import ConfigError, MissingInputError
from webtext.stages.benchmarks import Benchmark, load_registry, read_cbt, read_hellaswag, resolve
from webtext.stages.tokenizer import TokenizerSpec, decoder, encoder

from .evalsets import detokenize_ptb, detokenize_wikitext, fill, lm_text
from .gpt import GPT

PAPER_SETS = ("lambada", "cbt-cn", "cbt-ne", "wikitext2", "ptb", "enwik8", "text8", "wikitext103", "1bw")
EVAL_SETS = (*PAPER_SETS, "hellaswag")   # the default: those whose files are present
__all__ = ["detokenize_ptb", "detokenize_wikitext"]
# NLTK's English stop-word list (the 127 lower-case words of its first release).
STOP_WORDS = frozenset("""i me my myself we our ours ourselves you your yours yourself yourselves he him his
himself she her hers herself it its itself they them their theirs themselves what which who whom this that these
those am is are was were be been being have has had having do does did doing a an the and but if or because as
until while of at by for with about against between into through during before after above below to from up down
in out on off over under again further then once here there when where why how all any both each few more most
other some such no nor not only own same so than too very s t can will just don should now""".split())


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
def score_continuations(model: GPT, pairs: list[tuple[list[int], list[int]]], batch_size: int = 8,
                        device: str = "cpu", first_dist: bool = False) -> list[tuple]:
    """For each (context ids, continuation ids): (log-probabilities of the continuation's
    tokens (k,), whether each is the greedy choice (k,), and with ``first_dist`` the
    log-probabilities over the vocabulary at its first token (V,), else None). A context
    too long for ``block_size`` loses its oldest tokens."""
    block, out = model.cfg.block_size, []
    for lo in range(0, len(pairs), batch_size):
        rows = [((c + t)[-(block + 1):], len(t)) for c, t in pairs[lo:lo + batch_size]]
        x = np.zeros((len(rows), max(len(s) for s, _ in rows) - 1), dtype=np.int64)
        for r, (s, _) in enumerate(rows):
            x[r, : len(s) - 1] = s[:-1]
        logits, _ = model(torch.from_numpy(x).to(device))
        for r, (s, k) in enumerate(rows):
            lp = F.log_softmax(logits[r, len(s) - 1 - k: len(s) - 1, : model.cfg.vocab_size].float(), dim=-1)
            tgt = torch.tensor(s[-k:], device=lp.device)
            picked = lp.gather(-1, tgt.unsqueeze(-1)).squeeze(-1)
            out.append((picked.cpu(), (lp.argmax(-1) == tgt).cpu(), lp[0].cpu() if first_dist else None))
    return out


def word_starts(spec: TokenizerSpec, vocab_size: int) -> torch.Tensor:
    """(V,) bool: tokens that begin a word that is not a stop word (a space, then a letter
    or digit; the stripped, lower-cased token text not in ``STOP_WORDS``)."""
    decode = decoder(spec)
    ok = torch.zeros(vocab_size, dtype=torch.bool)
    for i in range(vocab_size):
        t = decode([i]) if i != spec.eot else ""
        ok[i] = t[:1] == " " and t[1:2].isalnum() and t.strip().lower() not in STOP_WORDS
    return ok


def lambada(model: GPT, passages: list[str], spec: TokenizerSpec, batch_size: int = 16, device: str = "cpu") -> dict:
    encode = encoder(spec)
    pairs = []
    for p in passages:
        ctx, _, word = p.strip().rpartition(" ")
        pairs.append(([spec.eot] + encode([ctx])[0], encode([" " + word])[0]))
    scores = score_continuations(model, pairs, batch_size, device, first_dist=True)
    allowed = word_starts(spec, model.cfg.vocab_size)
    nll, correct, correct_sw = 0.0, 0, 0
    for (_, tgt), (lp, hits, first) in zip(pairs, scores):
        nll -= float(lp.sum())
        correct += bool(hits.all())
        pick = int(first.masked_fill(~allowed, -math.inf).argmax())
        correct_sw += pick == tgt[0] and bool(hits[1:].all())
    n = max(1, len(pairs))
    return {"examples": len(pairs), "accuracy": correct / n, "accuracy_stopword": correct_sw / n,
            "ppl": math.exp(nll / n)}


def cbt(model: GPT, b: Benchmark, spec: TokenizerSpec, limit: int | None, batch_size: int, device: str) -> dict:
    encode, items, pairs = encoder(spec), [], []
    for ex in read_cbt(b.path):
        context = detokenize_ptb(" ".join(ex.context))
        question = detokenize_ptb(ex.question)
        items.append(ex)
        for c in ex.candidates:
            head, rest = fill(context + " " + question, c)
            pairs.append(([spec.eot] + encode([head])[0], encode([rest])[0]))
        if limit and len(items) >= limit:
            break
    scores = iter(score_continuations(model, pairs, batch_size, device))
    correct = 0
    for ex in items:
        lp = [float(next(scores)[0].sum()) for _ in ex.candidates]
        correct += ex.candidates[int(np.argmax(lp))] == ex.answer
    return {"benchmark": b.name, "task": "cloze", "examples": len(items), "accuracy": correct / max(1, len(items))}


def hellaswag(model: GPT, b: Benchmark, spec: TokenizerSpec, limit: int | None, batch_size: int, device: str) -> dict:
    """As llm.c's dev/data/hellaswag.py: no EOT before ``ctx`` (so its figures compare)."""
    encode, items, pairs = encoder(spec), [], []
    for ex in read_hellaswag(b.path):
        items.append(ex)
        ctx = encode([ex.context])[0]
        pairs += [(ctx, encode([" " + e])[0]) for e in ex.endings]
        if limit and len(items) >= limit:
            break
    scores = iter(score_continuations(model, pairs, batch_size, device))
    acc = acc_norm = 0
    for ex in items:
        lp = [next(scores)[0] for _ in ex.endings]
        acc += int(np.argmax([float(x.sum()) for x in lp])) == ex.label
        acc_norm += int(np.argmax([float(x.mean()) for x in lp])) == ex.label
    n = max(1, len(items))
    return {"benchmark": b.name, "task": "multiple choice", "examples": len(items), "acc": acc / n,
            "acc_norm": acc_norm / n}


def perplexity(model: GPT, b: Benchmark, spec: TokenizerSpec, device: str = "cpu", stride: int | None = None,
               limit: int | None = None, batch_size: int = 8) -> dict:
    t = lm_text(b)
    ids = encoder(spec)([t.text])[0]
    units = t.total_units()
    if limit:
        ids = ids[:limit]
        units = t.units_in_prefix(len(decoder(spec)(ids)))     # the scored prefix's units
    nll, n = stream_nll(model, ids, spec.eot, stride, batch_size, device)
    out = {"benchmark": b.name, "task": "perplexity" if t.unit == "word" else "bits per character",
           "tokens": n, "units": units, "unit": t.unit, "token_ppl": math.exp(nll / max(1, n))}
    if t.unit == "word":
        out["word_ppl"] = math.exp(nll / max(1, units))
    else:
        out["bpc"] = nll / math.log(2) / max(1, units)
    return out


def evaluate_benchmark(model: GPT, b: Benchmark, spec: TokenizerSpec, device: str = "cpu",
                       stride: int | None = None, limit: int | None = None, batch_size: int = 8) -> dict:
    """One set's scores; ``limit`` keeps the first N tokens (perplexity) or examples."""
    if b.format == "jsonl":                   # LAMBADA-style: last word of each passage
        passages = []
        with b.path.open(encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    passages.append(json.loads(line)[b.field])
                if limit and len(passages) >= limit:
                    break
        return {"benchmark": b.name, "task": "last word", **lambada(model, passages, spec, batch_size, device)}
    if b.format == "cbt":
        return cbt(model, b, spec, limit, batch_size, device)
    if b.format == "hellaswag":
        return hellaswag(model, b, spec, limit, batch_size, device)
    return perplexity(model, b, spec, device, stride, limit, batch_size)


def run_eval(spec: TokenizerSpec, model: GPT, names: list[str] | None, benchmark_dir: str,
             registry: str | None = None, device: str = "cpu", stride: int | None = None,
             limit: int | None = None, batch_size: int = 8) -> list[dict]:
    """Scores on ``names`` (registry names or files); None: every set of ``EVAL_SETS``
    whose file is under ``benchmark_dir``."""
    reg = load_registry(registry, evalsets=True)
    if names is None:
        names = [n for n in EVAL_SETS if (Path(benchmark_dir) / reg[n]["file"]).is_file()]
        if not names:
            raise MissingInputError(f"no evaluation set found under {benchmark_dir}",
                                    "Download them (docs/train.md, Evaluation against the paper) or use --benchmark-dir")
    model.eval()
    return [evaluate_benchmark(model, resolve(n, benchmark_dir, reg), spec, device, stride, limit, batch_size)
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


def write_eval(path: Path, results: list[dict], source: str = "", n_params: int = 0) -> dict:
    """runs/<name>/eval.json: the results, what was scored and the paper column compared."""
    from webtext.pipeline.io import write_json

    from .paper import paper_column

    doc = {"source": source, "parameters": n_params, "paper_column": paper_column(n_params) if n_params else None,
           "results": results}
    write_json(path, doc)
    return doc

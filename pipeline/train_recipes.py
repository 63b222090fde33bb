"""Each model size's training defaults: the settings a ``[train]`` table leaves unset.

``TrainConfig`` fills every setting left at ``None`` from ``SIZE_DEFAULTS[model]``; a value
given in ``webtext.toml`` or on the command line always wins. ``min_lr`` left unset is a
tenth of the effective ``lr`` (nanoGPT's ``min_lr = learning_rate / 10``, GPT-3's decay
"down to 10% of its value").

Where the GPT-2 sizes' figures come from:

- ``lr``: GPT-3 paper (Brown et al. 2020), Table 2.1, for the models of the same shape:
  Small 125M 6.0e-4, Medium 350M 3.0e-4, Large 760M 2.5e-4, XL 1.3B 2.0e-4 (gpt2-xl, 1.5B,
  takes the 1.3B rate; 2.7B has 1.6e-4). nanoGPT's ``config/train_gpt2.py`` and llm.c's
  ``scripts/run_gpt2_124M.sh`` (``-l 0.0006``) use 6e-4 for 124M.
- ``tokens_per_step``: Table 2.1's batch sizes, 0.5M tokens up to 760M and 1M for 1.3B:
  2**19 = 524,288 (llm.c ``-d 524288``; nanoGPT 491,520) and 2**20.
- ``warmup_steps``: GPT-3 Appendix B warms up linearly over the first 375M tokens:
  375e6 / 524,288 = 715 steps (Karpathy's build-nanogpt uses 715, llm.c ``-u 700``);
  358 at 1M tokens a step.
- ``steps``: a 10B-token run, about one pass over a WebText-sized corpus (WebText: 40 GB,
  ~9B GPT-2 tokens). 10e9 / 524,288 = 19,073 steps, build-nanogpt's ``max_steps``; llm.c's
  124M script runs 18,865 steps, one epoch of its FineWeb-10B train split.
- ``eval_every`` 250 (llm.c ``-v 250``, build-nanogpt), ``ckpt_every`` 1,000 (nanoGPT's
  ``eval_interval``, where it checkpoints; llm.c ``-n 5000``).
- ``eval_tokens`` 10,485,760: build-nanogpt and llm.c evaluate 20 batches of 64 x 1024
  tokens on each of 8 GPUs.
- ``block_size`` 1024, the paper's context. ``batch_size`` (the micro-batch per GPU) only
  trades memory for speed; these are sized to fit 80 GB GPUs with room to spare (llm.c
  runs 124M at 64).

Weight decay 0.1, Adam beta2 0.95 and gradient clipping at 1.0 are the same for every
size (GPT-3 Appendix B; nanoGPT ``train_gpt2.py``) and are plain ``TrainConfig`` defaults.
"""

from __future__ import annotations

# the settings a model size chooses (each a TrainConfig field whose default is None)
SIZED = ("steps", "batch_size", "block_size", "tokens_per_step", "lr", "min_lr", "warmup_steps", "eval_every",
         "eval_tokens", "ckpt_every")

_GPT2 = dict(steps=19_073, block_size=1024, tokens_per_step=524_288, warmup_steps=715, eval_every=250,
             eval_tokens=10_485_760, ckpt_every=1000)

SIZE_DEFAULTS: dict[str, dict] = {
    # CPU-sized: one micro-batch a step, an eval and a checkpoint every 50 steps
    "tiny": dict(steps=200, batch_size=8, block_size=128, tokens_per_step=0, lr=1e-3, warmup_steps=20,
                 eval_every=50, eval_tokens=8192, ckpt_every=0),
    "gpt2": {**_GPT2, "batch_size": 32, "lr": 6e-4},
    "gpt2-medium": {**_GPT2, "batch_size": 16, "lr": 3e-4},
    "gpt2-large": {**_GPT2, "batch_size": 8, "lr": 2.5e-4},
    "gpt2-xl": {**_GPT2, "batch_size": 8, "lr": 2e-4, "tokens_per_step": 1_048_576, "warmup_steps": 358,
                "steps": 9_537},
}


def size_defaults(model: str, given: dict) -> dict:
    """The sized settings ``given`` leaves at None, for ``model``: {name: value}."""
    table = SIZE_DEFAULTS[model]
    out = {k: table[k] for k in SIZED if k != "min_lr" and given.get(k) is None}
    if given.get("min_lr") is None:
        lr = given.get("lr")
        lr = lr if isinstance(lr, (int, float)) and not isinstance(lr, bool) and lr > 0 else table["lr"]
        out["min_lr"] = float(f"{lr / 10:.12g}")       # 6e-5, not 5.9999e-05 (a bad lr is reported by its check)
    return out

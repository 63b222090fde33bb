"""``webtext export --hf``: a checkpoint as a Hugging Face GPT-2 model folder.

Writes ``config.json`` (``GPT2LMHeadModel``, ``gelu_new``, layer-norm epsilon 1e-5, the
real vocabulary size) and ``model.safetensors`` with transformers' GPT-2 names. Our
``nn.Linear`` weights are (out, in); GPT-2's ``Conv1D`` stores (in, out), so they are
transposed. The padded vocabulary rows are dropped, so the logits equal ours over the
real vocabulary. The output embedding is tied and stored once (``transformer.wte``).
For the GPT-2 tokenizer, ``vocab.json`` and ``merges.txt`` are written beside it (the
official files); for a trained one, its ``tokenizer.json``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch

from webtext.pipeline.errors import ConfigError
from webtext.pipeline.io import atomic_path, write_json

from .gpt import GPT

_CONV1D = ("attn.qkv", "attn.proj", "mlp.fc", "mlp.proj")
_NAMES = {"attn.qkv": "attn.c_attn", "attn.proj": "attn.c_proj", "mlp.fc": "mlp.c_fc", "mlp.proj": "mlp.c_proj",
          "ln_1": "ln_1", "ln_2": "ln_2"}


def hf_state_dict(model: GPT) -> dict[str, torch.Tensor]:
    c = model.cfg
    if not c.bias:
        raise ConfigError("export --hf needs a model with biases (GPT-2 has them); this one was built with bias = false")
    sd = {"transformer.wte.weight": model.wte.weight[: c.vocab_size],
          "transformer.wpe.weight": model.wpe.weight,
          "transformer.ln_f.weight": model.ln_f.weight, "transformer.ln_f.bias": model.ln_f.bias}
    for i, block in enumerate(model.blocks):
        for ours, theirs in _NAMES.items():
            mod = block.get_submodule(ours)
            w = mod.weight.t() if ours in _CONV1D else mod.weight
            sd[f"transformer.h.{i}.{theirs}.weight"] = w
            sd[f"transformer.h.{i}.{theirs}.bias"] = mod.bias
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in sd.items()}


def hf_config(model: GPT, eot: int) -> dict:
    c = model.cfg
    return {
        "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
        "vocab_size": c.vocab_size, "n_positions": c.block_size, "n_ctx": c.block_size,
        "n_embd": c.n_embd, "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": None,
        "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "initializer_range": 0.02,
        "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "scale_attn_weights": True,
        "tie_word_embeddings": True, "bos_token_id": eot, "eos_token_id": eot, "use_cache": True,
        "torch_dtype": "float32",
    }


def export_hf(ck: dict, model: GPT, out: Path) -> Path:
    from safetensors.torch import save_file

    from .evaluate import tokenizer_of

    spec = tokenizer_of(ck)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "model.safetensors") as tmp:
        save_file(hf_state_dict(model), str(tmp), metadata={"format": "pt"})
    write_json(out / "config.json", hf_config(model, spec.eot))
    if spec.path:
        shutil.copyfile(spec.path, out / "tokenizer.json")
    elif spec.name == "gpt2":
        from webtext.stages.tokenizer import bpe_files

        vocab_bpe, encoder_json = bpe_files()
        shutil.copyfile(encoder_json, out / "vocab.json")
        shutil.copyfile(vocab_bpe, out / "merges.txt")
    return out

"""``webtext export --hf`` (our checkpoint -> a Hugging Face GPT-2 folder) and
``webtext eval --hf`` (a Hugging Face GPT-2 folder or cached name -> our GPT class).

Writes ``config.json`` (``GPT2LMHeadModel``, ``gelu_new``, layer-norm epsilon 1e-5, the
real vocabulary size) and ``model.safetensors`` with transformers' GPT-2 names. Our
``nn.Linear`` weights are (out, in); GPT-2's ``Conv1D`` stores (in, out), so they are
transposed. The padded vocabulary rows are dropped, so the logits equal ours over the
real vocabulary. The output embedding is tied and stored once (``transformer.wte``).
For the GPT-2 tokenizer, ``vocab.json`` and ``merges.txt`` are written beside it (the
official files); for a trained one, its ``tokenizer.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch

from webtext.pipeline.errors import ConfigError, MissingInputError
from webtext.stages.tokenizer import TokenizerSpec
from webtext.pipeline.io import atomic_path, write_json

from .gpt import GPT, GPTConfig

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


# ``eval --hf``: the import direction. Names resolve only from the local Hugging Face
# cache (no download): ``huggingface_hub.snapshot_download(name, local_files_only=True)``.
_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh")     # our MLP's GELU (tanh approximation)


def hf_folder(source: str) -> Path:
    """A local folder, or the cached snapshot of a hub name (one-line error if neither)."""
    p = Path(source).expanduser()
    if p.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        if not (p / "config.json").is_file():
            raise MissingInputError(f"{p} is not a Hugging Face model folder (no config.json)",
                                    "Point --hf to a folder from save_pretrained or `webtext export --hf`")
        return p
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(source, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise MissingInputError(f"{source} is neither a folder nor a model in the local Hugging Face cache",
                                f"Download it once with `huggingface-cli download {source}`") from None


def _gpt_config(cfg: dict, where: Path) -> GPTConfig:
    if cfg.get("model_type") != "gpt2" or cfg.get("architectures", ["GPT2LMHeadModel"])[0] != "GPT2LMHeadModel":
        kind = cfg.get("model_type") or (cfg.get("architectures") or ["unknown"])[0]
        raise ConfigError(f"{where} holds a {kind} model; --hf scores GPT-2 (GPT2LMHeadModel) checkpoints")
    n_embd = cfg.get("n_embd", 768)
    unsupported = {"activation_function": cfg.get("activation_function", "gelu_new") not in _ACTIVATIONS,
                   "n_inner": cfg.get("n_inner") not in (None, 4 * n_embd),
                   "layer_norm_epsilon": abs(cfg.get("layer_norm_epsilon", 1e-5) - 1e-5) > 1e-12,
                   "scale_attn_by_inverse_layer_idx": bool(cfg.get("scale_attn_by_inverse_layer_idx")),
                   "scale_attn_weights": cfg.get("scale_attn_weights", True) is False}
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ConfigError(f"{where}: GPT-2 variant with {', '.join(f'{k}={cfg.get(k)}' for k in bad)}, "
                          "which our GPT class does not implement")
    return GPTConfig(n_layer=cfg.get("n_layer", 12), n_head=cfg.get("n_head", 12), n_embd=n_embd,
                     block_size=cfg.get("n_positions", 1024), vocab_size=cfg.get("vocab_size", 50257), bias=True)


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        sd = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        sd = torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise MissingInputError(f"{folder} has no model.safetensors or pytorch_model.bin",
                                "Sharded checkpoints are not read; save the model in one file")
    # OpenAI's hub checkpoints name weights "h.0...."; save_pretrained writes "transformer.h.0....".
    return {k if k.startswith(("transformer.", "lm_head.")) else f"transformer.{k}": v for k, v in sd.items()}


def gpt_from_hf_state_dict(sd: dict[str, torch.Tensor], cfg: GPTConfig) -> GPT:
    """Our GPT with a ``GPT2LMHeadModel`` state dict's weights (the inverse of
    ``hf_state_dict``: Conv1D weights transposed, the vocabulary padded with zero rows)."""
    model = GPT(cfg)
    ours = hf_state_dict(model)                          # the names and shapes expected
    missing = [k for k in ours if k not in sd]
    if missing:
        raise ConfigError(f"the checkpoint lacks {len(missing)} GPT-2 weights (first: {missing[0]})")
    head = sd.get("lm_head.weight")
    if head is not None and not torch.equal(head.float(), sd["transformer.wte.weight"].float()):
        raise ConfigError("the checkpoint's lm_head is not tied to its embeddings; our GPT ties them")
    with torch.no_grad():
        model.wte.weight.zero_()
        model.wte.weight[: cfg.vocab_size] = sd["transformer.wte.weight"].float()
        model.wpe.weight.copy_(sd["transformer.wpe.weight"].float())
        model.ln_f.weight.copy_(sd["transformer.ln_f.weight"].float())
        model.ln_f.bias.copy_(sd["transformer.ln_f.bias"].float())
        for i, block in enumerate(model.blocks):
            for mine, theirs in _NAMES.items():
                mod = block.get_submodule(mine)
                w = sd[f"transformer.h.{i}.{theirs}.weight"].float()
                mod.weight.copy_(w.t() if mine in _CONV1D else w)
                mod.bias.copy_(sd[f"transformer.h.{i}.{theirs}.bias"].float())
    return model.eval()


def _tokenizer(folder: Path, vocab_size: int) -> TokenizerSpec:
    """GPT-2's tokenizer when the folder's vocab.json is GPT-2's (or when there are no
    tokenizer files and the vocabulary has GPT-2's 50,257 entries); else its tokenizer.json."""
    from webtext.stages.tokenizer import bpe_files, resolve_tokenizer

    gpt2 = resolve_tokenizer("gpt2")
    if (folder / "vocab.json").is_file():
        if json.loads((folder / "vocab.json").read_text(encoding="utf-8")) == \
                json.loads(bpe_files()[1].read_text(encoding="utf-8")):
            return gpt2
    if (folder / "tokenizer.json").is_file():
        return resolve_tokenizer(str(folder / "tokenizer.json"))
    if not (folder / "vocab.json").is_file() and vocab_size == gpt2.vocab_size:
        return gpt2
    raise ConfigError(f"{folder}: cannot tell its tokenizer (a vocab.json that is not GPT-2's, and no tokenizer.json)")


def load_hf(source: str, device: str = "cpu") -> tuple[TokenizerSpec, GPT, Path]:
    """(tokenizer, our GPT with the weights, the folder) for ``eval --hf SOURCE``."""
    folder = hf_folder(source)
    try:
        cfg = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except ValueError as e:
        raise ConfigError(f"{folder / 'config.json'} is not JSON: {e}") from None
    gcfg = _gpt_config(cfg, folder)
    spec = _tokenizer(folder, gcfg.vocab_size)
    if spec.vocab_size > gcfg.vocab_size:
        raise ConfigError(f"{folder}: its tokenizer has {spec.vocab_size} tokens, the model {gcfg.vocab_size}")
    return spec, gpt_from_hf_state_dict(_weights(folder), gcfg).to(device), folder

"""What a built model is made of, through every wrapper vittui puts around it (no torch at import).

`unwrap` strips, in any nesting, the wrappers a model can wear here:

- `HFClassifier` (`vittui.models.hf`), which keeps a transformers model in `.hf`;
- peft: a `PeftModel` (`get_base_model()`) and the tuner inside it (a `LoraModel`'s `.model`);
- data parallel: torch's `DistributedDataParallel` / `DataParallel`, FSDP and DeepSpeed engines (what
  `accelerate.Accelerator.prepare` returns), all of which keep the network in `.module`;
- `torch.compile`'s `OptimizedModule`, which keeps it in `._orig_mod`.

`is_hf` then looks at the class of what is left: a transformers model is one whose class comes from the
`transformers` package (or from a `transformers_modules` remote-code module).

The rest reads the structure of that network: the encoder blocks in order (`transformer_blocks`), where
each parameter sits in depth (`block_index_of`, `block_index_map`), and the token geometry attention
probes need (`num_prefix_tokens`, `patch_size_of`). All of it works on duck-typed attributes, so this
module imports neither torch nor timm nor transformers.
"""

from __future__ import annotations

import re
import sys
from typing import Any

from vittui.runs.probes import pair

_MAX_WRAPPERS = 10
_PARALLEL = ("DistributedDataParallel", "DataParallel", "FullyShardedDataParallel", "DeepSpeedEngine")


def _is_module(obj: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(obj, torch.nn.Module)


def _is_hf_wrapper(model: Any) -> bool:
    hf = sys.modules.get("vittui.models.hf")  # not imported yet: no model can be an HFClassifier
    return hf is not None and isinstance(model, hf.HFClassifier)


def _inner(model: Any) -> Any | None:
    """The model one wrapper down, or None when `model` is no wrapper vittui knows."""
    cls = type(model)
    if _is_module(getattr(model, "_orig_mod", None)):  # torch.compile
        return model._orig_mod
    if cls.__name__ in _PARALLEL and _is_module(getattr(model, "module", None)):
        return model.module
    if cls.__module__.startswith("peft"):
        if callable(getattr(model, "get_base_model", None)):  # PeftModel
            return model.get_base_model()
        if cls.__module__.startswith("peft.tuners") and _is_module(getattr(model, "model", None)):
            return model.model  # a LoraModel (PeftModel.base_model)
    if _is_hf_wrapper(model):
        return model.hf
    return None


def unwrap(model: Any) -> Any:
    """The underlying timm or transformers model: through compile, DDP/FSDP/accelerate, peft and
    HFClassifier, in any nesting."""
    for _ in range(_MAX_WRAPPERS):
        inner = _inner(model)
        if inner is None or inner is model:
            break
        model = inner
    return model


def is_hf(model: Any) -> bool:
    """True when the model under every wrapper is a transformers model (judged by its class's module)."""
    return type(unwrap(model)).__module__.split(".", 1)[0] in ("transformers", "transformers_modules")


def hf_classifier(model: Any) -> Any | None:
    """The HFClassifier inside `model` (through peft, DDP, compile), or None for timm models."""
    for mod in model.modules():
        if _is_hf_wrapper(mod):
            return mod
    return None


# ------------------------------------------------------------------------------------------------ blocks

_ATTN_LEAVES = {"qkv", "q_proj", "query", "attn", "attention", "self_attn"}


def _is_block_list(mod: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(mod, (torch.nn.ModuleList, torch.nn.Sequential))


def _has_attention(module: Any) -> bool:
    return any(n.rsplit(".", 1)[-1] in _ATTN_LEAVES for n, _ in module.named_modules() if n)


def _block_lists(model: Any) -> list[tuple[str, Any]]:
    """Named containers (ModuleList / Sequential) whose every child holds attention and none of whose
    children holds such a container itself; in model order."""
    cands = []
    for name, mod in model.named_modules():
        if _is_block_list(mod) and len(mod) and all(_has_attention(c) for c in mod):
            cands.append((name, mod))
    names = [n for n, _ in cands]
    return [(n, mod) for n, mod in cands if not any(o != n and o.startswith(n + ".") for o in names)]


def transformer_blocks(model: Any) -> list[Any]:
    """The encoder blocks in order: timm `blocks`, Swin stages flattened, HF `vit.layers` / `encoder.layer`."""
    base = unwrap(model)
    blocks = getattr(base, "blocks", None)
    if _is_block_list(blocks) and len(blocks) and all(_has_attention(b) for b in blocks):
        return list(blocks)
    return [b for _, lst in _block_lists(base) for b in lst]


def block_names(model: Any) -> list[str]:
    """The parameter-name prefix of each block of `transformer_blocks`, as `model.named_parameters()` says."""
    ids = {id(b): i for i, b in enumerate(transformer_blocks(model))}
    out: list[str | None] = [None] * len(ids)
    for name, mod in model.named_modules():
        i = ids.get(id(mod))
        if i is not None and out[i] is None:
            out[i] = name
    return [n or "" for n in out]


_EMBED_WORDS = ("cls_token", "pos_embed", "patch_embed", "embeddings", "position_embedding", "mask_token",
                "dist_token", "distillation_token", "reg_token", "register_tokens", "absolute_pos_embed",
                "rel_pos_bias", "norm_pre")
_BLOCK_RE = re.compile(r"(?:^|\.)(?:blocks|layers|layer|block|h)\.(\d+)(?:\.|$)")


def block_index_of(param_name: str, num_blocks: int) -> int:
    """0 for embeddings (patch/pos/cls), i+1 for block i, num_blocks+1 for the final norm and head.

    Reads flat names (timm `blocks.3.`, HF `vit.layers.3.` / `encoder.layer.3.`); for hierarchical
    models (Swin) use `block_index_map(model)`, which goes by the module structure.
    """
    m = _BLOCK_RE.search(param_name)
    if m:
        return min(int(m.group(1)), num_blocks - 1) + 1
    if any(w in param_name for w in _EMBED_WORDS):
        return 0
    return num_blocks + 1


def block_index_map(model: Any) -> dict[str, int]:
    """Each parameter name of `model` -> its depth index as in `block_index_of`, from the structure.

    Parameters inside block i get i+1; parameters before the first block 0; after the last block
    num_blocks+1; parameters between blocks (Swin's patch merging) the index of the block before them.
    """
    prefixes = block_names(model)
    n = len(prefixes)
    out: dict[str, int] = {}
    seen_block = 0
    for name, _ in model.named_parameters():
        idx = next((i for i, p in enumerate(prefixes) if p and name.startswith(p + ".")), None)
        if idx is not None:
            seen_block = idx + 1
            out[name] = idx + 1
        elif seen_block == 0:
            out[name] = 0
        else:
            out[name] = -seen_block  # between or after blocks: settled below
    for name, v in out.items():
        if v < 0:
            out[name] = n + 1 if -v == n else -v
    return out


# ------------------------------------------------------------------------------------------------ tokens


# prefix-token parameters as the embeddings hold them, (1, n, dim): timm at the model's top level, transformers
# in `*.embeddings`. `mask_token` (DINOv2, BEiT masked modelling) is no token of the sequence and not here.
_CLS_TOKENS = ("cls_token",)
_PREFIX_TOKENS = _CLS_TOKENS + ("dist_token", "distillation_token", "reg_token", "register_tokens")


def _embedding_tokens(model: Any) -> dict[str, int]:
    """{parameter name: tokens it prepends} for the prefix-token parameters of the embeddings."""
    out: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        if parts[-1] not in _PREFIX_TOKENS:
            continue
        if len(parts) > 1 and not parts[-2].endswith("embeddings"):  # inside a block: no embedding
            continue
        shape = tuple(p.shape)
        out[name] = int(shape[-2]) if len(shape) >= 2 else 1
    return out


def num_prefix_tokens(model: Any) -> int:
    """Tokens before the patches, counted from the model's embeddings: CLS (if any), distillation token
    (DeiT distilled, timm and transformers alike: 2 with CLS) and register tokens. 0 for a model that
    prepends none (GAP ViTs, Swin). Never assumed: a transformers DeiT has CLS + distillation = 2."""
    m = unwrap(model)
    if callable(getattr(m, "named_parameters", None)):
        tokens = _embedding_tokens(m)
        if tokens:
            return sum(tokens.values())
    if hasattr(m, "num_prefix_tokens"):  # timm's own count, for a model whose tokens we do not see
        return int(m.num_prefix_tokens)
    return 0


def has_class_token(model: Any) -> bool:
    """True when the model's embeddings prepend a CLS token (token 0); False for GAP ViTs (with or without
    registers) and Swin, whose token 0 is a patch or a register."""
    m = unwrap(model)
    if not callable(getattr(m, "named_parameters", None)):
        return False
    return any(name.rsplit(".", 1)[-1] in _CLS_TOKENS for name in _embedding_tokens(m))


_WINDOWED = ("WindowAttention", "SwinSelfAttention", "SwinAttention", "Swinv2SelfAttention", "WindowMSA")


def is_windowed(model: Any) -> bool:
    """True for windowed-attention models (Swin, timm or transformers): attention is per local window, so
    there is no image-wide (tokens x tokens) map."""
    m = unwrap(model)
    config = getattr(m, "config", None)
    if config is not None and getattr(config, "window_size", None) is not None and hasattr(config, "depths"):
        return True
    modules = getattr(m, "modules", None)
    return callable(modules) and any(type(x).__name__ in _WINDOWED for x in modules())


def patch_size_of(model: Any) -> tuple[int, int]:
    m = unwrap(model)
    pe = getattr(m, "patch_embed", None)
    if pe is not None and getattr(pe, "patch_size", None) is not None:
        return pair(pe.patch_size)
    config = getattr(m, "config", None)
    if config is not None and getattr(config, "patch_size", None) is not None:
        return pair(config.patch_size)
    raise ValueError(f"cannot tell the patch size of {type(m).__name__}")


__all__ = [
    "unwrap", "is_hf", "hf_classifier", "transformer_blocks", "block_names", "block_index_of", "block_index_map",
    "num_prefix_tokens", "has_class_token", "is_windowed", "patch_size_of",
]

"""Optimizer parameter groups and the per-step schedule.

Weight decay is skipped for norms, biases, position embeddings and class tokens (1-D tensors and the
model's `no_weight_decay()` names). Layer-wise lr decay uses timm's own grouping for timm models and a
name-based block index for Hugging Face and peft-wrapped models, which timm cannot group.
"""

from __future__ import annotations

import torch
from torch import nn

from vittui.recipe import Recipe

NO_DECAY_NAMES = ("pos_embed", "cls_token", "dist_token", "reg_token", "position_embeddings", "mask_token")


def _no_decay(name: str, param: torch.Tensor, extra: set[str]) -> bool:
    return param.ndim <= 1 or any(k in name for k in NO_DECAY_NAMES) or name in extra


def param_groups(model: nn.Module, recipe: Recipe) -> list[dict]:
    """Groups with `weight_decay` and `lr_scale`, the layer-decay factor (timm's scheduler reads that key
    and multiplies the group's lr by it); the user's live multiplier is another thing, `apply_lr_multiplier`."""
    from vittui.models.structure import block_index_of, is_hf, transformer_blocks

    wd, decay = recipe.optim.weight_decay, recipe.optim.layer_decay
    extra = set(getattr(model, "no_weight_decay", lambda: set())())
    timm_native = not is_hf(model) and hasattr(model, "group_matcher") and not hasattr(model, "peft_config")
    if decay < 1.0 and timm_native:
        from timm.optim import param_groups_layer_decay

        return param_groups_layer_decay(model, weight_decay=wd, no_weight_decay_list=extra, layer_decay=decay)

    num_blocks = len(transformer_blocks(model)) if decay < 1.0 else 0
    groups: dict[tuple[int, bool], dict] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = block_index_of(name, num_blocks) if decay < 1.0 else 0
        nd = _no_decay(name, p, extra)
        g = groups.setdefault((layer, nd), {
            "params": [],
            "weight_decay": 0.0 if nd else wd,
            "lr_scale": decay ** (num_blocks + 1 - layer) if decay < 1.0 else 1.0,
        })
        g["params"].append(p)
    return list(groups.values())


def build_optimizer(model: nn.Module, recipe: Recipe, device_type: str = "cpu") -> torch.optim.Optimizer:
    o = recipe.optim
    groups = param_groups(model, recipe)
    if not groups:
        raise ValueError("no trainable parameters: check adapt.freeze / adapt.lora")
    if o.name == "sgd":
        return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, nesterov=o.momentum > 0)
    fused = o.fused and device_type == "cuda"
    return torch.optim.AdamW(groups, lr=o.lr, betas=tuple(o.betas), fused=fused or None)


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int, steps_per_epoch: int):
    """timm's cosine schedule stepped per optimizer update (t_in_epochs=False), with linear warmup."""
    from timm.scheduler import CosineLRScheduler

    s = recipe.schedule
    warmup = int(round(s.warmup_epochs * steps_per_epoch))
    warmup = min(warmup, max(total_steps - 1, 0))
    if s.kind == "constant":
        return CosineLRScheduler(
            optimizer, t_initial=10 ** 12, lr_min=recipe.optim.lr, warmup_t=warmup,
            warmup_lr_init=s.warmup_lr, t_in_epochs=False,
        )
    return CosineLRScheduler(
        optimizer, t_initial=max(total_steps - warmup, 1), lr_min=s.min_lr, warmup_t=warmup,
        warmup_lr_init=s.warmup_lr, warmup_prefix=True, t_in_epochs=False,
    )


def apply_lr_multiplier(optimizer: torch.optim.Optimizer, multiplier: float) -> None:
    """The user's live lr multiplier (control knob `lr_multiplier`), applied after the schedule set each
    group's lr (which already includes the group's layer-decay `lr_scale`)."""
    if multiplier != 1.0:
        for g in optimizer.param_groups:
            g["lr"] *= multiplier


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    """The largest group lr (the head's under layer decay): the number a person compares to optim.lr."""
    return max(g["lr"] for g in optimizer.param_groups)

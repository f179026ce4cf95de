"""Adapting a built model to a task: which parameters train (freezing strategies) and LoRA via peft.

Freezing sets `requires_grad`; the train loop builds its optimizer over the parameters that still
require grad. Depth indices come from `block_index_map` (0 = embeddings, i+1 = block i, last = final norm
and head), so the same rules hold for timm and transformers models and for Swin's stages.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from vittui.models.errors import ModelError
from vittui.models.structure import block_index_map, block_names, is_hf, unwrap
from vittui.recipe import AdaptSection


@dataclass
class ParamReport:
    total: int
    trainable: int
    frozen_blocks: int
    lora: bool

    @property
    def fraction(self) -> float:
        return self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return f"trainable {self.trainable:,} / {self.total:,} ({100 * self.fraction:.1f}%)"


def _prefix_of(model: nn.Module, inner: nn.Module) -> str:
    """The module name of `inner` inside `model` ('' when they are the same)."""
    for name, mod in model.named_modules():
        if mod is inner:
            return name
    raise ModelError("internal: module not found inside the model")  # pragma: no cover


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def head_names(model: nn.Module) -> list[str]:
    """Module-name prefixes (as `model.named_parameters()` spells them) of the classifier head(s)."""
    base = unwrap(model)
    prefix = _prefix_of(model, base)
    rel: list[str] = []
    if is_hf(base):
        rel = [n for n, _ in base.named_children() if "classifier" in n or n in ("head", "heads")]
    elif hasattr(base, "get_classifier"):
        clf = base.get_classifier()
        if isinstance(clf, nn.Module):
            rel = [n for n, mod in base.named_modules() if mod is clf and n][:1]
            # peft's ModulesToSaveWrapper keeps the name of the module it wraps
        if not rel and hasattr(base, "pretrained_cfg"):
            rel = [base.pretrained_cfg.get("classifier", "head")]
    if not rel:
        rel = [n for n, _ in base.named_children() if n in ("head", "fc", "classifier")]
    if not rel:
        raise ModelError(f"cannot find the classifier head of {type(base).__name__}")
    return [_join(prefix, r) for r in rel]


def _under(name: str, prefixes: list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def lora_targets(model: nn.Module) -> list[str]:
    """Module-name suffixes for LoRA, chosen from the modules present: timm `qkv`, HF q/v projections."""
    leaves = {n.rsplit(".", 1)[-1] for n, mod in unwrap(model).named_modules() if isinstance(mod, nn.Linear)}
    for pair in (("q_proj", "v_proj"), ("query", "value")):
        if all(p in leaves for p in pair):
            return list(pair)
    if "qkv" in leaves:
        return ["qkv"]
    for pair in (("q", "v"), ("to_q", "to_v")):
        if all(p in leaves for p in pair):
            return list(pair)
    raise ModelError(
        f"no attention projections found for LoRA in {type(unwrap(model)).__name__}; "
        "set adapt.lora_targets to module names (Linear layers: "
        + ", ".join(sorted(leaves)[:12]) + ")"
    )


def _freeze_mask(model: nn.Module, adapt: AdaptSection) -> tuple[dict[str, bool], int]:
    """name -> trainable under the freeze strategy, and how many blocks it freezes."""
    depth = block_index_map(model)
    n = len(block_names(model))
    heads = head_names(model)
    strategy, k = adapt.freeze, adapt.freeze_blocks
    if strategy in ("first_n", "all_but_last_n"):
        if n == 0:
            raise ModelError(f"adapt.freeze = {strategy!r} needs transformer blocks; none found in this model")
        if not 1 <= k <= n:
            raise ModelError(f"adapt.freeze_blocks must be between 1 and {n} (the model's depth) (got {k})")
    mask: dict[str, bool] = {}
    for name, _ in model.named_parameters():
        d = depth[name]
        if strategy == "none":
            mask[name] = True
        elif strategy == "linear_probe":
            mask[name] = _under(name, heads)
        elif strategy == "first_n":
            mask[name] = d > k or _under(name, heads)
        elif strategy == "all_but_last_n":
            mask[name] = d > n - k or _under(name, heads)
        else:
            raise ModelError(f"adapt.freeze must be none, linear_probe, first_n or all_but_last_n (got {strategy!r})")
    frozen = {"none": 0, "linear_probe": n, "first_n": k, "all_but_last_n": n - k}[strategy]
    return mask, frozen


def apply_adaptation(model: nn.Module, adapt: AdaptSection) -> tuple[nn.Module, ParamReport]:
    """Freeze per `adapt.freeze`, then add LoRA adapters when `adapt.lora`; forward still returns logits.

    With LoRA the base weights are frozen by peft; adapters go on the target modules of the blocks the
    freeze strategy leaves trainable (all blocks for "none"), and the head trains in full
    (`modules_to_save`). linear_probe + LoRA is refused: a linear probe trains the head only.
    """
    mask, _ = _freeze_mask(model, adapt)
    if not adapt.lora:
        for name, p in model.named_parameters():
            p.requires_grad_(mask[name])
        return model, param_report(model)
    if adapt.freeze == "linear_probe":
        raise ModelError("adapt.lora = true with adapt.freeze = 'linear_probe': a linear probe trains only the "
                         "head; set adapt.freeze = 'none' for LoRA, or adapt.lora = false")
    import peft

    if type(model).__module__.startswith("peft"):
        raise ModelError("this model already carries LoRA adapters")
    targets = lora_target_modules(model, adapt, mask)
    heads = head_names(model)
    config = peft.LoraConfig(
        r=adapt.lora_r, lora_alpha=adapt.lora_alpha, lora_dropout=adapt.lora_dropout,
        target_modules=targets, modules_to_save=heads,
    )
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = peft.get_peft_model(model, config)
    return wrapped, param_report(wrapped)


def lora_target_modules(model: nn.Module, adapt: AdaptSection, mask: dict[str, bool] | None = None) -> list[str]:
    """The modules LoRA adapts: `adapt.lora_targets` (or the model's attention projections) in the blocks the
    freeze strategy leaves trainable, never the head. Raises ModelError when they match nothing; pre-flight
    calls it on a model built on the meta device, before any run directory exists."""
    if mask is None:
        mask, _ = _freeze_mask(model, adapt)
    suffixes = list(adapt.lora_targets) or lora_targets(model)
    trainable_blocks = {i for i, b in enumerate(block_names(model))
                        if any(mask.get(n, False) for n, _ in model.named_parameters() if n.startswith(b + "."))}
    prefixes = [b for i, b in enumerate(block_names(model)) if i in trainable_blocks]
    heads = head_names(model)
    targets = [
        name for name, mod in model.named_modules()
        if name.rsplit(".", 1)[-1] in suffixes and isinstance(mod, (nn.Linear, nn.Conv2d))
        and (not prefixes or _under(name, prefixes)) and not _under(name, heads)
    ]
    if not targets:
        raise ModelError(
            f"adapt.lora_targets {suffixes} match no Linear layer in the trainable blocks; "
            f"names present: {', '.join(lora_targets_hint(model))}"
        )
    return targets


def lora_targets_hint(model: nn.Module) -> list[str]:
    return sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})


def param_report(model: nn.Module) -> ParamReport:
    total = trainable = 0
    lora = False
    for name, p in model.named_parameters():
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
        lora = lora or "lora_" in name
    frozen_blocks = 0
    for b in block_names(model):
        ps = [p for n, p in model.named_parameters() if n.startswith(b + ".")]
        if ps and not any(p.requires_grad for p in ps):
            frozen_blocks += 1
    return ParamReport(total=total, trainable=trainable, frozen_blocks=frozen_blocks, lora=lora)


__all__ = ["ParamReport", "head_names", "lora_targets", "lora_target_modules", "apply_adaptation", "param_report"]

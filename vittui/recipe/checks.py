"""Checking recipe values: the allowed choices and ranges of each field, TOML values against the field
types, and the rules that span fields; every error a `RecipeError` a person can act on."""

from __future__ import annotations

import difflib
import functools
import re
import types
import typing
from typing import Any

from vittui.recipe.schema import Recipe, RecipeError

CHOICES: dict[str, tuple[str, ...]] = {
    "model.source": ("auto", "timm", "hf"),
    "data.source": ("digits", "imagefolder", "medmnist", "hf"),
    "data.class_balance": ("none", "weighted_loss", "weighted_sampler"),
    "augment.interpolation": ("bilinear", "bicubic", "nearest", "random"),
    "optim.name": ("adamw", "sgd"),
    "schedule.kind": ("cosine", "constant"),
    "adapt.freeze": ("none", "linear_probe", "first_n", "all_but_last_n"),
    "compute.device": ("auto", "cpu", "cuda"),
    "compute.precision": ("fp32", "bf16", "fp16"),
    "schedule.early_stop_metric": ("val_top1", "val_loss"),
    "run.on_divergence": ("pause", "rewind"),
}

# (lower, lower inclusive, upper, upper inclusive); None = unbounded
RANGES: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "model.img_size": (8, True, 4096, True),
    "model.patch_size": (1, True, None, False),
    "model.depth": (1, True, None, False),
    "model.embed_dim": (1, True, None, False),
    "model.num_heads": (1, True, None, False),
    "model.mlp_ratio": (0, False, None, False),
    "data.val_fraction": (0, False, 1, False),
    "data.batch_size": (1, True, None, False),
    "data.num_workers": (0, True, None, False),
    "data.limit": (0, True, None, False),
    "augment.hflip": (0, True, 1, True),
    "augment.vflip": (0, True, 1, True),
    "augment.color_jitter": (0, True, None, False),
    "augment.re_prob": (0, True, 1, True),
    "augment.mixup": (0, True, None, False),
    "augment.cutmix": (0, True, None, False),
    "augment.mixup_prob": (0, True, 1, True),
    "augment.mixup_switch_prob": (0, True, 1, True),
    "optim.lr": (0, False, None, False),
    "optim.weight_decay": (0, True, None, False),
    "optim.momentum": (0, True, 1, False),
    "optim.layer_decay": (0, False, 1, True),
    "optim.clip_grad": (0, True, None, False),
    "regularize.label_smoothing": (0, True, 1, False),
    "regularize.drop_path": (0, True, 1, False),
    "regularize.dropout": (0, True, 1, False),
    "regularize.ema_decay": (0, False, 1, False),
    "schedule.epochs": (1, True, None, False),
    "schedule.max_steps": (0, True, None, False),
    "schedule.warmup_epochs": (0, True, None, False),
    "schedule.warmup_lr": (0, True, None, False),
    "schedule.min_lr": (0, True, None, False),
    "adapt.freeze_blocks": (0, True, None, False),
    "adapt.lora_r": (1, True, None, False),
    "adapt.lora_alpha": (1, True, None, False),
    "adapt.lora_dropout": (0, True, 1, False),
    "compute.accumulation": (1, True, None, False),
    "compute.threads": (0, True, None, False),
    "run.checkpoint_every": (0, True, None, False),
    "run.eval_every": (0, True, None, False),
    "run.keep_last": (1, True, None, False),
    "run.log_every": (1, True, None, False),
    "run.probe_every": (0, True, None, False),
    "schedule.early_stop_patience": (0, True, None, False),
    "schedule.early_stop_min_delta": (0, True, None, False),
    "run.divergence_factor": (0, True, None, False),
    "run.divergence_steps": (1, True, None, False),
    "run.max_rewinds": (0, True, None, False),
    "run.rewind_lr_factor": (0, False, 1, True),
}


@functools.cache
def field_hints(cls: type) -> dict[str, Any]:
    """A section's field types, resolved once per class (get_type_hints evaluates every annotation string:
    it was most of the time loading a recipe took). Callers only read the dict."""
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "a list of numbers" if float in typing.get_args(tp) else "a list of strings"
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(inner[0])
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def coerce(key: str, tp: Any, value: Any) -> Any:
    """Check a TOML value against the field's type; ints widen to floats, lists become tuples."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(types, "UnionType", None)):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return coerce(key, inner[0], value)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{key} must be {_type_name(tp)} (got {value!r})")
        elem = args[0]
        if len(args) == 2 and args[1] is not Ellipsis and len(value) != 2:
            raise RecipeError(f"{key} must have 2 entries (got {len(value)})")
        return tuple(coerce(f"{key}[{i}]", elem, v) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{key} must be true or false (got {value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{key} must be an integer (got {value!r})")
        if not -(2**63) <= value < 2**63:
            raise RecipeError(f"{key} is out of range (got an integer of {len(str(abs(value)))} digits)")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{key} must be a number (got {value!r})")
        try:
            number = float(value)
        except OverflowError:
            raise RecipeError(f"{key} must be a finite number (got an integer of {len(str(abs(value)))} digits)") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise RecipeError(f"{key} must be a finite number (got {value!r})")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{key} must be a string (got {value!r})")
        return value
    raise RecipeError(f"{key}: unsupported type {tp}")  # pragma: no cover


def unknown_key(key: str, known: list[str]) -> RecipeError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(sorted(known))})"
    return RecipeError(f"unknown key {key}{hint}")


def check_value(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        close = difflib.get_close_matches(str(value), CHOICES[key], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RecipeError(f"{key} must be one of {', '.join(CHOICES[key])} (got {value!r}){hint}")
    if key in RANGES and value is not None:
        lo, lo_inc, hi, hi_inc = RANGES[key]
        if lo is not None and (value < lo or (value == lo and not lo_inc)):
            op = ">=" if lo_inc else ">"
            raise RecipeError(f"{key} must be {op} {lo:g} (got {value!r})")
        if hi is not None and (value > hi or (value == hi and not hi_inc)):
            op = "<=" if hi_inc else "<"
            raise RecipeError(f"{key} must be {op} {hi:g} (got {value!r})")


def check_recipe(r: Recipe) -> None:
    """Rules that span fields."""
    lo, hi = r.augment.crop_scale
    if not (0 < lo <= hi <= 1):
        raise RecipeError(f"augment.crop_scale must satisfy 0 < min <= max <= 1 (got {list(r.augment.crop_scale)})")
    lo, hi = r.augment.crop_ratio
    if not (0 < lo <= hi):
        raise RecipeError(f"augment.crop_ratio must satisfy 0 < min <= max (got {list(r.augment.crop_ratio)})")
    if not (0 <= r.optim.betas[0] < 1 and 0 <= r.optim.betas[1] < 1):
        raise RecipeError(f"optim.betas must each be in [0, 1) (got {list(r.optim.betas)})")
    if len(r.data.mean) != len(r.data.std) or len(r.data.mean) not in (1, 3):
        raise RecipeError("data.mean and data.std must both have 1 or 3 entries")
    if any(s <= 0 for s in r.data.std):
        raise RecipeError(f"data.std entries must be > 0 (got {list(r.data.std)})")
    if r.data.source in ("imagefolder", "medmnist", "hf") and not r.data.path:
        raise RecipeError(f"data.path is required when data.source = {r.data.source!r}")
    if r.model.patch_size and r.model.img_size % r.model.patch_size:
        raise RecipeError(
            f"model.img_size ({r.model.img_size}) must be a multiple of model.patch_size ({r.model.patch_size})"
        )
    if r.model.embed_dim and r.model.num_heads and r.model.embed_dim % r.model.num_heads:
        raise RecipeError(
            f"model.embed_dim ({r.model.embed_dim}) must be divisible by model.num_heads ({r.model.num_heads})"
        )
    if r.adapt.freeze in ("first_n", "all_but_last_n") and r.adapt.freeze_blocks < 1:
        raise RecipeError(f"adapt.freeze_blocks must be >= 1 when adapt.freeze = {r.adapt.freeze!r}")
    if r.model.depth and r.adapt.freeze_blocks > r.model.depth:
        raise RecipeError(f"adapt.freeze_blocks ({r.adapt.freeze_blocks}) exceeds model.depth ({r.model.depth})")
    if r.compute.precision == "fp16" and r.compute.device == "cpu":
        raise RecipeError("compute.precision = 'fp16' needs a CUDA device; use 'bf16' on the CPU")
    if r.schedule.min_lr > r.optim.lr:
        raise RecipeError(f"schedule.min_lr ({r.schedule.min_lr:g}) must not exceed optim.lr ({r.optim.lr:g})")
    if r.run.name and any(c in r.run.name for c in "/\\\0") or r.run.name in (".", ".."):
        raise RecipeError(f"run.name must be a plain folder name (got {r.run.name!r})")
    for url in r.run.notify:
        if not NOTIFY_URL.match(url):
            raise RecipeError(f"run.notify entries must be URLs with a scheme, such as 'ntfy://topic' or "
                              f"'json://host/path' (got {url!r})")
    if 0 < r.run.divergence_factor <= 1:
        raise RecipeError(f"run.divergence_factor must be > 1 (a loss above k x its running mean; got "
                          f"{r.run.divergence_factor:g}), or 0 to turn the spike rule off")
    if r.augment.auto_augment and not AUTO_AUGMENT.match(r.augment.auto_augment):
        raise RecipeError(
            f"augment.auto_augment must be a timm policy such as 'rand-m9-mstd0.5-inc1' (got {r.augment.auto_augment!r})"
        )


NOTIFY_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://\S+$")
AUTO_AUGMENT = re.compile(r"^(rand|augmix|original|originalr|v0|v0r|3a)(-[a-z]+[0-9.]*)*$|^trivialaugment$")


__all__ = ["CHOICES", "RANGES", "AUTO_AUGMENT", "NOTIFY_URL", "field_hints", "coerce", "unknown_key", "check_value", "check_recipe"]

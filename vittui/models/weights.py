"""Weights in and out of a built model: load a state dict where the shapes fit (with a report of what
was left out), and save a model to a folder that `build_model` can load again."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vittui.models.errors import ModelError
from vittui.models.structure import is_hf, unwrap

log = logging.getLogger("vittui.models")


def load_into(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """load_state_dict(strict=False) of the tensors whose shapes fit; a report of what was left out."""
    own = model.state_dict()
    keep, skipped = {}, []
    for k, v in sd.items():
        if k in own:
            if tuple(own[k].shape) == tuple(v.shape):
                keep[k] = v
            else:
                skipped.append((k, tuple(v.shape), tuple(own[k].shape)))
    unexpected = sorted(k for k in sd if k not in own)
    if not keep:
        raise ModelError(
            f"none of the {len(sd)} tensors in {source} fit this model ({len(own)} tensors): "
            "check that model.name and the size overrides match the saved model"
        )
    model.load_state_dict(keep, strict=False)
    missing = sorted(k for k in own if k not in keep)
    report = {
        "source": source,
        "loaded": len(keep),
        "skipped": skipped,  # (name, checkpoint shape, model shape): e.g. a head for other classes
        "missing": missing,  # left at their fresh initialisation
        "unexpected": unexpected,
    }
    if skipped:
        log.info("weights from %s: shapes differ, kept fresh: %s", source, ", ".join(s[0] for s in skipped))
    if unexpected:
        log.warning("weights from %s: %d tensors the model has no place for: %s", source, len(unexpected),
                    ", ".join(unexpected[:8]))
    return report


def set_report(model: nn.Module, report: dict[str, Any] | None) -> None:
    object.__setattr__(model, "vittui_load_report", report)


def load_report(model: nn.Module) -> dict[str, Any] | None:
    """What `build_model` loaded into the model: loaded count, skipped (shape mismatch), missing, unexpected."""
    return getattr(model, "vittui_load_report", None)



def save_pretrained_local(model: nn.Module, folder: str | Path) -> Path:
    """Save weights + config.json so that `build_model(pretrained=True, weights=folder)` restores them.

    timm: `model.safetensors` + timm's config.json (architecture, model_args); transformers:
    `save_pretrained`. A peft (LoRA) model is saved with its adapters merged into the weights.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if type(model).__module__.startswith("peft"):
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    base = unwrap(model)
    if is_hf(base):
        base.save_pretrained(str(folder), safe_serialization=True)
        return folder
    if hasattr(base, "pretrained_cfg"):
        from timm.models import save_for_hf

        save_for_hf(base, str(folder), safe_serialization=True)
        return folder
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


__all__ = ["load_into", "set_report", "load_report", "save_pretrained_local"]

"""Build a classification network from a `ModelSection`: timm or transformers, pretrained or from config.

Whatever comes back, `model(x)` returns a logits tensor of shape (batch, num_classes): transformers models
are wrapped in `HFClassifier`, whose `forward` returns `.logits`.

This module only dispatches (no torch at import). The pieces, each in a module named for its job:

- `vittui.models.resolve`      which library builds a name (`resolve_source`), no torch
- `vittui.models.timm_build`   building timm models (`build_timm`, `timm_overrides`)
- `vittui.models.hf_build`     building transformers models (`build_hf`)
- `vittui.models.hf`           `HFClassifier`, the wrapper that returns logits
- `vittui.models.weights`      loading weights where the shapes fit (`load_report`), `save_pretrained_local`
- `vittui.models.fetch`        finding pretrained weights: a local file or folder, or the Hub cache
- `vittui.models.structure`    `unwrap`, `is_hf`, the encoder blocks and depth indices, no torch
- `vittui.models.checkpointing` `set_grad_checkpointing`
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vittui.models.errors import ModelError
from vittui.models.resolve import resolve_source
from vittui.recipe import ModelSection

if TYPE_CHECKING:
    from torch import nn


def build_model(m: ModelSection, num_classes: int, *, drop_path: float = 0.0, dropout: float = 0.0) -> nn.Module:
    """The network the recipe describes, with a fresh head for `num_classes`; forward gives logits.

    After a load from `model.weights` (or a local folder), `load_report(model)` says what was skipped.
    """
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1 (got {num_classes})")
    source = resolve_source(m.name, m.source)
    if source == "timm":
        from vittui.models.timm_build import build_timm

        return build_timm(m, num_classes, drop_path, dropout)
    from vittui.models.hf_build import build_hf

    return build_hf(m, num_classes, drop_path, dropout)


__all__ = ["build_model", "resolve_source"]

"""`HFClassifier`: the wrapper that makes a transformers image classifier return a logits tensor.

`model(x)` of every model vittui builds returns logits of shape (batch, num_classes); transformers models
return an output object, so `build_model` wraps them in this. `vittui.models.structure.unwrap` sees
through it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class HFClassifier(nn.Module):
    """A transformers image classifier whose forward returns the logits tensor.

    `.hf` is the transformers model. `forward_with_attentions(x)` returns (logits, attentions) with the
    eager attention kernel for that one call (sdpa returns no attention maps).
    """

    def __init__(self, hf: nn.Module, interpolate_pos_encoding: bool = False):
        super().__init__()
        self.hf = hf
        self.interpolate_pos_encoding = interpolate_pos_encoding

    def _kwargs(self) -> dict[str, Any]:
        return {"interpolate_pos_encoding": True} if self.interpolate_pos_encoding else {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=x, **self._kwargs()).logits

    def forward_with_attentions(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        cfg = self.hf.config
        before = getattr(cfg, "_attn_implementation", None)
        cfg._attn_implementation = "eager"
        try:
            out = self.hf(pixel_values=x, output_attentions=True, **self._kwargs())
        finally:
            cfg._attn_implementation = before
        return out.logits, tuple(out.attentions or ())



__all__ = ["HFClassifier"]

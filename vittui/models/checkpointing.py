"""Gradient (activation) checkpointing on a built model, timm or transformers, through its wrappers."""

from __future__ import annotations

from typing import Any

from vittui.models.structure import unwrap


def set_grad_checkpointing(model: Any, enabled: bool = True) -> bool:
    """Trade compute for activation memory; False when the model has no support for it."""
    base = unwrap(model)
    if hasattr(base, "set_grad_checkpointing"):
        try:
            base.set_grad_checkpointing(enabled)
            return True
        except (AssertionError, NotImplementedError, AttributeError):
            return False
    if hasattr(base, "gradient_checkpointing_enable"):
        if not getattr(base, "supports_gradient_checkpointing", False):
            return False
        kw = {"use_reentrant": False}  # gradients still flow when the embeddings are frozen
        try:
            if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5
                if enabled:
                    base.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
                else:
                    base.activation_checkpointing_disable()
            elif enabled:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
            else:
                base.gradient_checkpointing_disable()
            return True
        except (ValueError, NotImplementedError):
            return False
    return False


__all__ = ["set_grad_checkpointing"]

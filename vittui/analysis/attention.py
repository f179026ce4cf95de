"""Attention maps out of timm and Hugging Face ViTs (torch): model plumbing, extraction, and `probe`, the
one call the training loop makes (extract, summarise, save).

`extract_attention` returns a torch tensor (L, B, H, T, T) of probabilities (rows sum to 1): L layers,
B images, H heads, T tokens (prefix tokens first: CLS, distillation token, registers, as the model's
embeddings prepend them; then patches in row-major order). Models without a CLS token (GAP ViTs) are probed
too: their map is the attention each patch receives, averaged over the patch queries (`query` "patch_mean").
Windowed attention (Swin) has no image-wide map: `probe` raises `ProbeUnavailable`, whose message is the one
line the run's log and the attention pane show (`probe_off_message`). The statistics are in `vittui.analysis.attention_stats` (numpy), the probe files in
`vittui.runs.probes`; `unwrap`, `is_hf`, `num_prefix_tokens` and `patch_size_of` come from
`vittui.models.structure` (importable from here too).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from vittui.analysis.attention_stats import infer_grid, query_for, summarize
from vittui.models.structure import (has_class_token, hf_classifier, is_hf, is_windowed, num_prefix_tokens,
                                     patch_size_of, unwrap)
from vittui.runs.events import PROBE_OFF_PREFIX, probe_off_message
from vittui.runs.probes import make_event, save_probe


class ProbeUnavailable(ValueError):
    """The model has no attention map the probe can show (windowed attention); the message says why, plainly."""

    plain = True  # `probe_off_message` shows the message without the class name


def windowed_message(model: Any) -> str:
    return (f"not available for windowed attention ({type(unwrap(model)).__name__}): each window attends "
            "only within itself, so there is no image-wide attention map; gradients and metrics still run")


def geometry(model: Any, images_shape: Sequence[int], tokens: int | None = None
             ) -> tuple[tuple[int, int], tuple[int, int], int]:
    """(grid, patch_size, num_prefix_tokens) for images of shape (B, C, H, W) fed to `model`.

    The grid comes from the image size and patch size; when `tokens` is given and disagrees (a model that
    pools or crops), a square grid is inferred from the token count instead."""
    prefix = num_prefix_tokens(model)
    ph, pw = patch_size_of(model)
    h, w = int(images_shape[-2]), int(images_shape[-1])
    grid = (h // ph, w // pw)
    if tokens is not None and grid[0] * grid[1] != tokens - prefix:
        grid = infer_grid(tokens - prefix)
    return grid, (ph, pw), prefix


def extract_attention(model: Any, images: Any) -> "torch.Tensor":
    """Attention probabilities of every layer: a float32 CPU tensor (L, B, H, T, T).

    Runs in eval mode under `torch.no_grad` and puts back every module's train/eval flag afterwards.
    timm models: fused attention is switched off on each attention module for the call (the probabilities
    are never materialised otherwise) and the input of `attn_drop` — the softmax output — is hooked; the
    `fused_attn` flags are restored afterwards. transformers models: called with `output_attentions=True`
    under eager attention, and the previous attention implementation is restored afterwards."""
    import torch

    net = unwrap(model)
    if is_windowed(net):
        raise ProbeUnavailable(windowed_message(net))
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            if is_hf(net):
                maps = _extract_hf(net, images, _hf_kwargs(model, net, images))
            else:
                maps = _extract_timm(net, images)
    finally:
        for m, mode in modes:
            m.training = mode
    return torch.stack([a.detach().float().cpu() for a in maps])


def _extract_timm(net: Any, images: Any) -> list:
    attn_modules = [m for m in net.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")]
    if not attn_modules:
        raise ValueError(f"{type(net).__name__} has no timm attention modules (fused_attn + attn_drop)")
    saved = [(m, m.fused_attn) for m in attn_modules]
    captured: list = []

    def hook(_mod, inputs, _output):
        captured.append(inputs[0])

    handles = []
    try:
        for m in attn_modules:
            m.fused_attn = False
            handles.append(m.attn_drop.register_forward_hook(hook))
        net(images)
    finally:
        for h in handles:
            h.remove()
        for m, flag in saved:
            m.fused_attn = flag
    if len(captured) != len(attn_modules):
        raise RuntimeError(f"captured {len(captured)} attention maps from {len(attn_modules)} attention modules")
    return captured


def _hf_kwargs(model: Any, net: Any, images: Any) -> dict[str, Any]:
    """The keyword arguments the training forward passes: `interpolate_pos_encoding=True` when the
    `HFClassifier` wrapper sets it (a pretrained model at a non-native size, as `build_model` wraps it), or when
    the images' size differs from the config's and the model takes the argument."""
    wrapper = hf_classifier(model) if callable(getattr(model, "modules", None)) else None
    if wrapper is not None and getattr(wrapper, "interpolate_pos_encoding", False):
        return {"interpolate_pos_encoding": True}
    size = getattr(net.config, "image_size", None)
    if size is not None and tuple(images.shape[-2:]) != tuple(_pair(size)):
        import inspect

        try:
            if "interpolate_pos_encoding" in inspect.signature(net.forward).parameters:
                return {"interpolate_pos_encoding": True}
        except (TypeError, ValueError):  # pragma: no cover
            pass
    return {}


def _pair(x: Any) -> tuple[int, int]:
    return (int(x[0]), int(x[1])) if isinstance(x, (tuple, list)) else (int(x), int(x))


def _extract_hf(net: Any, images: Any, kwargs: dict[str, Any] | None = None) -> list:
    config = net.config
    previous = config._attn_implementation
    switched = previous != "eager"
    if switched:
        _set_attn_impl(net, "eager")
    try:
        out = net(pixel_values=images, output_attentions=True, **(kwargs or {}))
    finally:
        if switched:
            _set_attn_impl(net, previous)
    attentions = getattr(out, "attentions", None)
    if not attentions:
        raise RuntimeError(f"{type(net).__name__} returned no attentions with output_attentions=True")
    return list(attentions)


def _set_attn_impl(net: Any, impl: Any) -> None:
    if hasattr(net, "set_attn_implementation") and impl is not None:
        try:
            net.set_attn_implementation(impl)
            return
        except Exception:  # noqa: BLE001 - fall back to setting the config field
            pass
    net.config._attn_implementation = impl


def probe(model: Any, images: Any, run_attention_dir: str | Path | None = None, step: int = 0, *,
          mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
    """One call for the training loop: extract, summarise and (with a folder) save.

    The map the dashboard draws is the CLS row for models with a CLS token and, for models without one,
    the attention each patch receives averaged over the patch queries; the file and the event say which
    (`query`). Raises `ProbeUnavailable` for windowed attention (Swin).

    Returns (attention tensor, summary, event or None)."""
    attn = extract_attention(model, images)
    grid, ps, prefix = geometry(model, tuple(images.shape), tokens=attn.shape[-1])
    query = query_for(has_class_token(model))
    summary = summarize(attn, grid, ps, prefix)
    event = None
    if run_attention_dir is not None:
        rel = save_probe(run_attention_dir, step, attn, images, grid=grid, patch_size=ps,
                         num_prefix_tokens=prefix, mean=mean, std=std, query=query)
        event = make_event(step, rel, summary, query=query)
    return attn, summary, event


__all__ = ["extract_attention", "geometry", "probe", "ProbeUnavailable", "probe_off_message", "PROBE_OFF_PREFIX",
           "unwrap", "is_hf", "num_prefix_tokens", "has_class_token", "patch_size_of"]

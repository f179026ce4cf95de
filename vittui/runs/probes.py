"""Probe files: the attention arrays a worker saves under `attention/` and any reader loads. numpy, no torch.

    attention/step-NNNNNNNN.npz   float16 attention (L, B, H, T, T), the step, and the geometry
                                  (grid, patch_size, num_prefix_tokens) when known
    attention/images.npz          the probe images as uint8 (B, H, W, C), written once

Part of the run-directory contract, like `events.jsonl`: the worker writes them
(`vittui.analysis.attention.probe`), the dashboard reads them. Arrays may be numpy or torch tensors
(duck-typed: anything with `.detach()` is moved to the CPU first).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vittui.runs.events import AttentionProbe
from vittui.runs.store import atomic_write_bytes

PROBE_IMAGES = "images.npz"
def as_float64(x: Any) -> np.ndarray:
    """A float64 numpy array from a numpy array, a nested sequence or a torch tensor (on any device)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def pair(x: Any) -> tuple[int, int]:
    """(a, b) from an int or a two-element sequence."""
    if isinstance(x, (tuple, list)):
        return int(x[0]), int(x[1])
    return int(x), int(x)


def probe_filename(step: int) -> str:
    return f"step-{int(step):08d}.npz"


def _atomic_savez(path: Path, **arrays: Any) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue(), fsync=False)


def images_to_uint8(images: Any, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> np.ndarray:
    """(B, C, H, W) tensors -> (B, H, W, C) uint8. With mean/std, un-normalises first; float images are
    then clipped to [0, 1] (if they already lie there) or min-max scaled over the batch."""
    x = as_float64(images) if not (isinstance(images, np.ndarray) and images.dtype == np.uint8) else images
    if x.dtype == np.uint8:
        return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if x.ndim == 4 and x.shape[1] in (1, 3) else x
    if mean is not None and std is not None:
        c = x.shape[1]
        m = np.asarray(mean, dtype=np.float64)[:c].reshape(1, -1, 1, 1)
        s = np.asarray(std, dtype=np.float64)[:c].reshape(1, -1, 1, 1)
        x = x * s + m
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        if mean is not None and std is not None:
            x = np.clip(x, 0.0, 1.0)
        else:
            x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    out = np.round(x * 255.0).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(out, 1, -1))


def save_probe(run_attention_dir: str | Path, step: int, attn: Any, images: Any = None, *,
               grid: tuple[int, int] | int | None = None, patch_size: tuple[int, int] | int | None = None,
               num_prefix_tokens: int | None = None, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None, query: str | None = None) -> str:
    """Write `attention/step-NNNNNNNN.npz` (float16 attention (L, B, H, T, T) plus geometry) and, the
    first time, `attention/images.npz` (the probe images as uint8 (B, H, W, C)). `query` says which map the
    file's readers draw: "cls" (the CLS row) or "patch_mean" (no CLS token: attention received per patch,
    mean over patch queries; see `vittui.analysis.attention_stats.QUERY_LABELS`). Returns the probe's path
    relative to the run directory (the attention folder's parent), as `AttentionProbe.path` wants it."""
    d = Path(run_attention_dir)
    d.mkdir(parents=True, exist_ok=True)
    a = as_float64(attn).astype(np.float16)
    meta: dict[str, Any] = {"attention": a, "step": np.int64(step)}
    if grid is not None:
        meta["grid"] = np.asarray(pair(grid), dtype=np.int64)
    if patch_size is not None:
        meta["patch_size"] = np.asarray(pair(patch_size), dtype=np.int64)
    if num_prefix_tokens is not None:
        meta["num_prefix_tokens"] = np.int64(num_prefix_tokens)
    if query is not None:
        meta["query"] = np.asarray(str(query))
    name = probe_filename(step)
    _atomic_savez(d / name, **meta)
    if images is not None and not (d / PROBE_IMAGES).exists():
        _atomic_savez(d / PROBE_IMAGES, images=images_to_uint8(images, mean, std))
    return f"{d.name}/{name}"


@dataclass
class Probe:
    step: int
    attention: np.ndarray  # float32 (L, B, H, T, T)
    images: np.ndarray | None  # uint8 (B, H, W, C)
    grid: tuple[int, int] | None = None
    patch_size: tuple[int, int] | None = None
    num_prefix_tokens: int | None = None
    query: str | None = None  # "cls" | "patch_mean"; None in files written before it was saved


def load_probe(path: str | Path, run_dir: str | Path | None = None) -> Probe:
    """Read a probe written by `save_probe`; a relative `path` is taken from `run_dir` when given.
    The images come from `images.npz` beside it (None if missing)."""
    p = Path(path)
    if run_dir is not None and not p.is_absolute():
        p = Path(run_dir) / p
    with np.load(p) as z:
        attention = z["attention"].astype(np.float32)
        step = int(z["step"]) if "step" in z else 0
        grid = tuple(int(v) for v in z["grid"]) if "grid" in z else None
        ps = tuple(int(v) for v in z["patch_size"]) if "patch_size" in z else None
        prefix = int(z["num_prefix_tokens"]) if "num_prefix_tokens" in z else None
        query = str(z["query"]) if "query" in z else None
    images = None
    ip = p.parent / PROBE_IMAGES
    if ip.exists():
        with np.load(ip) as z:
            images = z["images"]
    return Probe(step=step, attention=attention, images=images, grid=grid, patch_size=ps,  # type: ignore[arg-type]
                 num_prefix_tokens=prefix, query=query)


def make_event(step: int, path: str, summary: Any, query: str = "cls") -> AttentionProbe:
    """The `AttentionProbe` event that announces a saved probe and its statistics (`summary`: an
    `vittui.analysis.attention_stats.AttentionSummary`) and which query its map is read from."""
    return AttentionProbe(step=int(step), path=str(path), entropy=summary.entropy, distance=summary.distance,
                          diversity=list(summary.diversity), flags=list(summary.flags), query=str(query))

"""What the attention pane shows, as plain data (numpy; no Textual, no torch).

A probe file holds attention (L, B, H, T, T) for the fixed probe images. `load` reads one (in a thread
worker: the disk and the rollout never run on the event loop) and precomputes the rollout of every image;
`attention_map` picks the 2-D map for a selection: the CLS row of one layer and head over the patches (or,
for a model without a CLS token, the attention each patch receives averaged over the patch queries), or the
rollout through all layers. `query` says which, and `map_label` names it for the pane."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class LoadedProbe:
    path: str  # as in the AttentionProbe event, relative to the run directory
    step: int
    attention: np.ndarray  # float32 (L, B, H, T, T)
    images: np.ndarray | None  # uint8 (B, H, W, C)
    grid: tuple[int, int]
    patch_size: tuple[int, int] | None
    prefix: int
    rollout: np.ndarray  # (B, gh, gw): the rollout over the patches from the probe's query
    query: str = "cls"  # "cls" | "patch_mean" (no CLS token)

    @property
    def layers(self) -> int:
        return int(self.attention.shape[0])

    @property
    def images_count(self) -> int:
        return int(self.attention.shape[1])

    @property
    def heads(self) -> int:
        return int(self.attention.shape[2])


@dataclass
class Selection:
    layer: int = 0
    head: int = 0
    rollout: bool = False
    image: int = 0

    def clamp(self, probe: LoadedProbe | None) -> "Selection":
        if probe is not None:
            self.layer = min(max(self.layer, 0), probe.layers - 1)
            self.head = min(max(self.head, 0), probe.heads - 1)
            self.image = min(max(self.image, 0), probe.images_count - 1)
        return self


def load(run_dir: str | Path, rel_path: str) -> LoadedProbe:
    """Read a probe written by `vittui.runs.probes.save_probe` and precompute its rollout."""
    from vittui.analysis.attention_stats import probe_geometry, rollout_map
    from vittui.runs.probes import load_probe

    p = load_probe(rel_path, run_dir)
    a = p.attention
    try:
        prefix, grid, query = probe_geometry(p)
    except ValueError as e:
        raise ValueError(f"{rel_path}: {e}") from None
    roll = rollout_map(a, prefix, grid, query=query).astype(np.float32)
    return LoadedProbe(path=rel_path, step=p.step, attention=a, images=p.images, grid=grid,
                       patch_size=p.patch_size, prefix=prefix, rollout=roll, query=query)


def attention_map(probe: LoadedProbe, sel: Selection) -> np.ndarray:
    """(gh, gw) map of the selection: rollout, or the query's attention over the patches (the CLS row, or
    without a CLS token the attention each patch receives, averaged over the patch queries)."""
    gh, gw = probe.grid
    if sel.rollout:
        return probe.rollout[sel.image]
    a = probe.attention[sel.layer, sel.image, sel.head]
    if probe.query == "cls":
        row = a[0, probe.prefix:]
    else:
        row = np.asarray(a[probe.prefix:, probe.prefix:], dtype=np.float64).mean(axis=0)
    return np.asarray(row, dtype=np.float64).reshape(gh, gw)


def map_label(probe: LoadedProbe, rollout: bool) -> str:
    """What the heatmap shows, in words: "CLS attention", "rollout from the mean of patch queries", ..."""
    from vittui.analysis.attention_stats import QUERY_LABELS, ROLLOUT_LABELS

    return (ROLLOUT_LABELS if rollout else QUERY_LABELS).get(probe.query, probe.query)


def image_of(probe: LoadedProbe, index: int) -> np.ndarray | None:
    if probe.images is None or index >= len(probe.images):
        return None
    return probe.images[index]


def luminance(image: np.ndarray) -> np.ndarray:
    """(H, W) luminance 0..255 of a uint8 (H, W, C) image."""
    a = np.asarray(image, dtype=np.float64)
    if a.ndim == 2:
        return a
    if a.shape[-1] == 1:
        return a[..., 0]
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114

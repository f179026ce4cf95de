"""Text renderings of 2-D maps for the terminal: pure numpy, no Textual or Rich; widgets turn the returned
strings and colour tuples into styled text.

Scaling: values are mapped linearly to [0, 1] between `vmin` and `vmax` (default: the array's min and max;
a constant array maps to 0). NaN counts as 0.

Resampling to the requested size: "nearest" takes, for output cell i of n over m source cells, the source
cell floor((i + 0.5) * m / n); "area" averages the source cells the output cell covers, weighted by overlap.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

RAMP = " .:-=+*#%@"
HALF_BLOCK = "▀"  # fg colours the upper pixel, bg the lower

RGB = tuple[int, int, int]

# viridis at 0, 0.25, 0.5, 0.75, 1 (matplotlib's table), interpolated linearly between anchors
VIRIDIS_ANCHORS: tuple[RGB, ...] = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))


def _as2d(values: Any) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {a.shape}")
    return a


def normalize(values: Any, vmin: float | None = None, vmax: float | None = None) -> np.ndarray:
    """Linear map to [0, 1] (clipped); NaN -> 0; a constant array -> 0."""
    a = np.asarray(values, dtype=np.float64)
    finite = a[np.isfinite(a)]
    lo = float(finite.min()) if vmin is None and finite.size else (vmin if vmin is not None else 0.0)
    hi = float(finite.max()) if vmax is None and finite.size else (vmax if vmax is not None else 1.0)
    if hi > lo:
        out = (a - lo) / (hi - lo)
    else:
        out = np.zeros_like(a)
    return np.clip(np.nan_to_num(out, nan=0.0), 0.0, 1.0)


def _area_matrix(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) weights: output cell i covers [i*n_in/n_out, (i+1)*n_in/n_out) of the input."""
    w = np.zeros((n_out, n_in))
    scale = n_in / n_out
    for i in range(n_out):
        a, b = i * scale, (i + 1) * scale
        for j in range(int(math.floor(a)), min(n_in, int(math.ceil(b)))):
            w[i, j] = max(0.0, min(b, j + 1) - max(a, j))
        w[i] /= w[i].sum()
    return w


def _nearest_index(n_out: int, n_in: int) -> np.ndarray:
    return np.minimum(((np.arange(n_out) + 0.5) * n_in / n_out).astype(np.int64), n_in - 1)


def resample(values: Any, height: int, width: int, method: str = "nearest") -> np.ndarray:
    """Resize a 2-D array (or H x W x C) to height x width."""
    a = np.asarray(values, dtype=np.float64)
    h, w = a.shape[:2]
    if method == "nearest":
        return a[_nearest_index(height, h)][:, _nearest_index(width, w)]
    if method == "area":
        rows, cols = _area_matrix(height, h), _area_matrix(width, w)
        return np.einsum("ih,hw...,jw->ij...", rows, a, cols)
    raise ValueError(f"method must be nearest or area (got {method!r})")


def ascii_heatmap(values2d: Any, width: int, height: int, vmin: float | None = None,
                  vmax: float | None = None, method: str = "nearest", ramp: str = RAMP) -> list[str]:
    """`height` strings of `width` characters; normalised value v picks ramp[round(v * (len(ramp) - 1))]
    (rounding halves up), so the minimum is ' ' and the maximum '@'."""
    a = _as2d(values2d)
    n = normalize(a, vmin, vmax)
    r = resample(n, height, width, method)
    idx = np.floor(r * (len(ramp) - 1) + 0.5).astype(np.int64).clip(0, len(ramp) - 1)
    return ["".join(ramp[i] for i in row) for row in idx]


def colormap(v: float, anchors: Sequence[RGB] = VIRIDIS_ANCHORS) -> RGB:
    """A value in [0, 1] (clipped; NaN -> 0) to an (r, g, b) of ints, interpolating between evenly
    spaced anchors and rounding halves up."""
    if v is None or not math.isfinite(v):
        v = 0.0
    v = min(1.0, max(0.0, float(v)))
    pos = v * (len(anchors) - 1)
    i = min(int(pos), len(anchors) - 2)
    f = pos - i
    lo, hi = anchors[i], anchors[i + 1]
    return tuple(int(math.floor(a + (b - a) * f + 0.5)) for a, b in zip(lo, hi))  # type: ignore[return-value]


def halfblock_cells(values2d: Any, width: int, rows: int, cmap: Callable[[float], RGB] = colormap,
                    vmin: float | None = None, vmax: float | None = None,
                    method: str = "nearest") -> list[list[tuple[RGB, RGB]]]:
    """`rows` lists of `width` (fg, bg) pairs: each cell is drawn with HALF_BLOCK, fg the upper pixel and
    bg the lower, so the map is resampled to (2 * rows) x width pixels."""
    a = _as2d(values2d)
    n = resample(normalize(a, vmin, vmax), 2 * rows, width, method)
    return [[(cmap(float(n[2 * r, c])), cmap(float(n[2 * r + 1, c]))) for c in range(width)]
            for r in range(rows)]


def _image_hwc01(image: Any) -> np.ndarray:
    if hasattr(image, "detach"):
        image = image.detach().cpu().numpy()
    a = np.asarray(image)
    if a.ndim == 3 and a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3):  # CHW
        a = np.moveaxis(a, 0, -1)
    if a.ndim == 2:
        a = a[:, :, None]
    if a.ndim != 3:
        raise ValueError(f"expected an image (H, W), (H, W, C) or (C, H, W), got shape {a.shape}")
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    return np.clip(a.astype(np.float64), 0.0, 1.0)


def image_cells(image: Any, width: int, rows: int, gray: bool = False,
                method: str = "nearest") -> list[list[tuple[RGB, RGB]]]:
    """An image (uint8, or float in [0, 1]) as half-block cells like `halfblock_cells`; with `gray`, the
    luminance 0.299 R + 0.587 G + 0.114 B is shown."""
    a = _image_hwc01(image)
    if a.shape[-1] == 1:
        a = np.repeat(a, 3, axis=-1)
    if gray:
        lum = a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
        a = np.repeat(lum[..., None], 3, axis=-1)
    r = resample(a, 2 * rows, width, method)
    px = np.floor(r * 255.0 + 0.5).astype(np.int64).clip(0, 255)

    def rgb(p: np.ndarray) -> RGB:
        return int(p[0]), int(p[1]), int(p[2])

    return [[(rgb(px[2 * i, c]), rgb(px[2 * i + 1, c])) for c in range(width)] for i in range(rows)]


def grayscale_cells(image: Any, width: int, rows: int, method: str = "nearest") -> list[list[tuple[RGB, RGB]]]:
    """The probe image in gray levels as half-block cells."""
    return image_cells(image, width, rows, gray=True, method=method)

"""What a plot draws of a series: a downsampled copy, no more points than the plot has columns. (The series
themselves are the run's history, `vittui.runs.history`, with the smoothing the progress line shares.)"""

from __future__ import annotations

import math
from typing import Sequence


def downsample(xs: Sequence[float], ys: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """Bucket means down to at most `max_points`; the last point is kept exact so the line ends where the run is."""
    n = len(xs)
    if n <= max_points or max_points < 2:
        return list(xs), list(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    buckets = max_points - 1
    size = (n - 1) / buckets
    for b in range(buckets):
        lo, hi = int(b * size), max(int((b + 1) * size), int(b * size) + 1)
        seg = [y for y in ys[lo:hi] if y is not None and math.isfinite(y)]
        out_x.append(sum(xs[lo:hi]) / (hi - lo))
        out_y.append(sum(seg) / len(seg) if seg else math.nan)
    out_x.append(xs[-1])
    out_y.append(ys[-1])
    return out_x, out_y

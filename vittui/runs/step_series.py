"""Per-step metrics kept at a bounded size, so a run of a million steps costs the monitor what a run of
two thousand does — in memory and in every redraw.

Points fold into buckets of `width` consecutive steps (width 1 until the series is long), each holding
the mean of what fell into it. When there are `2 * max_buckets` buckets, neighbours merge and the width
doubles: the whole run stays in view at a resolution finer than any terminal plot can draw, and a short
run keeps every step exactly. Non-finite values (a NaN loss) are left out of a bucket's mean and shown
as a gap only where a bucket holds nothing else. `max_buckets=None` never merges: every step exactly
(what `vittui compare` reports).
"""

from __future__ import annotations

import math
from typing import Sequence


class StepSeries:
    def __init__(self, columns: Sequence[str], max_buckets: int | None = 1024):
        self.columns = tuple(columns)
        self.max_buckets = None if max_buckets is None else max(2, max_buckets)
        self.width = 1  # steps per bucket
        self.points = 0  # points folded in, over the whole run
        self.version = 0  # bumps on every change: the screen redraws when it moved
        self._first: list[int] = []  # first step a bucket covers
        self._last: list[int] = []  # the last step actually folded into it
        self._n: list[int] = []
        self._xsum: list[float] = []
        self._sum: list[list[float]] = [[] for _ in self.columns]
        self._cnt: list[list[int]] = [[] for _ in self.columns]

    def __len__(self) -> int:
        return len(self._first)

    @property
    def last_step(self) -> int | None:
        return self._last[-1] if self._last else None

    def add(self, step: int, values: Sequence[float | None]) -> None:
        if self._last and step <= self._last[-1]:
            self.cut(step)  # a resumed run repeats the steps after its last checkpoint
        if not self._first or step - self._first[-1] >= self.width:
            self._first.append(step - (step - self._first[-1]) % self.width if self._first else step)
            self._last.append(step)
            self._n.append(0)
            self._xsum.append(0.0)
            for s, c in zip(self._sum, self._cnt):
                s.append(0.0)
                c.append(0)
        self._last[-1] = step
        self._n[-1] += 1
        self._xsum[-1] += step
        for v, s, c in zip(values, self._sum, self._cnt):
            if v is not None and math.isfinite(v):
                s[-1] += v
                c[-1] += 1
        self.points += 1
        self.version += 1
        if self.max_buckets is not None and len(self._first) >= 2 * self.max_buckets:
            self._merge()

    def cut(self, step: int) -> None:
        """Drop every bucket that holds `step` or a later one (exact while buckets are one step wide)."""
        keep = len(self._last)
        while keep and self._last[keep - 1] >= step:
            keep -= 1
        for arr in (self._first, self._last, self._n, self._xsum, *self._sum, *self._cnt):
            del arr[keep:]
        self.version += 1

    def _merge(self) -> None:
        def pairs(a: list, add=lambda x, y: x + y) -> list:
            out = [add(a[i], a[i + 1]) for i in range(0, len(a) - 1, 2)]
            if len(a) % 2:
                out.append(a[-1])
            return out

        self._first = self._first[::2]
        self._last = pairs(self._last, max)
        self._n = pairs(self._n)
        self._xsum = pairs(self._xsum)
        self._sum = [pairs(s) for s in self._sum]
        self._cnt = [pairs(c) for c in self._cnt]
        self.width *= 2

    # --- read out --------------------------------------------------------------------------------
    def xs(self) -> list[float]:
        """Each bucket's mean step (the step itself while buckets are one step wide)."""
        return [x / n for x, n in zip(self._xsum, self._n)]

    def ys(self, column: str) -> list[float]:
        i = self.columns.index(column)
        return [s / c if c else math.nan for s, c in zip(self._sum[i], self._cnt[i])]

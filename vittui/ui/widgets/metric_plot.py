"""A plotext line plot of whole series, drawn from a downsampled copy. The screen sets the series and
calls `redraw()` at a capped rate; the widget keeps the full series for tests and for zooming later."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from textual_plotext import PlotextPlot

from vittui.ui.curves import downsample


@dataclass
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    marker: str = "braille"  # markers tell lines apart without colour (NO_COLOR)
    color: str | None = None


class MetricPlot(PlotextPlot):
    can_focus = True

    def __init__(self, title: str, *, empty: str = "waiting for data", max_points: int = 400, **kwargs) -> None:
        super().__init__(**kwargs)
        self.title = title
        self.empty = empty
        self.max_points = max_points
        self.series: list[Series] = []
        self.plotted: dict[str, int] = {}  # label -> points actually drawn
        self.draws = 0
        self.border_title = title

    def set_series(self, series: list[Series]) -> None:
        self.series = series

    def series_lengths(self) -> dict[str, int]:
        return {s.label: len(s.xs) for s in self.series}

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        width = self.size.width or 60
        budget = max(16, min(self.max_points, 2 * width))
        self.plotted = {}
        any_data = False
        for s in self.series:
            pairs = [(x, y) for x, y in zip(s.xs, s.ys) if y is not None and math.isfinite(y)]
            if not pairs:
                continue
            xs, ys = downsample([p[0] for p in pairs], [p[1] for p in pairs], budget)
            kwargs = {"label": s.label, "marker": s.marker}
            if s.color:
                kwargs["color"] = s.color
            if len(xs) == 1:
                plt.scatter(xs, ys, **kwargs)
            else:
                plt.plot(xs, ys, **kwargs)
            self.plotted[s.label] = len(xs)
            any_data = True
        if not any_data:
            plt.title(self.empty)  # the border carries the plot's name
        self.draws += 1
        self.refresh()

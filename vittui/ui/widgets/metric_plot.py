"""A plotext line plot of whole series, drawn from a downsampled copy. The screen sets the series and
calls `redraw()` at a capped rate; the widget keeps the full series for tests and for zooming later.

Markers (`vittui.runs.history.Marker`: a knob change, a pause, a fault…) are drawn as a vertical line at
their step with their short tag beside it, the newest `MAX_DRAWN_MARKERS` of them; `drawn_markers` says
which, for tests and for the screen's legend."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from textual_plotext import PlotextPlot

from vittui.runs.history import Marker
from vittui.ui.curves import downsample

MAX_DRAWN_MARKERS = 12  # steps with markers drawn, the latest: more lines than this hide the curve
MARKER_COLOURS = {"knob": "orange", "fault": "red", "rewind": "red", "suspend": "magenta", "restart": "magenta"}


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
        self.markers: list[Marker] = []
        self.drawn_markers: list[tuple[int, str]] = []  # (step, tag) of the markers the last redraw drew
        self.plotted: dict[str, int] = {}  # label -> points actually drawn
        self.draws = 0
        self.border_title = title

    def set_series(self, series: list[Series]) -> None:
        self.series = series

    def set_markers(self, markers: list[Marker]) -> None:
        self.markers = list(markers)

    def series_lengths(self) -> dict[str, int]:
        return {s.label: len(s.xs) for s in self.series}

    def redraw(self) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        width = self.size.width or 60
        budget = max(16, min(self.max_points, 2 * width))
        self.plotted = {}
        self.drawn_markers = []
        any_data = False
        y_lo, y_hi, x_lo, x_hi = math.inf, -math.inf, math.inf, -math.inf
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
            y_lo, y_hi = min(y_lo, min(ys)), max(y_hi, max(ys))
            x_lo, x_hi = min(x_lo, min(xs)), max(x_hi, max(xs))
            any_data = True
        if not any_data:
            plt.title(self.empty)  # the border carries the plot's name
        else:
            self._draw_markers((x_lo + x_hi) / 2, y_lo, y_hi)
        self.draws += 1
        self.refresh()

    def _draw_markers(self, x_mid: float, y_lo: float, y_hi: float) -> None:
        """A vertical line at each marker's step (by kind in colour) with its tag, which says it without
        colour: in the plot's left half right of the line at the bottom (the legend has the top left), in
        its right half left of the line at the top, so the tag stays inside the plot."""
        plt = self.plt
        at_step: dict[int, list[Marker]] = {}  # markers at one step share a line and one tag ("lr x0.5 eval 5")
        for m in self.markers:
            at_step.setdefault(m.step, []).append(m)
        for step in sorted(at_step)[-MAX_DRAWN_MARKERS:]:
            marks = at_step[step]
            colour = MARKER_COLOURS.get(marks[-1].kind, "gray")
            tag = " ".join(dict.fromkeys(m.tag or m.kind for m in marks))
            plt.vline(step, colour)
            right = step > x_mid
            plt.text(tag, step, y_hi if right else y_lo, color=colour, alignment="right" if right else "left")
            self.drawn_markers.append((step, tag))

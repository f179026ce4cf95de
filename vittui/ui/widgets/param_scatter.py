"""The objective against one sampled parameter (plotext scatter), one point per trial with a value:
complete trials and pruned ones (at their last report) in two markers. The screen picks the parameter;
ranges that span more than two decades (a learning rate) are drawn on a log axis."""

from __future__ import annotations

import math

from textual_plotext import PlotextPlot

from vittui.sweep.status import StudyReport


class ParamScatter(PlotextPlot):
    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.param: str | None = None
        self.points: dict[str, list[tuple[float, float]]] = {}  # state -> (x, y) drawn, for tests
        self.border_title = "objective by parameter"

    def show(self, report: StudyReport, param: str | None) -> None:
        self.param = param
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        self.points = {}
        for state, marker in (("complete", "dot"), ("pruned", "x")):
            pts = [(float(t.params[param]), t.value) for t in report.trials
                   if param in t.params and t.state == state and t.value is not None
                   and isinstance(t.params[param], (int, float))]
            if pts:
                self.points[state] = pts
        xs = [x for pts in self.points.values() for x, _ in pts]
        log = bool(xs) and min(xs) > 0 and max(xs) / min(xs) > 100
        for state, pts in self.points.items():
            px = [math.log10(x) if log else x for x, _ in pts]
            plt.scatter(px, [y for _, y in pts], label=state, marker="dot" if state == "complete" else "x")
        plt.xlabel(f"log10 {param}" if log else (param or ""))
        if not self.points:
            plt.title("no trial with a value yet" if param else "no numeric parameter")
        self.border_title = f"{report.objective} by {param}" if param else "objective by parameter"
        self.refresh()

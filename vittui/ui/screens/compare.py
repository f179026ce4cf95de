"""Two or more runs side by side: train loss and val top-1 overlaid on shared axes (x by step, epoch or
wall time: `x` cycles), and a table of only the recipe fields that differ with each run's best and last
metrics. The data comes from `vittui.runs.compare.compare_runs` (pure, no torch), read in a thread
worker."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Static

from vittui.runs.history import smooth
from vittui.ui.messages import RunsCompared
from vittui.ui.screens.base import VittuiScreen
from vittui.ui.screens.modals import HelpModal, key_rows
from vittui.ui.widgets.compare_table import CompareTable
from vittui.ui.widgets.metric_plot import MetricPlot, Series

X_AXES = ("step", "epoch", "time")
X_LABEL = {"step": "step", "epoch": "epoch", "time": "wall time (s)"}
VAL_MARKERS = ("o", "*", "+", "x", "#", "@", "%", "&")  # tell runs apart without colour
COLOURS = ("cyan", "magenta", "green", "yellow", "red", "blue", "white", "orange")
HIDDEN_FIELDS = ("run.name",)  # the column header already says it
TRAIN_SMOOTHING = 0.6


def curve_x(curves, axis: str, kind: str) -> list[float]:
    return list(getattr(curves, f"{kind}_{axis}"))


def visible_fields(differing: dict) -> list[str]:
    return [k for k in differing if k not in HIDDEN_FIELDS]


class CompareScreen(VittuiScreen):
    BINDINGS = [
        Binding("x", "cycle_x", "X axis"),
        Binding("escape", "back", "Back"),
        Binding("question_mark", "help", "Help"),
    ]
    PALETTE = [("cycle_x", "Cycle x axis", "Plot against step, epoch or wall time")]

    def __init__(self, run_paths: list[Path]) -> None:
        super().__init__(classes="compare")
        self.run_paths = [Path(p) for p in run_paths]
        self.comparison = None
        self.axis = "step"

    def compose(self) -> ComposeResult:
        yield Static(f"comparing {len(self.run_paths)} runs", id="compare-title")
        with Horizontal(id="compare-plots"):
            yield MetricPlot("train loss", id="compare-loss")
            yield MetricPlot("val top-1", empty="no evaluations", id="compare-acc")
        yield CompareTable(id="compare-table")
        yield Footer()

    def on_mount(self) -> None:
        self.load()

    @work(thread=True, exclusive=True, exit_on_error=False, group="compare")
    def load(self) -> None:
        from vittui.runs.compare import compare_runs, table_rows

        try:
            cmp = compare_runs(self.run_paths)
            rows = table_rows(cmp)
        except Exception as e:  # noqa: BLE001 - shown on screen
            self.post_message(RunsCompared(None, error=f"{type(e).__name__}: {e}"))
            return
        self.post_message(RunsCompared(cmp, rows))

    def on_runs_compared(self, message: RunsCompared) -> None:
        cmp, rows = message.comparison, message.rows
        if cmp is None:
            self.query_one("#compare-title", Static).update(f"ERROR cannot compare: {message.error}")
            return
        self.comparison = cmp
        fields = visible_fields(cmp.differing_fields)
        rows = [r for r in rows if not (len(r) > 1 and r[0] in HIDDEN_FIELDS)]
        self.query_one(CompareTable).show(rows, fields)
        self.query_one("#compare-title", Static).update(
            f"comparing {', '.join(cmp.names)}   {len(fields)} recipe field{'s' if len(fields) != 1 else ''} differ"
        )
        self.redraw()

    def redraw(self) -> None:
        cmp = self.comparison
        if cmp is None:
            return
        axis = self.axis
        loss, acc = [], []
        for i, (run, c) in enumerate(zip(cmp.runs, cmp.curves)):
            colour = COLOURS[i % len(COLOURS)]
            loss.append(Series(f"{run.name}", curve_x(c, axis, "train"), smooth(c.train_loss, TRAIN_SMOOTHING),
                               color=colour))
            acc.append(Series(f"{run.name}", curve_x(c, axis, "val"), list(c.val_top1),
                              marker=VAL_MARKERS[i % len(VAL_MARKERS)], color=colour))
        for plot_id, series in (("#compare-loss", loss), ("#compare-acc", acc)):
            plot = self.query_one(plot_id, MetricPlot)
            plot.set_series(series)
            plot.border_subtitle = f"x: {X_LABEL[axis]}"
            plot.redraw()

    def action_cycle_x(self) -> None:
        self.axis = X_AXES[(X_AXES.index(self.axis) + 1) % len(X_AXES)]
        self.redraw()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_help(self) -> None:
        self.app.push_screen(HelpModal("Compare runs", key_rows(self),
                                       "x cycles the x axis: step, epoch, wall time. Train loss is smoothed "
                                       f"(EMA {TRAIN_SMOOTHING}); val top-1 is one marker per evaluation."))

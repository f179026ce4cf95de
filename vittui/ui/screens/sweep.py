"""A sweep's study: trials table, best-so-far curve, the objective against each sampled parameter and
Optuna's parameter importances. Enter on a trial opens its run's monitor; p shows the next parameter.

Optuna's import and the importance evaluator take about a second, so the study is read in a thread
worker (vittui.sweep.status.study_report) every few seconds and handed over in a `StudyRead` message;
the event loop only draws."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.widgets import Footer, Static

from vittui.ui.messages import StudyRead
from vittui.ui.screens.base import VittuiScreen, idle_unless_cancelled
from vittui.ui.screens.modals import HelpModal, key_rows
from vittui.ui.widgets.importance_bars import ImportanceBars
from vittui.ui.widgets.metric_plot import MetricPlot, Series
from vittui.ui.widgets.param_scatter import ParamScatter
from vittui.ui.widgets.trials_table import TrialsTable

REFRESH_S = 5.0


class SweepScreen(VittuiScreen):
    BINDINGS = [
        Binding("enter", "open_trial", "Monitor"),
        Binding("p", "next_param", "Next param"),
        Binding("escape", "back", "Back"),
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]
    PALETTE = [("open_trial", "Open trial", "The monitor of the trial under the cursor"),
               ("next_param", "Next parameter", "Plot the objective against the next sampled parameter")]

    param_index: var[int] = var(0)

    def __init__(self, study: str, storage: str) -> None:
        super().__init__(classes="sweep")
        self.study = study
        self.storage = storage
        self.report = None
        self.reads = 0

    def compose(self) -> ComposeResult:
        yield Static(f"sweep {self.study}  (reading {self.storage})", id="sweep-title")
        yield TrialsTable(id="sweep-trials")
        with Horizontal(id="sweep-plots"):
            yield MetricPlot("best so far", empty="no complete trial yet", id="sweep-best")
            yield ParamScatter(id="sweep-scatter")
            with Vertical(id="sweep-side"):
                yield ImportanceBars(id="sweep-importances")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(TrialsTable).focus()
        self.read_study()

    @work(thread=True, exclusive=True, exit_on_error=False, group="study", name="read-study")
    def read_study(self) -> None:
        from vittui.sweep.status import study_report

        while True:
            try:
                self.post_message(StudyRead(study_report(self.study, self.storage)))
            except Exception as e:  # noqa: BLE001 - a storage that is gone says why on screen
                self.post_message(StudyRead(None, e.args[0] if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"))
            if not idle_unless_cancelled(REFRESH_S):
                return

    def on_study_read(self, message: StudyRead) -> None:
        self.reads += 1
        title = self.query_one("#sweep-title", Static)
        if message.report is None:
            title.update(f"sweep {self.study}: {message.error}")
            return
        r = self.report = message.report
        done = sum(t.state in ("complete", "pruned", "fail") for t in r.trials)
        best = f"; best {r.objective} {r.best.value:.4g} (trial {r.best.number})" if r.best is not None else ""
        title.update(f"sweep {r.study}: {done}/{r.n_trials or len(r.trials)} trials done, {r.direction} "
                     f"{r.objective}{best}")
        self.query_one(TrialsTable).show(r)
        plot = self.query_one("#sweep-best", MetricPlot)
        plot.set_series([Series("best", [n for n, _ in r.best_so_far], [v for _, v in r.best_so_far])])
        plot.redraw()
        self._draw_scatter()
        self.query_one(ImportanceBars).show(r)

    def _draw_scatter(self) -> None:
        if self.report is None:
            return
        params = self.report.params
        param = params[self.param_index % len(params)] if params else None
        self.query_one(ParamScatter).show(self.report, param)

    def watch_param_index(self) -> None:
        self._draw_scatter()

    def action_next_param(self) -> None:
        self.param_index += 1

    def on_trials_table_chosen(self, message: TrialsTable.Chosen) -> None:
        self._open(message.trial)

    def action_open_trial(self) -> None:
        if (trial := self.query_one(TrialsTable).current()) is not None:
            self._open(trial)

    def _open(self, trial) -> None:
        path = Path(trial.run_path) if trial.run_path else None
        if path is not None and not path.is_dir() and trial.run:  # the runs folder moved or is mounted elsewhere
            path = self.vittui_app.runs_root / trial.run
        if path is None or not path.is_dir():
            self.notify(f"trial {trial.number}: its run is not on this machine ({trial.run_path or 'never made'})",
                        severity="warning")
            return
        self.app.push_screen(_monitor(path))

    def action_back(self) -> None:
        self.app.pop_screen()  # to the runs screen, or to setup (`sweep status --tui` opens over it)

    def action_help(self) -> None:
        self.app.push_screen(HelpModal("Sweep", key_rows(self)))


def _monitor(path: Path):
    from vittui.runs.store import RunDir
    from vittui.ui.screens.monitor import MonitorScreen

    return MonitorScreen(RunDir(path))

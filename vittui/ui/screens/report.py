"""The evaluation report of a finished or stopped run, read from its `report.json`: the confusion matrix
as a shaded grid of counts, per-class metrics, reliability and ECE, robustness and throughput.

With no report yet, `e` runs `vittui eval RUN` as a subprocess (`python -m vittui.cli eval RUN`) in a thread
worker and shows its output as it comes; torch is only ever imported by that subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.reactive import var
from textual.widgets import Footer, RichLog, Static
from textual.worker import get_current_worker

from vittui.runs.store import RunDir
from vittui.ui.messages import EvalFinished, EvalOutput, ReportRead
from vittui.ui.screens.base import VittuiScreen
from vittui.ui.screens.modals import HelpModal, key_rows
from vittui.ui.widgets.confusion_grid import ConfusionGrid
from vittui.ui.widgets.report_tables import ReportTables


def read_report(run_path: Path):
    """EvalReport from the run's report.json; None if there is none (raises on a broken file)."""
    from vittui.analysis.metrics import EvalReport

    p = RunDir(run_path).report_path
    if not p.exists():
        return None
    return EvalReport.from_dict(json.loads(p.read_text(encoding="utf-8")))


def eval_command(run_path: Path) -> list[str]:
    return [sys.executable, "-m", "vittui.cli", "eval", str(Path(run_path).resolve())]


class ReportScreen(VittuiScreen):
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("e", "evaluate", "Evaluate"),
        Binding("question_mark", "help", "Help"),
    ]
    PALETTE = [("evaluate", "Evaluate run", "Run `vittui eval` on this run and show the report")]

    loaded: var[bool] = var(False, bindings=True)
    """report.json has been read once (found or not): e is offered from then on."""
    evaluating: var[bool] = var(False, bindings=True)
    """`vittui eval` is running: e is off until it ends."""

    def __init__(self, run: RunDir) -> None:
        super().__init__(classes="report")
        self.run = run
        self.report = None
        self.eval_rc: int | None = None
        self.eval_lines: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(f"evaluation report - {self.run.name}", id="report-title")
        yield Static("reading report.json…", id="report-status")
        with VerticalScroll(id="report-body"):
            with Horizontal(id="report-top"):
                yield ConfusionGrid(id="confusion")
                yield ReportTables("summary", id="report-summary")
            with Horizontal(id="report-bottom"):
                yield ReportTables("classes", id="report-classes")
                yield ReportTables("rest", id="report-rest")
        yield RichLog(id="eval-log", max_lines=500, wrap=True, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.run.name
        self.query_one("#eval-log").display = False
        self.load()

    # --- workers ---------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="report-read", name="read-report")
    def load(self) -> None:
        try:
            report, error = read_report(self.run.path), ""
        except Exception as e:  # noqa: BLE001 - a broken file is shown, not raised
            report, error = None, f"{type(e).__name__}: {e}"
        self.post_message(ReportRead(report, error))

    @work(thread=True, exclusive=True, exit_on_error=False, group="report-eval", name="eval")
    def run_eval(self) -> None:
        worker = get_current_worker()
        cmd = eval_command(self.run.path)
        self.post_message(EvalOutput("$ " + " ".join(cmd)))
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        except OSError as e:
            self.post_message(EvalFinished(-1, f"could not start: {e}"))
            return
        assert proc.stdout is not None
        for line in proc.stdout:
            if worker.is_cancelled:
                proc.terminate()
                break
            self.post_message(EvalOutput(line.rstrip("\n")))
        self.post_message(EvalFinished(proc.wait()))

    # --- messages from the workers ----------------------------------------------------------------
    def on_report_read(self, message: ReportRead) -> None:
        report, error = message.report, message.error
        self.report, self.loaded = report, True
        status = self.query_one("#report-status", Static)
        body = self.query_one("#report-body")
        if report is None:
            body.display = False
            if error:
                status.update(f"ERROR cannot read {self.run.report_path.name}: {error}")
            elif not self.evaluating:
                status.update(f"no {self.run.report_path.name} yet - press e to run `vittui eval {self.run.name}` "
                              "(per-class, confusion, calibration, robustness, speed; takes a while)")
        else:
            body.display = True
            status.update(f"{report.n} validation images   top-1 {100 * report.top1:.1f}%   "
                          f"ECE {report.ece:.4f}")
            self.query_one(ConfusionGrid).show(report.class_names, report.confusion)
            for tables in self.query(ReportTables):
                tables.show(report)

    def on_eval_output(self, message: EvalOutput) -> None:
        self._eval_line(message.line)

    def _eval_line(self, line: str) -> None:
        self.eval_lines.append(line)
        self.query_one("#eval-log", RichLog).write(line)

    def on_eval_finished(self, message: EvalFinished) -> None:
        self.evaluating = False
        self.eval_rc = rc = message.rc
        if message.error:
            self._eval_line(message.error)
        if rc == 0:
            self._eval_line("evaluation finished")
            self.query_one("#eval-log").display = False
            self.load()
        else:
            self.query_one("#report-status", Static).update(
                f"ERROR vittui eval exited with {rc} - see its output below; e tries again")

    # --- keys ------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "evaluate":
            return True if self.loaded and not self.evaluating else None
        return True

    def action_evaluate(self) -> None:
        self.evaluating = True
        self.eval_lines.clear()
        log = self.query_one("#eval-log", RichLog)
        log.clear()
        log.display = True
        self.query_one("#report-status", Static).update(f"evaluating {self.run.name}… (vittui eval, a subprocess)")
        self.run_eval()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_help(self) -> None:
        self.app.push_screen(HelpModal(f"Report - {self.run.name}", key_rows(self),
                                       "e runs `vittui eval` (again) in a subprocess and reloads report.json."))

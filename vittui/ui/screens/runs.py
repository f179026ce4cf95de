"""Every run in the runs folder with its state and best metric; enter attaches the monitor to it, u resumes
a run no worker is behind (suspended, or stopped, failed or lost with a checkpoint) and attaches."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import var
from textual.widgets import Footer, Static

from vittui.runs import launcher
from vittui.runs.registry import RunSummary, scan_runs
from vittui.ui.messages import RunsScanned
from vittui.ui.screens.base import VittuiScreen, idle_unless_cancelled
from vittui.ui.screens.modals import HelpModal, key_rows
from vittui.ui.widgets.runs_table import RunsTable

REFRESH_S = 2.0


class RunsScreen(VittuiScreen):
    BINDINGS = [
        Binding("enter", "attach", "Attach"),
        Binding("u", "resume_run", "Resume"),
        Binding("m,space", "mark", "Mark"),
        Binding("c", "compare", "Compare"),
        Binding("v", "report", "Report"),
        Binding("w", "sweep", "Sweep"),
        Binding("escape", "back", "Back"),
        Binding("n", "app.setup", "New"),
        Binding("q", "app.quit", "Quit"),
        Binding("question_mark", "help", "Help"),
    ]
    PALETTE = [("app.setup", "New run", "Back to the setup screen"), ("back", "Back", "Leave the runs list"),
               ("compare", "Compare marked runs", "Curves overlaid and the recipe fields that differ"),
               ("report", "Evaluation report", "The report of the run under the cursor"),
               ("sweep", "Sweep", "The sweep the run under the cursor is a trial of"),
               ("resume_run", "Resume run", "Start a new worker from the last checkpoint of the run under the cursor")]

    marked: var[list[Path]] = var(list, bindings=True)
    """The runs marked for comparing, in the order they were marked (compare needs two)."""

    def __init__(self, runs_root: Path) -> None:
        super().__init__(classes="runs")
        self.runs_root = runs_root
        self._rows: list[RunSummary] = []

    def compose(self) -> ComposeResult:
        yield Static(f"runs in {self.runs_root}", id="runs-title")
        yield RunsTable(id="runs-table")
        yield Static("", id="runs-empty")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(RunsTable).focus()
        self.scan()

    @work(thread=True, exclusive=True, exit_on_error=False, group="scan", name="scan-runs")
    def scan(self) -> None:
        while True:
            self.post_message(RunsScanned(scan_runs(self.runs_root)[::-1]))  # newest first
            if not idle_unless_cancelled(REFRESH_S):
                return

    def on_runs_scanned(self, message: RunsScanned) -> None:
        rows = self._rows = message.rows
        present = {r.path for r in rows}
        self.marked = [p for p in self.marked if p in present]
        self.query_one(RunsTable).show(rows, set(self.marked))
        empty = self.query_one("#runs-empty", Static)
        empty.update("" if rows else "no runs yet - press n to set one up")
        empty.display = not rows
        self.refresh_bindings()  # the run under the cursor may have become resumable

    def on_data_table_row_highlighted(self) -> None:
        self.refresh_bindings()

    def _current(self) -> RunSummary | None:
        table = self.query_one(RunsTable)
        if table.rows_data and 0 <= table.cursor_row < len(table.rows_data):
            return table.rows_data[table.cursor_row]
        return None

    def on_runs_table_chosen(self, message: RunsTable.Chosen) -> None:
        self.vittui_app.attach(message.path)

    def action_attach(self) -> None:
        table = self.query_one(RunsTable)
        if table.rows_data and 0 <= table.cursor_row < len(table.rows_data):
            self.vittui_app.attach(table.rows_data[table.cursor_row].path)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "compare":
            return True if len(self.marked) >= 2 else None
        if action == "sweep":
            return True if self._trial_tags() is not None else None
        if action == "resume_run":
            row = self._current()
            return True if row is not None and row.resumable else None
        return True

    def action_resume_run(self) -> None:
        from vittui.runs.registry import run_state, why_not_resumable
        from vittui.runs.store import RunDir

        if (row := self._current()) is None:
            return
        run = RunDir(row.path)
        if (why := why_not_resumable(run, run_state(run))) is not None:  # the list is up to 2 s old
            self.notify(why, severity="error")
            return
        try:
            launcher.resume(run)
        except OSError as e:
            self.notify(f"could not resume {run.name}: {e}", severity="error")
            return
        self.vittui_app.attach(run.path)

    def _trial_tags(self):
        from vittui.runs.store import RunDir
        from vittui.sweep.storage import read_trial_tags

        row = self._current()
        return read_trial_tags(RunDir(row.path)) if row is not None else None

    def action_sweep(self) -> None:
        if (tags := self._trial_tags()) is not None:
            self.vittui_app.open_sweep(tags.study, tags.storage)

    def action_mark(self) -> None:
        table = self.query_one(RunsTable)
        if not (table.rows_data and 0 <= table.cursor_row < len(table.rows_data)):
            return
        path = table.rows_data[table.cursor_row].path
        self.marked = [p for p in self.marked if p != path] if path in self.marked else [*self.marked, path]
        row = table.cursor_row
        table.show(self._rows or table.rows_data, set(self.marked))
        table.move_cursor(row=min(row + 1, len(table.rows_data) - 1))

    def action_compare(self) -> None:
        from vittui.ui.screens.compare import CompareScreen

        if len(self.marked) >= 2:
            self.app.push_screen(CompareScreen(list(self.marked)))

    def action_report(self) -> None:
        from vittui.runs.store import RunDir
        from vittui.ui.screens.report import ReportScreen

        table = self.query_one(RunsTable)
        if table.rows_data and 0 <= table.cursor_row < len(table.rows_data):
            self.app.push_screen(ReportScreen(RunDir(table.rows_data[table.cursor_row].path)))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.vittui_app.action_setup()

    def action_help(self) -> None:
        self.app.push_screen(HelpModal("Runs", key_rows(self)))

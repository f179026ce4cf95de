"""Every run in the runs folder with its state (queued runs with their place in line) and best metric.

Enter attaches the monitor; u resumes a run no worker is behind (suspended, or stopped, failed or lost with
a checkpoint) — through the queue when a scheduler is alive or runs wait, else as a detached worker; k
clones a run into the setup screen; x deletes a run in a final state after a confirmation. Resume and
delete touch the disk and spawn processes, so they run in thread workers and report with `RunsActed`."""

from __future__ import annotations

import threading
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.reactive import var
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from vittui.runs import launcher, slurm
from vittui.runs.registry import RunSummary, is_live, job_states_of, run_state, summarize, why_not_resumable
from vittui.runs.store import RunDir, list_runs
from vittui.ui.messages import RunsActed, RunsScanned
from vittui.ui.screens.base import VittuiScreen
from vittui.ui.screens.modals import ConfirmModal, HelpModal, key_rows
from vittui.ui.widgets.runs_table import RunsTable

REFRESH_S = 2.0
FIRST_ROWS = 60  # the first scan posts the newest runs first: with a thousand runs the screen fills at once
# States in which no worker is, or will be, behind a run: the only ones a delete may remove. Not `lost`
# (a worker on another node of a shared filesystem looks lost from here) and not `queued` (the scheduler
# may be starting it).
DELETABLE = ("finished", "stopped", "failed", "pruned", "suspended")


class SummaryCache:
    """`registry.summarize` remembered for runs no worker is behind, until their status.json or checkpoints
    folder changes: such a run changes only by a write (a resume, the scheduler starting it), so a rescan of
    a thousand finished runs costs two stats each instead of reading and deciding every one again. Runs in a
    live state are summarized afresh every time (their worker can die without a write: `lost`), and so are
    Slurm runs (their state follows the job's, which Slurm changes without a write here)."""

    def __init__(self) -> None:
        self._rows: dict[Path, tuple[tuple[int, int, int], RunSummary]] = {}

    def summary(self, run: RunDir, jobs: dict[str, str]) -> RunSummary:
        """`jobs`: Slurm's job states, asked once for the whole scan (registry.scan_runs does the same)."""
        try:
            st, ck = run.status_path.stat(), run.checkpoints.stat()
        except OSError:
            return summarize(run, jobs)
        version = (st.st_mtime_ns, st.st_size, ck.st_mtime_ns)
        if (hit := self._rows.get(run.path)) is not None and hit[0] == version:
            return hit[1]
        row = summarize(run, jobs)
        if is_live(row.state) or row.job_id:
            self._rows.pop(run.path, None)
        else:
            self._rows[run.path] = (version, row)
        return row


def queue_module():
    """`vittui.runs.queue` (the run queue: enqueue, requeue, positions), or None on an install without it."""
    try:
        from vittui.runs import queue
    except ImportError:
        return None
    return queue


def queue_positions(runs_root: Path) -> dict[Path, int]:
    """Each queued run's place in line (1 = starts next), keyed like the scan's rows (runs_root / name)."""
    q = queue_module()
    if q is None:
        return {}
    try:
        return {runs_root / r.name: i for i, r in enumerate(q.queued(runs_root), start=1)}
    except OSError:
        return {}


def resume_run(run: RunDir, runs_root: Path) -> str:
    """Continue `run` from its last checkpoint: a Slurm run as a new sbatch job; else back in line when the
    queue is in use (a scheduler alive or runs waiting), so it does not jump the runs that wait for the same
    GPU; a detached worker otherwise. Returns what happened, in one line; raises ValueError (why not) for a
    run that cannot resume. sbatch and squeue block: call it from a thread worker."""
    if (why := why_not_resumable(run, run_state(run))) is not None:
        raise ValueError(why)
    if slurm.job_id_of(run) is not None:  # a Slurm run continues as a new sbatch job (SlurmError: why not)
        return f"{run.name} resubmitted: slurm job {slurm.resubmit(run)}"
    status = run.read_status()
    at = f" from step {status.last_checkpoint_step}" if status and status.last_checkpoint_step else ""
    q = queue_module()
    if q is not None and (q.scheduler_alive(runs_root) or q.queued(runs_root)):
        q.requeue(run)  # and starts a scheduler when none is alive
        pos = q.position(run)
        return f"{run.name} queued to resume{at}" + (f" (#{pos} in line)" if pos else "")
    proc = launcher.resume(run)
    return f"resuming {run.name}{at} (worker pid {proc.pid})"


class RunsScreen(VittuiScreen):
    BINDINGS = [
        Binding("enter", "attach", "Attach"),
        Binding("u", "resume_run", "Resume"),
        Binding("k", "clone", "Clone"),
        Binding("x,delete", "delete_run", "Delete"),
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
               ("resume_run", "Resume run", "A new worker from the last checkpoint of the run under the cursor"),
               ("clone", "Clone run", "The setup screen with this run's recipe, to edit and start or queue"),
               ("delete_run", "Delete run", "Remove the run directory of a finished (or stopped…) run")]
    HELP_NOTES = ("u resumes through the queue when a scheduler runs or runs wait, else at once.\n"
                  "x asks first (y deletes the folder, n keeps it); never a run a worker may be behind.")

    marked: var[list[Path]] = var(list, bindings=True)
    """The runs marked for comparing, in the order they were marked (compare needs two)."""

    def __init__(self, runs_root: Path) -> None:
        super().__init__(classes="runs")
        self.runs_root = runs_root
        self._rows: list[RunSummary] = []
        self._wake = threading.Event()  # set: the scan loop rescans now (after a resume or a delete)
        self._drawn = threading.Event()  # set: a frame with the latest rows has been drawn

    def compose(self) -> ComposeResult:
        yield Static(f"runs in {self.runs_root}", id="runs-title")
        yield RunsTable(id="runs-table")
        yield Static("", id="runs-empty")
        yield Static("", id="runs-why", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(RunsTable).focus()
        self.scan()

    def on_unmount(self) -> None:
        self._wake.set()  # the scan loop sees its cancellation at once
        self._drawn.set()

    @work(thread=True, exclusive=True, exit_on_error=False, group="scan", name="scan-runs")
    def scan(self) -> None:
        worker = get_current_worker()
        cache = SummaryCache()
        first = True
        while not worker.is_cancelled:
            self._wake.clear()
            runs = list_runs(self.runs_root)[::-1]  # newest first
            positions = queue_positions(self.runs_root)
            if first and len(runs) > FIRST_ROWS:  # a screenful on screen before the rest is read
                self._drawn.clear()
                self.post_message(RunsScanned(self._summaries(cache, runs[:FIRST_ROWS]), positions))
                self._drawn.wait(1.0)  # reading the rest now would take the GIL from that first frame
            first = False
            self.post_message(RunsScanned(self._summaries(cache, runs), positions))
            self._wake.wait(REFRESH_S)

    @staticmethod
    def _summaries(cache: SummaryCache, runs: list[RunDir]) -> list[RunSummary]:
        jobs = job_states_of(runs)  # one squeue for every Slurm run
        return [cache.summary(r, jobs) for r in runs]

    def rescan(self) -> None:
        self._wake.set()

    def on_runs_scanned(self, message: RunsScanned) -> None:
        rows = self._rows = message.rows
        present = {r.path for r in rows}
        self.marked = [p for p in self.marked if p in present]
        self.query_one(RunsTable).show(rows, set(self.marked), message.positions)
        self.call_after_refresh(self._drawn.set)
        empty = self.query_one("#runs-empty", Static)
        empty.update("" if rows else "no runs yet - press n to set one up")
        empty.display = not rows
        self._explain()

    def on_data_table_row_highlighted(self) -> None:
        self._explain()

    def _explain(self) -> None:
        """The footer's keys follow the run under the cursor; when `u` is off, the line under the table says
        why (registry.why_not_resumable: one small read, the checkpoints folder)."""
        self.refresh_bindings()
        row = self._current()
        why = None if row is None or row.resumable else why_not_resumable(RunDir(row.path), row.state)
        self.query_one("#runs-why", Static).update(f"u: {why}" if why else "")

    def _current(self) -> RunSummary | None:
        table = self.query_one(RunsTable)
        if table.rows_data and 0 <= table.cursor_row < len(table.rows_data):
            return table.rows_data[table.cursor_row]
        return None

    def on_runs_table_chosen(self, message: RunsTable.Chosen) -> None:
        self.vittui_app.attach(message.path)

    def action_attach(self) -> None:
        if (row := self._current()) is not None:
            self.vittui_app.attach(row.path)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "compare":
            return True if len(self.marked) >= 2 else None
        row = self._current()
        if action == "sweep":
            return True if self._trial_tags() is not None else None
        if action == "resume_run":
            return True if row is not None and row.resumable else None
        if action == "delete_run":
            return True if row is not None and row.state in DELETABLE else None
        if action in ("clone", "attach", "report"):
            return True if row is not None else None
        return True

    # --- resume ----------------------------------------------------------------------------------
    def action_resume_run(self) -> None:
        if (row := self._current()) is None:
            return
        self.notify(f"resuming {row.name}…")
        self.resume(row.path)

    @work(thread=True, exclusive=True, exit_on_error=False, group="resume", name="resume")
    def resume(self, path: Path) -> None:
        """Off the event loop: it reads the run's state again (the list is up to 2 s old) and spawns a process."""
        run = RunDir(path)
        try:
            note = resume_run(run, self.runs_root)
        except ValueError as e:
            self.post_message(RunsActed(error=str(e)))
            return
        except Exception as e:  # noqa: BLE001 - the user is told why; the run is left as it was
            self.post_message(RunsActed(error=f"could not resume {path.name}: {e}"))
            return
        # a Slurm job may wait in Slurm's own queue for long: the monitor follows it from its first line
        self.post_message(RunsActed(note=note, attach=path if slurm.job_id_of(run) is not None else None))

    def on_runs_acted(self, message: RunsActed) -> None:
        if message.error:
            self.notify(message.error, severity="error", timeout=8)
        else:
            self.notify(message.note)
        if message.attach is not None:
            self.vittui_app.attach(message.attach)
            return
        self.rescan()

    # --- clone -----------------------------------------------------------------------------------
    def action_clone(self) -> None:
        from vittui import recipe as R

        if (row := self._current()) is None:
            return
        try:
            recipe = R.load(RunDir(row.path).recipe_path)
        except (R.RecipeError, OSError) as e:
            self.notify(f"cannot clone {row.name}: {e}", severity="error", timeout=8)
            return
        self.vittui_app.setup_with(recipe, f"recipe of {row.name}: edit it, then ctrl+s starts or ctrl+t queues")

    # --- delete ----------------------------------------------------------------------------------
    def action_delete_run(self) -> None:
        if (row := self._current()) is None or row.state not in DELETABLE:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete(row.path)

        self.app.push_screen(ConfirmModal(f"Delete run {row.name} ({row.state}) and all its files?", yes="Delete",
                                          no="Keep"), answered)

    @work(thread=True, exclusive=True, exit_on_error=False, group="delete", name="delete")
    def delete(self, path: Path) -> None:
        """Off the event loop (checkpoints can be gigabytes). The state is read again first: a resume may
        have started a worker since the question was asked."""
        import shutil

        run = RunDir(path)
        state = run_state(run)
        if state not in DELETABLE:
            self.post_message(RunsActed(error=f"{run.name} is {state} now: not deleted"))
            return
        try:
            shutil.rmtree(run.path)
        except OSError as e:
            self.post_message(RunsActed(error=f"could not delete {run.name}: {e}"))
            return
        self.post_message(RunsActed(note=f"deleted {run.name}"))

    def _trial_tags(self):
        from vittui.runs.store import RunDir
        from vittui.sweep.storage import read_trial_tags

        row = self._current()
        return read_trial_tags(RunDir(row.path)) if row is not None else None

    def action_sweep(self) -> None:
        if (tags := self._trial_tags()) is not None:
            self.vittui_app.open_sweep(tags.study, tags.storage)


    # --- marks, compare, report, navigation ------------------------------------------------------
    def action_mark(self) -> None:
        table = self.query_one(RunsTable)
        if (cur := self._current()) is None:
            return
        path = cur.path
        self.marked = [p for p in self.marked if p != path] if path in self.marked else [*self.marked, path]
        row = table.cursor_row
        table.show(self._rows or table.rows_data, set(self.marked))
        table.move_cursor(row=min(row + 1, len(table.rows_data) - 1))

    def action_compare(self) -> None:
        from vittui.ui.screens.compare import CompareScreen

        if len(self.marked) >= 2:
            self.app.push_screen(CompareScreen(list(self.marked)))

    def action_report(self) -> None:
        from vittui.ui.screens.report import ReportScreen

        if (row := self._current()) is not None:
            self.app.push_screen(ReportScreen(RunDir(row.path)))

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 2:
            self.app.pop_screen()
        else:
            self.vittui_app.action_setup()

    def action_help(self) -> None:
        self.app.push_screen(HelpModal("Runs", key_rows(self), self.HELP_NOTES))

"""Every run in the runs folder: state, progress, best metric. Enter reports `Chosen`."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from vittui.runs.registry import RunSummary


def _pct(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 100 if v <= 1 else v:.1f}%"


def _state(r: RunSummary) -> str:
    """The run's state; a Slurm run adds its job, and Slurm's state while the job waits."""
    if not r.job_id:
        return r.state
    waiting = f" {r.job_state}" if r.job_state and r.state in ("queued", "starting") else ""
    return f"{r.state} (slurm {r.job_id}{waiting})"


class RunsTable(DataTable):
    class Chosen(Message):
        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_data: list[RunSummary] = []
        self.marked: set[Path] = set()

    def on_mount(self) -> None:
        self.add_columns("mark", "run", "state", "step", "best top-1", "model", "updated")

    def show(self, rows: list[RunSummary], marked: set[Path] | None = None) -> None:
        keep = self.cursor_row
        self.rows_data = rows
        if marked is not None:
            self.marked = set(marked)
        self.clear()
        for r in rows:
            step = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
            self.add_row(Text("[x]" if r.path in self.marked else "[ ]"), Text(r.name), _state(r), step, _pct(r.best_top1), r.model, r.updated_text, key=str(r.path))
        if rows:
            self.move_cursor(row=min(max(keep, 0), len(rows) - 1))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.Chosen(Path(event.row_key.value)))

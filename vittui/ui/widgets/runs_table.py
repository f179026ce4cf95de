"""Every run in the runs folder: state (queued runs with their place in line), progress, best metric.
Enter reports `Chosen`.

A refresh that lists the same runs in the same order rewrites only the cells that changed: the runs
screen rescans every two seconds, and rebuilding a thousand rows each time would cost more than the scan."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from vittui.runs.registry import RunSummary

COLUMNS = ("mark", "run", "state", "step", "best top-1", "model", "updated")


def _pct(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 100 if v <= 1 else v:.1f}%"


def state_text(row: RunSummary, position: int | None) -> str:
    """The state cell: a queued run says its place in line ("queued #2")."""
    return f"{row.state} #{position}" if row.state == "queued" and position is not None else row.state


class RunsTable(DataTable):
    class Chosen(Message):
        def __init__(self, path: Path) -> None:
            super().__init__()
            self.path = path

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_data: list[RunSummary] = []
        self.marked: set[Path] = set()
        self.positions: dict[Path, int] = {}
        self._cells: dict[str, tuple] = {}  # row key -> the plain values shown, to rewrite only what changed

    def on_mount(self) -> None:
        for name in COLUMNS:
            self.add_column(name, key=name)

    def _cells_of(self, r: RunSummary) -> tuple:
        step = f"{r.step}/{r.total_steps}" if r.total_steps else str(r.step)
        return ("[x]" if r.path in self.marked else "[ ]", r.name, state_text(r, self.positions.get(r.path)), step,
                _pct(r.best_top1), r.model, r.updated_text)

    def show(self, rows: list[RunSummary], marked: set[Path] | None = None,
             positions: dict[Path, int] | None = None) -> None:
        keep = self.cursor_row
        if marked is not None:
            self.marked = set(marked)
        if positions is not None:
            self.positions = dict(positions)
        keys = [str(r.path) for r in rows]
        cells = {str(r.path): self._cells_of(r) for r in rows}
        if keys == [str(r.path) for r in self.rows_data] and len(keys) == self.row_count:
            for key, new in cells.items():
                old = self._cells.get(key)
                for col, value, before in zip(COLUMNS, new, old or (None,) * len(COLUMNS)):
                    if value != before:
                        self.update_cell(key, col, Text(value) if col in ("mark", "run") else value)
        else:
            self.clear()
            for key, c in cells.items():
                self.add_row(Text(c[0]), Text(c[1]), *c[2:], key=key)
        self.rows_data = rows
        self._cells = cells
        if rows:
            self.move_cursor(row=min(max(keep, 0), len(rows) - 1))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.Chosen(Path(event.row_key.value)))

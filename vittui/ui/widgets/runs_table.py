"""Every run in the runs folder: state (queued runs with their place in line), progress, best metric.
Enter reports `Chosen`.

Two things keep a thousand runs cheap. Rows go in a screenful at a time, one batch per frame: DataTable
measures every cell it is given before it paints, and a thousand rows at once held the first frame for
seconds. And a refresh that lists the same runs in the same order rewrites only the cells that changed (the
runs screen rescans every two seconds)."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from vittui.runs.registry import RunSummary

COLUMNS = ("mark", "run", "state", "step", "best top-1", "model", "updated")
BATCH = 60  # rows added per frame: more than a tall terminal shows


def _pct(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 100 if v <= 1 else v:.1f}%"


def state_text(row: RunSummary, position: int | None) -> str:
    """The state cell: a queued run says its place in line ("queued #2"); a Slurm run adds its job, and
    Slurm's state while the job waits."""
    if row.job_id:
        waiting = f" {row.job_state}" if row.job_state and row.state in ("queued", "starting") else ""
        return f"{row.state} (slurm {row.job_id}{waiting})"
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
        self._keys: list[str] = []  # the rows' keys in order (the first `_added` of them are in the table)
        self._cells: dict[str, tuple] = {}  # row key -> its plain values, to rewrite only what changed
        self._added = 0
        self._adding = False  # a batch is scheduled for after the next refresh

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
        if keys[: self._added] == self._keys[: self._added]:  # the rows in the table are still where they are
            for key in keys[: self._added]:  # rows not added yet go in with their new values
                new, old = cells[key], self._cells[key]
                for col, value, before in zip(COLUMNS, new, old):
                    if value != before:
                        self.update_cell(key, col, Text(value) if col in ("mark", "run") else value)
        else:
            self.clear()
            self._added = 0
        self._keys, self._cells, self.rows_data = keys, cells, rows
        self._add_batch()
        if rows:
            self.move_cursor(row=min(max(keep, 0), len(rows) - 1))

    @property
    def complete(self) -> bool:
        """Every row is in the table (the last batch has gone in)."""
        return self._added == len(self._keys)

    def _add_batch(self) -> None:
        self._adding = False
        for key in self._keys[self._added: self._added + BATCH]:
            c = self._cells[key]
            self.add_row(Text(c[0]), Text(c[1]), *c[2:], key=key)
        self._added = min(self._added + BATCH, len(self._keys))
        if not self.complete and not self._adding:
            self._adding = True
            self.call_after_refresh(self._add_batch)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value:
            self.post_message(self.Chosen(Path(event.row_key.value)))

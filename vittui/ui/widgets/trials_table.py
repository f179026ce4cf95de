"""A sweep's trials: number, run, state, objective, pruned-at step and the sampled values. Enter reports
`Chosen` with the trial's run directory (the screen opens its monitor)."""

from __future__ import annotations

from rich.text import Text
from textual.message import Message
from textual.widgets import DataTable

from vittui.sweep.status import StudyReport, TrialRow

STATE_STYLE = {"complete": "green", "pruned": "yellow", "fail": "red", "running": "cyan"}


def fmt_value(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class TrialsTable(DataTable):
    class Chosen(Message):
        def __init__(self, trial: TrialRow) -> None:
            super().__init__()
            self.trial = trial

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_data: list[TrialRow] = []
        self._keys: list[str] = []

    def show(self, report: StudyReport) -> None:
        keep = self.cursor_row
        keys = report.params
        if keys != self._keys or not self.columns:
            self.clear(columns=True)
            self.add_columns("#", "run", "state", report.objective, "pruned at", *keys)
            self._keys = keys
        self.clear()
        best = report.best.number if report.best is not None else None
        self.rows_data = list(report.trials)
        for t in self.rows_data:
            mark = "*" if t.number == best else ""
            self.add_row(f"{t.number}{mark}", Text(t.run or "-"), Text(t.state, style=STATE_STYLE.get(t.state, "")),
                         fmt_value(t.value), fmt_value(t.pruned_at), *(fmt_value(t.params.get(k)) for k in keys),
                         key=str(t.number))
        if self.rows_data:
            self.move_cursor(row=min(max(keep, 0), len(self.rows_data) - 1))

    def current(self) -> TrialRow | None:
        if self.rows_data and 0 <= self.cursor_row < len(self.rows_data):
            return self.rows_data[self.cursor_row]
        return None

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if (trial := self.current()) is not None:
            self.post_message(self.Chosen(trial))

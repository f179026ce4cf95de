"""The comparison table: one column per run, one row per recipe field that differs (and only those), then
each run's best and last metrics. Rows come from `vittui.runs.compare.table_rows`; the run's name is the
column header, so `run.name` is left out of the fields."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import DataTable

SEPARATOR = "--"


class CompareTable(DataTable):
    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self.rows_text: list[list[str]] = []
        self.fields: list[str] = []

    def show(self, rows: list[list[str]], fields: list[str]) -> None:
        """`rows[0]` is the header ("", run names…); a row of just "--" separates fields from metrics."""
        self.clear(columns=True)
        self.rows_text = rows
        self.fields = list(fields)
        if not rows:
            return
        header = rows[0]
        self.add_column("recipe field / metric", key="label")
        for i, name in enumerate(header[1:]):
            self.add_column(Text(name), key=f"run{i}")
        if not fields:
            self.add_row("(the recipes are identical)", *[""] * (len(header) - 1))
        for row in rows[1:]:
            if row == [SEPARATOR]:
                self.add_row(*["─" * 8] * len(header))
                continue
            self.add_row(*(Text(c) for c in row))

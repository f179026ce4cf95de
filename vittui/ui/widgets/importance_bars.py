"""Optuna's parameter importances as bars (or why there are none yet: fewer than two complete trials)."""

from __future__ import annotations

from textual.widgets import Static

from vittui.sweep.status import StudyReport

BAR = 30


class ImportanceBars(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "parameter importances"
        self.rows: dict[str, float] = {}

    def show(self, report: StudyReport) -> None:
        self.rows = dict(report.importances)
        if not self.rows:
            self.update(report.importance_note or "no importances yet")
            return
        width = max(len(k) for k in self.rows)
        self.update("\n".join(f"{k:<{width}} {'█' * max(1, round(v * BAR)):<{BAR}} {v:.2f}"
                              for k, v in self.rows.items()))

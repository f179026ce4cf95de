"""Pre-flight findings beside the recipe: "ok", one line per problem, "checking…", or why it could not
check. The setup screen runs `vittui check` and hands the outcome down (`show_*`)."""

from __future__ import annotations

from textual.widgets import Static


class PreflightPane(Static):
    def __init__(self, **kwargs) -> None:
        super().__init__("pre-flight: waiting for the recipe", markup=False, **kwargs)
        self.border_title = "pre-flight"
        self.problems: list[str] = []
        self.state = "waiting"  # waiting / checking / ok / problems / unavailable

    def show_checking(self) -> None:
        self.state = "checking"
        self.set_classes("-checking")
        self.update("pre-flight: checking… (vittui check, a subprocess)")

    def show_result(self, problems: list[str]) -> None:
        self.problems = list(problems)
        self.state = "problems" if problems else "ok"
        self.set_classes("-problems" if problems else "-ok")
        self.update("\n".join(f"ERROR {p}" for p in problems) if problems else "pre-flight ok")

    def show_unavailable(self, why: str) -> None:
        self.problems = []
        self.state = "unavailable"
        self.set_classes("-unavailable")
        self.update(f"pre-flight could not run: {why}")

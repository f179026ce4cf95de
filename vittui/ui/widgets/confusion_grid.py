"""The confusion matrix as a grid of counts (rows true, columns predicted); each cell's background shades
with its share of the row, the diagonal green and the errors red. The counts are always printed, so the grid
reads the same without colour."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import Static


def shade(frac: float, correct: bool) -> Style:
    frac = min(1.0, max(0.0, frac))
    if frac <= 0:
        return Style(dim=True)
    lo = (30, 30, 30)
    hi = (40, 170, 70) if correct else (200, 50, 50)
    rgb = tuple(int(a + (b - a) * (0.25 + 0.75 * frac)) for a, b in zip(lo, hi))
    return Style(bgcolor=f"rgb({rgb[0]},{rgb[1]},{rgb[2]})", color="white", bold=frac > 0.5)


class ConfusionGrid(Static):
    can_focus = True

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.names: list[str] = []
        self.matrix: list[list[int]] = []
        self.border_title = "confusion"

    def show(self, names: list[str], matrix: list[list[int]]) -> None:
        self.names, self.matrix = list(names), [list(map(int, r)) for r in matrix]
        self.update(self.build())

    @property
    def text(self) -> str:
        return self.build().plain

    def build(self) -> Text:
        t = Text(no_wrap=True, overflow="ellipsis")
        if not self.matrix:
            t.append("no confusion matrix", style="dim")
            return t
        top = max((v for r in self.matrix for v in r), default=0)
        cell = max(4, len(str(top)) + 1)
        label = min(10, max(4, max(len(n) for n in self.names) + 1))
        t.append("rows true, columns predicted\n", style="dim")
        t.append(" " * label)
        for n in self.names:
            t.append(n[: cell - 1].rjust(cell), style="bold")
        t.append("\n")
        for i, (name, row) in enumerate(zip(self.names, self.matrix)):
            t.append(name[: label - 1].ljust(label), style="bold")
            total = sum(row) or 1
            for j, v in enumerate(row):
                t.append(str(v).rjust(cell), style=shade(v / total, i == j))
            t.append("\n")
        return t

"""The LR range test's result: the smoothed loss against the learning rate (log x), the suggestion marked,
the rule that chose it. Apply (a) dismisses with the suggested lr rounded to the 3 significant digits shown
(the finder's 16 digits are noise, and the recipe is for people to read); Cancel (escape) with None."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static
from textual_plotext import PlotextPlot


@dataclass
class LrFindResult:
    """`vittui lr-find --json`'s answer (unknown keys ignored)."""

    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr: float
    rule: str = ""
    stopped_early: bool = False
    steps: int = 0
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict) -> "LrFindResult":
        """Raises KeyError / TypeError / ValueError on an answer that is not the contract's."""
        return cls(lrs=[float(x) for x in data["lrs"]], losses=[float(x) for x in data["losses"]],
                   smoothed=[float(x) for x in data["smoothed"]], suggested_lr=float(data["suggested_lr"]),
                   rule=str(data.get("rule", "")), stopped_early=bool(data.get("stopped_early", False)),
                   steps=int(data.get("steps", 0)))


class LrCurve(PlotextPlot):
    """Smoothed loss over a log-scaled lr axis with a vertical line at the suggestion."""

    def __init__(self, result: LrFindResult, **kwargs) -> None:
        super().__init__(**kwargs)
        self.result = result
        self.draws = 0
        self.border_title = "loss vs learning rate"

    def on_mount(self) -> None:
        plt = self.plt
        pairs = [(x, y) for x, y in zip(self.result.lrs, self.result.smoothed) if x > 0 and math.isfinite(y)]
        if pairs:
            plt.plot([p[0] for p in pairs], [p[1] for p in pairs], label="smoothed loss", marker="braille")
            plt.xscale("log")
            plt.vline(self.result.suggested_lr)
            lo, hi = math.floor(math.log10(pairs[0][0])), math.ceil(math.log10(pairs[-1][0]))
            step = max(1, (hi - lo) // 6)  # decades, at most ~7 labels
            ticks = [10.0 ** e for e in range(lo, hi + 1, step)]
            plt.xticks(ticks, [f"{t:.0e}" for t in ticks])  # plotext would print 0.000000 for 1e-7
            plt.xlabel("lr (log)")
        self.draws += 1


class LrFindModal(ModalScreen[float | None]):
    BINDINGS = [
        Binding("a", "apply", "Apply"),
        Binding("escape,c", "cancel", "Cancel"),
    ]

    def __init__(self, result: LrFindResult) -> None:
        super().__init__(classes="modal")
        self.result = result

    def compose(self) -> ComposeResult:
        r = self.result
        with Vertical(classes="dialog lr-find"):
            yield Label(f"LR range test: suggested lr {r.suggested_lr:.3g}", classes="question", id="lr-suggested")
            yield LrCurve(r, id="lr-curve")
            note = f"rule: {r.rule}" if r.rule else ""
            note += f"{' · ' if note else ''}{r.steps} steps" + (", stopped early: the loss diverged" if r.stopped_early else "")
            yield Static(note, classes="hint", markup=False)
            with Horizontal(classes="buttons"):
                yield Button("Apply (a)", id="apply", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    @property
    def lr_to_apply(self) -> float:
        return float(f"{self.result.suggested_lr:.3g}")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.lr_to_apply if event.button.id == "apply" else None)

    def action_apply(self) -> None:
        self.dismiss(self.lr_to_apply)

    def action_cancel(self) -> None:
        self.dismiss(None)

"""Gradient flow: one line per transformer block with bars for the attention and MLP branch norms of the
latest `GradFlow` event, on a log scale (a vanishing block shows as a stub, not as nothing), and the
event's vanishing/exploding flags with a FLAG tag."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static

from vittui.runs.events import GradFlow

DECADES = 4  # the bars span max / 10**DECADES .. max
BAR = 12
EIGHTHS = " ▏▎▍▌▋▊▉█"


def bar(value: float, top: float, width: int = BAR) -> str:
    """A log-scale bar: full at `top`, one eighth at top / 10**DECADES, blank for 0 or non-finite."""
    if not (value and math.isfinite(value) and value > 0 and top > 0):
        return " " * width
    frac = (math.log10(value / top) + DECADES) / DECADES
    frac = min(1.0, max(1 / (8 * width), frac))
    eighths = int(round(frac * width * 8))
    full, rest = divmod(eighths, 8)
    s = "█" * full + (EIGHTHS[rest] if rest else "")
    return s.ljust(width)


def short_name(name: str) -> str:
    """`blocks.3` -> `3`, `vit.encoder.layer.11` -> `11`."""
    tail = name.rsplit(".", 1)[-1]
    return tail if tail.isdigit() else name[-6:]


class GradPane(Static):
    can_focus = True

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.flow: GradFlow | None = None
        self.border_title = "gradients"

    def show(self, flow: GradFlow | None) -> None:
        if flow is self.flow:
            return
        self.flow = flow
        self.update(self.build(), layout=False)

    def on_resize(self) -> None:
        self.update(self.build(), layout=False)

    @property
    def text(self) -> str:
        return self.build().plain

    def build(self) -> Text:
        g = self.flow
        t = Text(no_wrap=True, overflow="ellipsis")
        if g is None:
            t.append("no gradient probe yet\n", style="dim")
            t.append("per-block attn and mlp grad norms", style="dim")
            return t
        values = [v for v in (*g.attn, *g.mlp) if v and math.isfinite(v) and v > 0]
        top = max(values) if values else 0.0
        inner = max(20, (self.size.width or 60) - 2)
        numbers = inner >= 58
        width = max(4, min(20, (inner - 16 - (20 if numbers else 0)) // 2))
        t.append(f"step {g.step}  log bars, max {top:.2e}" + (f", {DECADES} decades" if numbers else ""),
                 style="bold")
        total = g.other.get("total") if g.other else None
        if total is not None and numbers:
            t.append(f"  total {total:.2e}")
        t.append("\n")
        for i, name in enumerate(g.names):
            a = g.attn[i] if i < len(g.attn) else float("nan")
            m = g.mlp[i] if i < len(g.mlp) else float("nan")
            label = short_name(name)
            mark = any(f.startswith(f"{name}:") for f in g.flags)
            t.append("!" if mark else " ", style="bold yellow")
            t.append(f"{label:>3} ", style="bold yellow" if mark else "")
            t.append("attn ")
            t.append(bar(a, top, width) if math.isfinite(a) else "NaN/Inf".ljust(width)[:width],
                     style="cyan" if math.isfinite(a) else "bold red")
            if numbers:
                t.append(f" {a:8.2e}")
            t.append("  mlp ")
            t.append(bar(m, top, width) if math.isfinite(m) else "NaN/Inf".ljust(width)[:width],
                     style="magenta" if math.isfinite(m) else "bold red")
            if numbers:
                t.append(f" {m:8.2e}")
            t.append("\n")
        for flag in g.flags:
            t.append("FLAG ", style="bold reverse yellow")
            t.append(flag + "\n", style="yellow")
        if not g.flags:
            t.append("OK ", style="bold green")
            t.append("no vanishing or exploding block\n", style="green")
        # the loop reads p.grad after clip_grad_norm_: say so (events written before the label: after clipping)
        t.append(f"norms {getattr(g, 'measured', '') or 'after clip_grad_norm_'}", style="dim")
        return t

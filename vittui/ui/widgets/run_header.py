"""The monitor's header: run name, state, epoch/step, a progress bar with ETA, throughput.

The ETA comes from event timestamps, not the wall clock, so a replayed history draws the same header."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from vittui.runs.history import fmt_duration

STATE_STYLE = {
    "running": "bold green", "starting": "bold cyan", "paused": "bold yellow", "stopping": "bold yellow",
    "stopped": "bold", "suspended": "bold yellow", "finished": "bold green", "failed": "bold red", "lost": "bold red",
}


@dataclass
class HeaderData:
    name: str = ""
    state: str = "starting"
    pending: str = ""  # "pausing…" between a command and its effect
    step: int = 0
    total: int = 0
    epoch: float = 0.0
    eta: float | None = None
    images_per_s: float | None = None
    data_time: float | None = None
    step_time: float | None = None
    best_top1: float | None = None
    smoothing: float = 0.6


class RunHeader(Widget):
    DEFAULT_CSS = "RunHeader { height: 2; }"

    data: reactive[HeaderData] = reactive(HeaderData, init=False)
    """What the header shows (set by the screen); a new value repaints it, an equal one does not."""

    @property
    def text(self) -> str:
        return self.render().plain

    def render(self) -> Text:
        d = self.data
        width = max(self.size.width, 40)
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" {d.name} ", style="bold reverse")
        t.append("  ")
        t.append(d.state.upper(), style=STATE_STYLE.get(d.state, "bold"))
        if d.pending:
            t.append(f" ({d.pending})", style="italic")
        t.append(f"   epoch {d.epoch:.2f}")
        t.append(f"   step {d.step}" + (f"/{d.total}" if d.total else ""))
        if d.best_top1 is not None:
            t.append(f"   best top-1 {d.best_top1 * 100 if d.best_top1 <= 1 else d.best_top1:.1f}%")
        t.append("\n")
        frac = min(1.0, d.step / d.total) if d.total else 0.0
        tail = f" {frac * 100:3.0f}%  ETA {fmt_duration(d.eta)}"
        thr = ""
        if d.images_per_s is not None:
            thr += f"   {d.images_per_s:,.0f} img/s"
        if d.data_time is not None:
            thr += f"   data {d.data_time * 1000:.1f} ms"
            if d.step_time:
                thr += f" ({min(100.0, 100 * d.data_time / d.step_time):.0f}% of step)"
        thr += f"   smooth {d.smoothing:.2f}"
        bar_w = max(10, width - len(tail) - len(thr) - 3)
        filled = int(round(frac * bar_w))
        t.append(" ")
        t.append("█" * filled, style="green")
        t.append("░" * (bar_w - filled), style="dim")
        t.append(tail)
        t.append(thr, style="dim" if not d.images_per_s else "")
        return t

"""The run's messages: logs, faults (with the suggested fix), skipped data, command acks, checkpoints,
and the markers the plots draw (a knob changed old -> new, a pause, a resume, a suspend and why), each as
a MARK line at its step in place of the event's own line (a fault keeps its line and its suggestion).
Each line carries its level as a word, so nothing relies on colour alone (NO_COLOR)."""

from __future__ import annotations

from typing import Iterable

from rich.text import Text
from textual.widgets import RichLog

from vittui.runs.events import (
    CheckpointSaved, ControlAck, DataSkipped, Event, Fault, Finished, Log, RunStarted, Status,
)
from vittui.runs.history import markers_of

LEVEL_STYLE = {"info": "", "warning": "bold yellow", "error": "bold red", "note": "dim", "mark": "bold cyan"}
LEVEL_TAG = {"info": "info", "warning": "WARN", "error": "ERROR", "note": "note", "mark": "MARK"}
KEEP_LINE = (Fault,)  # events whose own line says more than their marker (a fault's suggested fix)


def line_for(ev: Event) -> tuple[str, str] | None:
    """(level, text) for an event the log shows; None for the rest (steps, evals, probes)."""
    if isinstance(ev, Log):
        return ev.level if ev.level in LEVEL_STYLE else "info", (f"[{ev.step}] " if ev.step else "") + ev.message
    if isinstance(ev, Fault):
        text = f"[{ev.step}] {ev.fault}: {ev.message}"
        if ev.suggestion:
            text += f" - try: {ev.suggestion}"
        return "error", text
    if isinstance(ev, DataSkipped):
        ex = f" (e.g. {', '.join(ev.examples[:2])})" if ev.examples else ""
        return "warning", f"skipped {ev.count} unreadable images so far{ex}"
    if isinstance(ev, ControlAck):
        ok = "done" if ev.ok else "REFUSED"
        detail = f": {ev.detail}" if ev.detail else ""
        return ("info" if ev.ok else "warning"), f"[{ev.step}] {ev.command} {ok}{detail}"
    if isinstance(ev, CheckpointSaved):
        return "info", f"[{ev.step}] checkpoint saved{' (best)' if ev.best else ''}: {ev.path}"
    if isinstance(ev, Status):
        return "info", f"[{ev.step}] state {ev.state}" + (f" ({ev.reason})" if ev.reason else "")
    if isinstance(ev, Finished):
        best = f", best top-1 {ev.best_top1:.3f}" if ev.best_top1 is not None else ""
        return "info", f"[{ev.step}] finished in {ev.wall_time:.0f} s{best}"
    if isinstance(ev, RunStarted):
        return "info", (f"started {ev.model} on {ev.device}: {ev.params_trainable:,}/{ev.params_total:,} "
                        f"trainable params, {ev.train_size} train / {ev.val_size} val, {ev.total_steps} steps")
    return None


class LogPane(RichLog):
    def __init__(self, **kwargs) -> None:
        super().__init__(max_lines=2000, wrap=True, markup=False, highlight=False, min_width=20, **kwargs)
        self.border_title = "log"
        self.lines_text: list[str] = []

    def add_events(self, events: Iterable[Event]) -> None:
        for ev in events:
            marks = markers_of(ev)
            item = line_for(ev)
            if item and (not marks or isinstance(ev, KEEP_LINE)):
                self.add(*item)
            for m in marks:
                self.add("mark", f"[{m.step}] {m.label}")

    def add(self, level: str, text: str) -> None:
        tag = LEVEL_TAG.get(level, level)
        line = Text()
        line.append(f"{tag:<5} ", style=LEVEL_STYLE.get(level, ""))
        line.append(text, style=LEVEL_STYLE.get(level, "") if level in ("warning", "error") else "")
        self.lines_text.append(line.plain)
        del self.lines_text[:-2000]
        self.write(line)

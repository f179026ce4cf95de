"""The terminal's view of a run (headless `vittui attach`, foreground `vittui train`): the one-line progress
and the lines worth keeping (evals, state changes, faults, warnings, acknowledged commands).

A view of `RunHistory` — the numbers on the line are the fold's, so the line, the dashboard and
`vittui compare` agree on every run, resumed ones included. Same events, same lines."""

from __future__ import annotations

from typing import Iterable

from vittui.runs import events as ev
from vittui.runs.history import RunHistory, fmt_duration


class Progress:
    def __init__(self, history: RunHistory | None = None) -> None:
        # the line needs no curve: a small series keeps a long run's replay cheap
        self.history = history if history is not None else RunHistory(columns=("loss",), max_buckets=64)
        self.lines: list[str] = []  # lines worth keeping, until taken

    def feed(self, e: ev.Event) -> None:
        self.feed_all((e,))

    def feed_all(self, events: Iterable[ev.Event]) -> None:
        events = list(events)
        self.history.feed(events)
        for e in events:
            line = notable(e)
            if line:
                self.lines.append(line)

    @property
    def step(self) -> int:
        return self.history.step

    @property
    def total_steps(self) -> int:
        return self.history.total_steps

    @property
    def state(self) -> str:
        return self.history.state or "starting"

    def line(self) -> str:
        h = self.history
        epochs = h.epochs
        last = h.last_eval
        acc = f"{last.top1:.1f}%" if last is not None else "--"
        loss = h.recent_loss()
        ips = h.last_step.images_per_s if h.last_step else 0.0
        return (f"[{self.state}] epoch {min(int(h.epoch) + 1, epochs or 10**9)}/{epochs or '?'}  "
                f"step {h.step}/{h.total_steps or '?'}  loss {'--' if loss is None else f'{loss:.4f}'}  "
                f"val {acc}  {ips:,.0f} img/s  ETA {fmt_duration(h.eta_seconds())}")

    def take_lines(self) -> list[str]:
        out, self.lines = self.lines, []
        return out


def notable(e: ev.Event) -> str | None:
    """The line an event is worth in a terminal, or None."""
    if isinstance(e, ev.Eval):
        ema = f"  ema top-1 {e.ema_top1:.2f}%" if e.ema_top1 is not None else ""
        return (f"eval  step {e.step:>6}  epoch {e.epoch:5.2f}  val loss {e.loss:.4f}  "
                f"top-1 {e.top1:.2f}%  top-5 {e.top5:.2f}%{ema}")
    if isinstance(e, ev.RunStarted) and e.resumed_from_step:
        return f"resumed from the checkpoint at step {e.resumed_from_step}"
    if isinstance(e, ev.Status) and e.state in ("paused", "stopped", "suspended", "failed", "finished"):
        return f"{e.state} at step {e.step}" + (f": {e.reason}" if e.reason else "")
    if isinstance(e, ev.Rewound):
        return (f"rewound at step {e.step} to the checkpoint at step {e.to_step} (lr multiplier "
                f"{e.lr_multiplier:g}): {e.reason}")
    if isinstance(e, ev.Fault):
        return f"FAULT {e.fault} at step {e.step}: {e.message}" + (f" — {e.suggestion}" if e.suggestion else "")
    if isinstance(e, ev.Log) and e.level != "info":
        return f"{e.level}: {e.message}"
    if isinstance(e, ev.ControlAck):
        return f"{e.command} took effect at step {e.step}" + ("" if e.ok else f" ({e.detail})")
    return None

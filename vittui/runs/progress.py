"""Turns a stream of events into the one-line progress a terminal shows (headless train and attach).

Pure and stateful only in what it has seen, so the same events always give the same lines."""

from __future__ import annotations

from dataclasses import dataclass, field

from vittui.runs import events as ev


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds != seconds or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


@dataclass
class Progress:
    total_steps: int = 0
    steps_per_epoch: int = 1
    epochs: int = 0
    step: int = 0
    epoch: float = 0.0
    loss_ema: float | None = None
    images_per_s: float = 0.0
    step_time_ema: float | None = None
    top1: float | None = None
    top5: float | None = None
    best_top1: float | None = None
    state: str = "starting"
    name: str = ""
    lines: list[str] = field(default_factory=list)  # lines worth keeping (evals, faults, logs)
    smoothing: float = 0.9

    def feed(self, e: ev.Event) -> None:
        if isinstance(e, ev.RunStarted):
            self.total_steps, self.steps_per_epoch, self.name = e.total_steps, e.steps_per_epoch, e.name
            self.epochs = -(-e.total_steps // max(e.steps_per_epoch, 1))
        elif isinstance(e, ev.Step):
            self.step, self.epoch, self.images_per_s = e.step, e.epoch, e.images_per_s
            a = self.smoothing
            self.loss_ema = e.loss if self.loss_ema is None else a * self.loss_ema + (1 - a) * e.loss
            self.step_time_ema = e.step_time if self.step_time_ema is None else a * self.step_time_ema + (1 - a) * e.step_time
        elif isinstance(e, ev.Eval):
            self.top1, self.top5 = e.top1, e.top5
            self.best_top1 = max(e.top1, self.best_top1 or 0.0)
            ema = f"  ema top-1 {e.ema_top1:.2f}%" if e.ema_top1 is not None else ""
            self.lines.append(f"eval  step {e.step:>6}  epoch {e.epoch:5.2f}  val loss {e.loss:.4f}  "
                              f"top-1 {e.top1:.2f}%  top-5 {e.top5:.2f}%{ema}")
        elif isinstance(e, ev.Status):
            self.state = e.state
            if e.state in ("paused", "stopped", "failed", "finished"):
                self.lines.append(f"{e.state} at step {e.step}" + (f": {e.reason}" if e.reason else ""))
        elif isinstance(e, ev.Fault):
            self.lines.append(f"FAULT {e.fault} at step {e.step}: {e.message}" + (f" — {e.suggestion}" if e.suggestion else ""))
        elif isinstance(e, ev.Log) and e.level != "info":
            self.lines.append(f"{e.level}: {e.message}")
        elif isinstance(e, ev.ControlAck):
            self.lines.append(f"{e.command} took effect at step {e.step}" + ("" if e.ok else f" ({e.detail})"))

    @property
    def eta(self) -> float | None:
        if self.step_time_ema is None or not self.total_steps:
            return None
        return (self.total_steps - self.step) * self.step_time_ema

    def line(self) -> str:
        ep_total = self.epochs or "?"
        acc = f"{self.top1:.1f}%" if self.top1 is not None else "--"
        loss = f"{self.loss_ema:.4f}" if self.loss_ema is not None else "--"
        return (f"[{self.state}] epoch {min(int(self.epoch) + 1, self.epochs or 10**9)}/{ep_total}  "
                f"step {self.step}/{self.total_steps or '?'}  loss {loss}  val {acc}  "
                f"{self.images_per_s:,.0f} img/s  ETA {fmt_duration(self.eta)}")

    def take_lines(self) -> list[str]:
        out, self.lines = self.lines, []
        return out

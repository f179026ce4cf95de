"""A run's history as the monitor needs it, built from events alone (no Textual, no torch).

The screen feeds events in; the plots read whole series out and draw a downsampled copy. Per-step
series are bounded (`StepSeries`), so a run of a million steps costs what one of two thousand does.
Feeding `events.jsonl` back — every line, or with Step lines sampled as the monitor does on re-attach —
rebuilds what a live viewer had: every eval, probe and log exactly, the last steps exactly, and the loss
and lr curves at the resolution a plot draws.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Sequence

from vittui.runs.events import (
    AttentionProbe, ControlAck, DataSkipped, Eval, Event, Fault, Finished, GradFlow, Log, RunStarted, Status, Step,
    CheckpointSaved,
)
from vittui.ui.step_series import StepSeries

RECENT = 64  # steps whose timestamps the ETA reads (a window of 50)
MAX_PROBES = 1024  # attention probes kept for scrubbing (each carries per-layer, per-head stats)
KEEP_PROBES = 256  # the newest, always all of them; older ones are halved each time the cap is hit
LOGGED = (Log, Fault, DataSkipped, ControlAck, CheckpointSaved, Status, Finished, RunStarted)


@dataclass
class RunHistory:
    started: RunStarted | None = None
    last_step: Step | None = None
    last_eval: Eval | None = None
    finished: Finished | None = None
    state: str | None = None  # from the latest Status event
    # loss and lr per step, in bounded buckets (exact per step for short runs); the screen reads
    # `steps`/`loss`/`lr` out of it. `recent` keeps the last steps' timestamps exactly for the ETA.
    series: StepSeries = field(default_factory=lambda: StepSeries(("loss", "lr")))
    recent: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    top1: list[float] = field(default_factory=list)
    top5: list[float] = field(default_factory=list)
    best_top1: float | None = None
    faults: int = 0
    warnings: int = 0
    skipped: int = 0
    count: int = 0
    probes: list[AttentionProbe] = field(default_factory=list)  # by step; a resumed run's repeats replace
    grad_flow: GradFlow | None = None  # the latest

    def feed(self, events: Sequence[Event]) -> None:
        for ev in events:
            self.count += 1
            if isinstance(ev, Step):
                # a resumed run repeats steps after its last checkpoint: the series drops its stale tail
                self.series.add(ev.step, (ev.loss, ev.lr))
                while self.recent and self.recent[-1][0] >= ev.step:
                    self.recent.pop()
                self.recent.append((ev.step, ev.t))
                self.last_step = ev
            elif isinstance(ev, Eval):
                self.eval_steps.append(ev.step)
                self.eval_loss.append(ev.loss)
                self.top1.append(ev.top1)
                self.top5.append(ev.top5)
                self.last_eval = ev
                if self.best_top1 is None or ev.top1 > self.best_top1:
                    self.best_top1 = ev.top1
            elif isinstance(ev, RunStarted):
                self.started = ev
            elif isinstance(ev, Status):
                self.state = ev.state
            elif isinstance(ev, Finished):
                self.finished = ev
                if ev.best_top1 is not None:
                    self.best_top1 = ev.best_top1
            elif isinstance(ev, Fault):
                self.faults += 1
            elif isinstance(ev, Log) and ev.level in ("warning", "error"):
                self.warnings += 1
            elif isinstance(ev, DataSkipped):
                self.skipped = ev.count
            elif isinstance(ev, AttentionProbe):
                if self.probes and ev.step <= self.probes[-1].step:  # resumed: drop the stale tail
                    self.probes = [p for p in self.probes if p.step < ev.step]
                self.probes.append(ev)
                if len(self.probes) > MAX_PROBES:  # bounded: the newest kept whole, older ones thinned
                    self.probes = self.probes[:-KEEP_PROBES:2] + self.probes[-KEEP_PROBES:]
            elif isinstance(ev, GradFlow):
                self.grad_flow = ev

    # --- derived -------------------------------------------------------------------------------
    @property
    def steps(self) -> list[float]:
        return self.series.xs()

    @property
    def loss(self) -> list[float]:
        return self.series.ys("loss")

    @property
    def lr(self) -> list[float]:
        return self.series.ys("lr")

    @property
    def step(self) -> int:
        return self.last_step.step if self.last_step else 0

    @property
    def epoch(self) -> float:
        return self.last_step.epoch if self.last_step else 0.0

    @property
    def total_steps(self) -> int:
        return self.started.total_steps if self.started else 0

    def seconds_per_step(self, window: int = 50) -> float | None:
        """From event timestamps (not the wall clock), so a replayed history gives the same ETA."""
        r = self.recent
        n = min(window, len(r) - 1)
        if n < 1:
            return None
        dt = r[-1][1] - r[-1 - n][1]
        ds = r[-1][0] - r[-1 - n][0]
        if ds <= 0 or dt <= 0:
            return None
        return dt / ds

    def eta_seconds(self) -> float | None:
        total = self.total_steps
        sps = self.seconds_per_step()
        if not total or sps is None:
            return None
        return max(0, total - self.step) * sps


def smooth(values: Sequence[float], smoothing: float) -> list[float]:
    """TensorBoard-style debiased EMA; smoothing 0 returns the values; NaN/inf points are skipped."""
    if smoothing <= 0:
        return list(values)
    out: list[float] = []
    acc, weight = 0.0, 0.0
    last = math.nan
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(last)
            continue
        acc = smoothing * acc + (1 - smoothing) * v
        weight = smoothing * weight + (1 - smoothing)
        last = acc / weight
        out.append(last)
    return out


def downsample(xs: Sequence[float], ys: Sequence[float], max_points: int) -> tuple[list[float], list[float]]:
    """Bucket means down to at most `max_points`; the last point is kept exact so the line ends where the run is."""
    n = len(xs)
    if n <= max_points or max_points < 2:
        return list(xs), list(ys)
    out_x: list[float] = []
    out_y: list[float] = []
    buckets = max_points - 1
    size = (n - 1) / buckets
    for b in range(buckets):
        lo, hi = int(b * size), max(int((b + 1) * size), int(b * size) + 1)
        seg = [y for y in ys[lo:hi] if y is not None and math.isfinite(y)]
        out_x.append(sum(xs[lo:hi]) / (hi - lo))
        out_y.append(sum(seg) / len(seg) if seg else math.nan)
    out_x.append(xs[-1])
    out_y.append(ys[-1])
    return out_x, out_y


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


"""A run's history, folded from its events: the one reader of `events.jsonl` that every view uses — the
monitor (plots, header, insight panes), `vittui attach` and the foreground `vittui train` line
(`runs/progress.py`), `vittui compare` and the model card (`runs/compare.py`), and the coming queue.

No torch, no numpy, no Textual: the dashboard's first frame stays light.

**Resumed runs, one rule.** A resumed worker logs `RunStarted(resumed_from_step=K)` and then redoes the
steps after its checkpoint at K. At that event the history rewinds to K: the steps, evaluations, probes
and gradient snapshot logged after K are dropped — that stretch was redone, and the redone one is what
the run became — and the run is no longer finished. What happened to the run is kept: faults, warnings,
skipped images (and the logs a view keeps itself). The ETA's timing window starts again (a new process
runs at its own speed). A run resumed before its first checkpoint starts over: its worker logs the
warning "no checkpoint yet: starting over from step 0" and a second `RunStarted(resumed_from_step=0)`,
which rewinds everything to 0 (and counts as a resume to 0 in `resumes`). A Step at or before the last
one with no such event before it (a log written without `resumed_from_step`) rewinds the same way, to
the step before it. A `Rewound(to_step=K)` (the divergence guard reloaded the checkpoint at K) rewinds
the same way; the event itself is kept in `rewinds`, for the views that mark it.

Per-step values sit in a `StepSeries`: bounded for the monitor (a million steps cost what two thousand
do), exact for compare (`max_buckets=None`). Feeding the file back — every line, or with Step lines
sampled as the monitor and `attach` do on re-attach — rebuilds every eval, probe and log exactly, the
last steps exactly, and the curves at the resolution a plot draws.

**Markers.** What was done to the run at a step — a knob changed from the dashboard or `vittui ctl set`
(old -> new, from the worker's ControlAck), a pause and its resume, a divergence fault, a suspend (its
reason: by the user, or automatically), a worker restarted from a checkpoint — is folded into `markers`,
which the plots draw at their step and the log lists, and the knob changes alone into `knob_changes`
(what `vittui compare` lists). Each event kind's markers come from one entry of `MARKERS`. The resume
rule holds for them as for steps: markers after the step a resume (or a rewind) goes back to are dropped.
`knobs` is what the live worker's knobs were set to (by a `set`, or by a rewind's lr factor); a worker
resumed from a checkpoint starts from its recipe's intervals and the lr multiplier the checkpoint kept.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, Callable, Iterable, Sequence

from vittui.runs.events import PROBE_OFF_PREFIX
from vittui.runs.events import (
    AttentionProbe, ControlAck, DataSkipped, Eval, Event, Fault, Finished, GradFlow, Log, Rewound, RunStarted,
    Status, Step,
)
from vittui.runs.step_series import StepSeries

RECENT = 64  # steps whose timestamps (and losses) the ETA and the progress line read (a window of 50)
MAX_PROBES = 1024  # attention probes kept for scrubbing (each carries per-layer, per-head stats)
KEEP_PROBES = 256  # the newest, always all of them; older ones are halved each time the cap is hit
STEP_COLUMNS = ("loss", "lr")  # the Step fields the monitor plots
MAX_MARKERS = 1000  # the newest kept: a plot has room for a few dozen, the log for its 2000 lines


@dataclass(frozen=True)
class Marker:
    """Something done to the run at `step`: drawn on the plots at that step, listed in the log."""

    step: int
    kind: str  # knob | pause | resume | fault | suspend | restart (and what MARKERS gains)
    label: str  # the whole story, for the log: "lr_multiplier 1 -> 0.5", "pause: paused by user"
    tag: str = ""  # the few characters a plot has room for: "lr x0.5", "||", "nan"


@dataclass(frozen=True)
class KnobChange:
    """A live knob set at `step` (it applies from the next one), as the worker acknowledged it."""

    step: int
    knob: str  # its one name: lr_multiplier | eval_every | probe_every
    old: float
    new: float


KNOB_TAGS = {"lr_multiplier": "lr x", "eval_every": "eval ", "probe_every": "probe "}


def knob_changes(e: ControlAck) -> list[KnobChange]:
    """The knobs an acknowledged command changed (none for a refused one or an old log's ack)."""
    if not e.ok:
        return []
    return [KnobChange(e.step, k, v[0], v[1]) for k, v in (e.changes or {}).items()]


def _knob_markers(e: ControlAck) -> list[Marker]:
    return [Marker(c.step, "knob", f"{c.knob} {c.old:g} -> {c.new:g}", f"{KNOB_TAGS.get(c.knob, c.knob)}{c.new:g}")
            for c in knob_changes(e)]


def _status_markers(e: Status) -> list[Marker]:
    if e.state == "paused":
        return [Marker(e.step, "pause", f"pause: {e.reason or 'paused'}", "||")]
    if e.state == "running" and e.reason == "resumed":
        return [Marker(e.step, "resume", "resume", ">")]
    if e.state == "suspended":  # by the user, or automatically: the reason says which
        return [Marker(e.step, "suspend", f"suspend: {e.reason or 'suspended'}", "zz")]
    return []


def _fault_markers(e: Fault) -> list[Marker]:
    return [Marker(e.step, "fault", f"{e.fault}: {e.message}", e.fault)]


def _rewind_markers(e: Rewound) -> list[Marker]:
    why = f" ({e.reason})" if e.reason else ""
    return [Marker(e.to_step, "rewind", f"rewind: diverged at step {e.step}{why}, back to step {e.to_step}, "
                                        f"lr multiplier {e.lr_multiplier:g}", f"rewind lr x{e.lr_multiplier:g}")]


def _restart_markers(e: RunStarted) -> list[Marker]:
    return [Marker(e.resumed_from_step, "restart", f"worker restarted from step {e.resumed_from_step}", "restart")]


# Which events mark the plots, one line per kind: event type -> its markers.
MARKERS: dict[type[Event], Callable[[Any], list[Marker]]] = {
    ControlAck: _knob_markers,
    Status: _status_markers,
    Fault: _fault_markers,
    Rewound: _rewind_markers,  # at the step it went back to: the markers after it are dropped with the steps
}


def markers_of(e: Event) -> list[Marker]:
    """The markers one event makes (the log pane lists them as they come)."""
    rule = MARKERS.get(type(e))
    return rule(e) if rule is not None else []


class RunHistory:
    def __init__(self, columns: Sequence[str] = STEP_COLUMNS, max_buckets: int | None = 1024) -> None:
        """`columns`: the Step fields kept per step (in `series`); `max_buckets=None` keeps every step."""
        self.started: RunStarted | None = None  # the latest (a resume logs another)
        self.first_t: float | None = None  # the first event's time: curves against wall time start there
        self.last_step: Step | None = None
        self.finished: Finished | None = None
        self.state: str | None = None  # from the latest Status event
        self.series = StepSeries(columns, max_buckets)
        self.recent: deque[tuple[int, float, float]] = deque(maxlen=RECENT)  # (step, t, loss), exact
        self.evals: list[Eval] = []
        self.best_eval: Eval | None = None  # highest finite top-1, the latest on ties
        self.probes: list[AttentionProbe] = []  # by step; bounded (MAX_PROBES)
        self.grad_flow: GradFlow | None = None  # the latest
        self.probe_off = ""  # why attention probing switched off (the worker's log line), "" while it runs
        self.resumes: list[int] = []  # the step each resume went back to
        self.rewinds: list[Rewound] = []  # the divergence guard's rewinds, in order
        self._rewound_to = 0  # the step of the latest rewind: where the run stands until its next Step
        self.faults = 0
        self.warnings = 0
        self.skipped = 0  # unreadable images, as the worker last counted them
        self.count = 0  # events fed
        self.markers: list[Marker] = []  # by step; see the module's docstring
        self.knob_changes: list[KnobChange] = []
        self.knobs: dict[str, float] = {}  # knob -> the value the live worker was last set to
        get = attrgetter(*columns)
        self._values = get if len(self.series.columns) > 1 else (lambda e: (get(e),))

    def feed(self, events: Iterable[Event]) -> None:
        for e in events:
            self.count += 1
            if self.first_t is None:
                self.first_t = e.t
            if (rule := MARKERS.get(type(e))) is not None:
                self._mark(rule(e))
            if isinstance(e, Step):
                if self.last_step is not None and e.step <= self.last_step.step:
                    self.rewind(e.step - 1)  # repeated steps with no resume logged: the same rule
                self.series.add(e.step, self._values(e))
                self.recent.append((e.step, e.t, e.loss))
                self.last_step = e
            elif isinstance(e, Eval):
                self.evals.append(e)
                if _better(e, self.best_eval):
                    self.best_eval = e
            elif isinstance(e, RunStarted):
                if self.started is not None or e.resumed_from_step:
                    self.rewind(e.resumed_from_step)
                    self.recent.clear()
                if e.resumed_from_step or self.started is not None:  # a start-over resumes to 0
                    self.resumes.append(e.resumed_from_step)
                    self._mark(_restart_markers(e))
                self.started = e
                self.knobs = self._checkpointed_knobs(e.resumed_from_step)  # a new worker's, beyond its recipe's
                self.probe_off = ""  # a new worker probes again (and logs again if it must stop)
            elif isinstance(e, Status):
                self.state = e.state
            elif isinstance(e, Finished):
                self.finished = e
            elif isinstance(e, Fault):
                self.faults += 1
            elif isinstance(e, Log) and e.level in ("warning", "error"):
                self.warnings += 1
                if e.message.startswith(PROBE_OFF_PREFIX):
                    self.probe_off = e.message
            elif isinstance(e, DataSkipped):
                self.skipped = e.count
            elif isinstance(e, AttentionProbe):
                if self.probes and e.step <= self.probes[-1].step:  # probed again: the new one replaces
                    self.probes = [p for p in self.probes if p.step < e.step]
                self.probes.append(e)
                if len(self.probes) > MAX_PROBES:  # bounded: the newest kept whole, older ones thinned
                    self.probes = self.probes[:-KEEP_PROBES:2] + self.probes[-KEEP_PROBES:]
            elif isinstance(e, GradFlow):
                self.grad_flow = e
            elif isinstance(e, ControlAck):
                for c in knob_changes(e):
                    self.knob_changes.append(c)
                    self.knobs[c.knob] = c.new
            elif isinstance(e, Rewound):  # the steps after to_step are redone: the resume rule
                self.rewind(e.to_step)
                self.rewinds.append(e)
                self.knobs["lr_multiplier"] = e.lr_multiplier

    def _mark(self, markers: list[Marker]) -> None:
        self.markers.extend(markers)
        if len(self.markers) > MAX_MARKERS:
            del self.markers[:-MAX_MARKERS]

    def _checkpointed_knobs(self, step: int) -> dict[str, float]:
        """The knobs a worker resumed from the checkpoint at `step` starts with, beyond its recipe's: the lr
        multiplier the checkpoint saved (the last one set or rewound to at or before `step`)."""
        lr = [(c.step, c.new) for c in self.knob_changes if c.knob == "lr_multiplier" and c.step <= step]
        lr += [(r.to_step, r.lr_multiplier) for r in self.rewinds if r.to_step <= step]
        return {"lr_multiplier": max(lr, key=lambda x: x[0])[1]} if lr else {}

    def rewind(self, step: int) -> None:
        """Forget what was logged after `step` (the rule for resumed runs: see the module's docstring)."""
        self.series.cut(step + 1)
        self._rewound_to = step
        while self.recent and self.recent[-1][0] > step:
            self.recent.pop()
        if self.last_step is not None and self.last_step.step > step:
            self.last_step = None
        if self.evals and self.evals[-1].step > step:
            self.evals = [e for e in self.evals if e.step <= step]
            self.best_eval = None
            for e in self.evals:
                if _better(e, self.best_eval):
                    self.best_eval = e
        if self.probes and self.probes[-1].step > step:
            self.probes = [p for p in self.probes if p.step <= step]
        if self.grad_flow is not None and self.grad_flow.step > step:
            self.grad_flow = None
        self.markers = [m for m in self.markers if m.step <= step]  # not sorted: a fault's step is the one not taken
        self.knob_changes = [c for c in self.knob_changes if c.step <= step]
        self.finished = None

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
    def last_eval(self) -> Eval | None:
        return self.evals[-1] if self.evals else None

    @property
    def eval_steps(self) -> list[int]:
        return [e.step for e in self.evals]

    @property
    def eval_loss(self) -> list[float]:
        return [e.loss for e in self.evals]

    @property
    def top1(self) -> list[float]:
        return [e.top1 for e in self.evals]

    @property
    def top5(self) -> list[float]:
        return [e.top5 for e in self.evals]

    @property
    def best_top1(self) -> float | None:
        """The worker's word once it finished (its best checkpoint), else the best evaluation so far."""
        if self.finished is not None and self.finished.best_top1 is not None:
            return self.finished.best_top1
        return self.best_eval.top1 if self.best_eval else None

    @property
    def step(self) -> int:
        if self.last_step is not None:
            return self.last_step.step
        return self._rewound_to

    @property
    def epoch(self) -> float:
        if self.last_step is not None:
            return self.last_step.epoch
        return self.step / self.started.steps_per_epoch if self.started and self.started.steps_per_epoch else 0.0

    @property
    def total_steps(self) -> int:
        return self.started.total_steps if self.started else 0

    @property
    def epochs(self) -> int:
        return -(-self.total_steps // max(self.started.steps_per_epoch, 1)) if self.started else 0

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

    def recent_loss(self, smoothing: float = 0.9) -> float | None:
        """The training loss now: the last steps' losses smoothed as the loss plot smooths them."""
        ys = smooth([r[2] for r in self.recent], smoothing)
        return ys[-1] if ys and math.isfinite(ys[-1]) else None


def _better(e: Eval, best: Eval | None) -> bool:
    return math.isfinite(e.top1) and (best is None or e.top1 >= best.top1)


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


def fmt_duration(seconds: float | None) -> str:
    """`mm:ss`, `h:mm:ss` past the hour; `--:--` when there is nothing to show (None, NaN, inf, negative)."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"

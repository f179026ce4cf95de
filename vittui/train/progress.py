"""What the training loop carries from step to step (`Progress`), what it returns (`TrainResult`), and the
exception a sweep trial's pruner ends it with. Apart from loop.py so that resume.py, which rebuilds a
`Progress` from a checkpoint, can share it without importing the loop."""

from __future__ import annotations

from dataclasses import dataclass, field

from vittui.train import checkpoint as ckpt
from vittui.train.control_point import Knobs
from vittui.train.guard import DivergenceRule, EarlyStop


class TrialPruned(Exception):
    """A sweep trial's pruner said stop at this eval (vittui/sweep/report.py); the message is the reason."""


@dataclass
class TrainResult:
    state: str  # finished | stopped | suspended | pruned
    step: int
    best_top1: float | None
    last_top1: float | None
    wall_time: float


@dataclass
class Progress:
    """What the loop changes: the position (what a checkpoint saves) and the scores."""

    pos: ckpt.Position = field(default_factory=lambda: ckpt.Position(step=0, epoch=0, batch=0))
    best_top1: float | None = None
    last_top1: float | None = None
    val_skipped: set[str] = field(default_factory=set)  # unreadable validation images, each counted once
    unreadable_steps: int = 0  # steps in a row whose batches held no readable image
    last_metric: float | None = None  # schedule.early_stop_metric at the last eval; the best checkpoint follows it
    best_metric: float | None = None  # ... at the best checkpoint
    stopper: EarlyStop = field(default_factory=EarlyStop)  # schedule.early_stop_* (train/guard.py)
    guard: DivergenceRule = field(default_factory=DivergenceRule)  # run.divergence_*; a checkpoint keeps its mean
    early_stop: str = ""  # why the run stopped early ("" while it goes on)
    knobs: Knobs = field(default_factory=Knobs)  # the live knobs; a checkpoint keeps the lr multiplier
    eval_step: int = -1  # the step of the last eval: an epoch's end does not evaluate the same weights twice

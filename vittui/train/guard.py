"""Guard rails the loop consults at marked points: the divergence rule and early stopping.

Both are plain state machines fed one number at a time, torch-free, so their rules are tested apart
from training and the loop stays one readable page (train/loop.py calls them).

**Divergence.** A non-finite loss always diverges. With `run.divergence_factor = k > 0` a loss above
k × its running mean for `run.divergence_steps = m` steps in a row also does (a spike; one noisy batch
is not one). The running mean is a debiased EMA of the losses the rule accepted — spiking steps are
kept out of it, so a slow climb cannot drag the bar up with it — and the rule waits `WARMUP` steps for
the mean to mean something; checkpoints keep the mean, so a resumed or rewound run does not wait again.
What the loop does then is `run.on_divergence`: pause, or rewind to the last checkpoint saved before the
divergence began (`good_step`), at a lower lr.

**Early stopping.** `schedule.early_stop_patience = P` evals in a row whose metric
(`schedule.early_stop_metric`) did not beat the best so far by more than `early_stop_min_delta` end
the run; the best checkpoint follows the same metric (`better`), and an eval that improves it is
checkpointed at once (whatever `run.checkpoint_every` says), so the exported model is that one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WARMUP = 10  # steps the running mean needs before the spike rule judges a loss
EMA_BETA = 0.9  # the running mean's memory: about the last ten accepted steps


def better(metric: str, value: float, than: float | None, min_delta: float = 0.0) -> bool:
    """`value` improves on `than` by more than `min_delta`; val_top1 higher is better, val_loss lower."""
    if value is None or not math.isfinite(value):
        return False
    if than is None:
        return True
    return value > than + min_delta if metric == "val_top1" else value < than - min_delta


def metric_of(metric: str, top1: float, loss: float) -> float:
    return top1 if metric == "val_top1" else loss


@dataclass
class DivergenceRule:
    factor: float = 0.0  # k; 0 = only non-finite losses diverge
    steps: int = 3  # m
    mean: float = 0.0  # debiased EMA of accepted losses (valid when weight > 0)
    weight: float = 0.0
    seen: int = 0
    above: int = 0  # spiking steps in a row
    first_above: int = 0  # the step the current spike began
    rewinds: int = 0  # rewinds done by this worker

    def check(self, step: int, loss: float) -> tuple[str, int]:
        """(why the loss diverged at `step`, the last step known good) or ("", 0) while it is fine."""
        if not math.isfinite(loss):
            return f"loss is {loss} at step {step}", step - 1
        if self.factor > 0 and self.seen >= WARMUP and loss > self.factor * self.mean:
            if self.above == 0:
                self.first_above = step
            self.above += 1
            if self.above >= self.steps:
                why = (f"loss {loss:.4g} above {self.factor:g} x its running mean {self.mean:.4g} for "
                       f"{self.above} steps (since step {self.first_above})")
                good = self.first_above - 1
                self.above = 0  # judged: a resumed pause starts counting afresh
                return why, good
            return "", 0
        self.above = 0
        self.weight = EMA_BETA * self.weight + (1 - EMA_BETA)
        self.mean += (1 - EMA_BETA) / self.weight * (loss - self.mean)  # debiased: exact mean-like start
        self.seen += 1
        return "", 0

    def reset(self) -> None:
        """Judge afresh: the running mean forgotten, the warm-up to wait again."""
        self.mean = self.weight = 0.0
        self.seen = self.above = self.first_above = 0

    def state(self) -> dict:
        """What a checkpoint keeps, so a resumed or rewound run judges its next loss against the running mean
        it had at that step (not after another warm-up)."""
        return {"mean": self.mean, "weight": self.weight, "seen": self.seen}

    def load(self, state: dict | None) -> None:
        """A checkpoint's state; None (a checkpoint from before the rule kept one) starts afresh."""
        self.reset()
        if state:
            self.mean, self.weight, self.seen = float(state["mean"]), float(state["weight"]), int(state["seen"])


@dataclass
class EarlyStop:
    patience: int = 0  # evals without improvement that end the run; 0 = off
    metric: str = "val_top1"
    min_delta: float = 0.0
    best: float | None = None
    bad_evals: int = 0
    unsaved_best: bool = False  # the last eval improved and no checkpoint holds it yet

    def after_eval(self, value: float) -> bool:
        """Feed one eval's metric; True when the run should stop now."""
        if better(self.metric, value, self.best, self.min_delta):
            self.best, self.bad_evals = value, 0
            self.unsaved_best = bool(self.patience)
        else:
            self.bad_evals += 1
        return bool(self.patience) and self.bad_evals >= self.patience

    def state(self) -> dict:
        return {"best": self.best, "bad_evals": self.bad_evals}

    def load(self, state: dict | None) -> None:
        if state:
            self.best, self.bad_evals = state.get("best"), int(state.get("bad_evals", 0))


__all__ = ["DivergenceRule", "EarlyStop", "better", "metric_of", "WARMUP"]

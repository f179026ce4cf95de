"""The LR range test (Smith 2015, fastai's `lr_find`): train for ~100 real optimizer steps while the lr
grows exponentially from `start` to `end`, smooth the loss, stop when it diverges, suggest an lr.

    find_lr(built) -> LRFindResult        # model, optimizer, RNG and data order as before, byte for byte

The steps are the training loop's own (`loop.forward_backward`: the recipe's model, data, augmentation,
mixup, accumulation and precision; then clipping and the optimizer step), with the lr set by the ramp
instead of the schedule. Each param group gets the ramp's lr times its layer-decay `lr_scale`, as the
schedule would give it, so the suggestion is a value for `optim.lr`.

Rules (also in the JSON and the README):
- smoothing: an exponential moving average of the loss, beta 0.98, bias-corrected (divided by 1 - beta^k
  after k steps), so the first points are not pulled towards zero;
- divergence: the test stops early when a loss is not finite or, after `MIN_STEPS` steps, the smoothed
  loss exceeds `DIVERGE` (4) times its lowest value so far;
- suggestion (`RULE`): the lr at which the smoothed loss is lowest: the largest lr at which the loss
  still falls, which is where Smith's 1cycle puts the peak of a schedule that warms up to it and
  anneals, as every vittui preset does (warmup then cosine). The first rule tried, a tenth of that
  (fastai's `minimum`), trained the digits demo to 59% top-1 in 15 epochs where a grid reached the
  90s: on a model trained from scratch ~100 steps barely move the loss, the curve is flat until just
  before the minimum, and a tenth of it is far too low. benchmarks/lr_find_bench.py checks the rule
  against a 5-point grid (BENCHMARKS.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

from vittui.train import snapshot
from vittui.train.build import Built
from vittui.train.loop import forward_backward

BETA = 0.98
DIVERGE = 4.0
MIN_STEPS = 10
RULE = ("min: the lr where the smoothed loss (EMA 0.98, bias-corrected) is lowest, the peak for a warmup + "
        "cosine schedule")
STOP_RULE = (f"stops when a loss is not finite or, after {MIN_STEPS} steps, the smoothed loss exceeds "
             f"{DIVERGE:g}x its minimum")


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float]
    suggested_lr: float | None  # None when no step gave a finite loss
    rule: str
    stopped_early: bool
    steps: int  # optimizer steps taken (the length of the lists)
    stop_rule: str = STOP_RULE

    def as_dict(self) -> dict:
        return asdict(self)


def lr_at(i: int, steps: int, start: float, end: float) -> float:
    """The ramp: `start` at step 0, `end` at step `steps - 1`, exponential (a straight line on a log axis)."""
    return start * (end / start) ** (i / max(steps - 1, 1))


def smooth(losses: list[float], beta: float = BETA) -> list[float]:
    """Bias-corrected exponential moving average (Adam's correction): point k is avg_k / (1 - beta^k)."""
    avg, out = 0.0, []
    for k, loss in enumerate(losses, start=1):
        avg = beta * avg + (1 - beta) * loss
        out.append(avg / (1 - beta ** k))
    return out


def suggest(lrs: list[float], smoothed: list[float]) -> float | None:
    """`RULE`: the lr at the smoothed loss's minimum (the first, on a tie)."""
    finite = [(s, i) for i, s in enumerate(smoothed) if math.isfinite(s)]
    if not finite:
        return None
    return lrs[min(finite)[1]]


def find_lr(b: Built, steps: int = 100, start: float = 1e-7, end: float = 10.0,
            on_step: Callable[[int, float, float], None] | None = None) -> LRFindResult:
    """Run the range test on `b` and put everything back (`snapshot`), whatever happens in between.
    `on_step(i, lr, loss)` is called after each step (progress)."""
    if steps < 2 or not 0 < start < end:
        raise ValueError(f"the lr ramp needs steps >= 2 and 0 < start < end (got {steps}, {start:g}, {end:g})")
    saved = snapshot.take(b)
    try:
        return _ramp(b, steps, start, end, on_step)
    finally:
        snapshot.restore(b, saved)


def _ramp(b: Built, steps: int, start: float, end: float, on_step) -> LRFindResult:
    from vittui.data.samplers import iterate_from

    b.model.train()
    b.optimizer.zero_grad(set_to_none=True)
    lrs: list[float] = []
    losses: list[float] = []
    avg, best, stopped = 0.0, math.inf, False
    epoch, batch, batches, empty = 0, 0, None, 0
    while len(lrs) < steps:
        if batches is None or batch == 0:
            batches = iterate_from(b.train_loader, epoch, 0)
        lr = lr_at(len(lrs), steps, start, end)
        for g in b.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        loss_sum, rows, _ = forward_backward(b, batches)
        batch += b.accum
        if batch >= b.batches_per_epoch:
            epoch, batch = epoch + 1, 0
        if rows == 0:  # every image unreadable: no step, as in training
            b.optimizer.zero_grad(set_to_none=True)
            empty += 1
            if empty > b.steps_per_epoch:
                break
            continue
        loss = float(loss_sum) / b.accum
        lrs.append(lr)
        losses.append(loss)
        if not math.isfinite(loss):
            stopped = True
            break
        b.acc.clip_grad_norm_(b.trainable, b.recipe.optim.clip_grad or float("inf"))
        b.optimizer.step()
        b.optimizer.zero_grad(set_to_none=True)
        if on_step is not None:
            on_step(len(lrs), lr, loss)
        avg = BETA * avg + (1 - BETA) * loss
        smoothed = avg / (1 - BETA ** len(losses))
        best = min(best, smoothed)
        if len(losses) > MIN_STEPS and smoothed > DIVERGE * best:
            stopped = True
            break
    b.optimizer.zero_grad(set_to_none=True)
    smoothed_all = smooth([x if math.isfinite(x) else math.inf for x in losses])
    return LRFindResult(lrs=lrs, losses=losses, smoothed=smoothed_all, suggested_lr=suggest(lrs, smoothed_all),
                        rule=RULE, stopped_early=stopped and len(lrs) < steps, steps=len(lrs))


__all__ = ["LRFindResult", "find_lr", "lr_at", "smooth", "suggest", "RULE", "STOP_RULE"]

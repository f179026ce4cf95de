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
- suggestion (`RULE`): a tenth of the lr at which the smoothed loss is lowest. The minimum sits just
  before the lr where training becomes unstable; a tenth of it is the usual safe side (fastai's
  `minimum` suggestion). It passed benchmarks/lr_find_bench.py on the digits demo (BENCHMARKS.md);
  the steepest-descent point was noisier on ~100 steps of a tiny model.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Callable

import torch

from vittui.train import snapshot
from vittui.train.build import Built
from vittui.train.loop import forward_backward

BETA = 0.98
DIVERGE = 4.0
MIN_STEPS = 10
RULE = "min/10: a tenth of the lr where the smoothed loss (EMA 0.98, bias-corrected) is lowest"
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
    """`RULE`: a tenth of the lr at the smoothed loss's minimum."""
    finite = [(s, lr) for s, lr in zip(smoothed, lrs) if math.isfinite(s)]
    if not finite:
        return None
    return min(finite)[1] / 10


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


def plot(result: LRFindResult, width: int = 80, height: int = 20, color: bool = True) -> str:
    """The curve as terminal text (plotext): the smoothed loss (blue) and the raw loss (gray) against the lr
    on a log axis with a tick per decade, the suggestion a red vertical line. The y range runs from the
    smoothed minimum to a little above the starting loss, so the divergence at the end does not flatten
    the part that matters."""
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    finite = [(lr, loss, sm) for lr, loss, sm in zip(result.lrs, result.losses, result.smoothed)
              if math.isfinite(loss) and math.isfinite(sm)]
    title = "LR range test"
    if finite:
        lrs, losses, smoothed = (list(c) for c in zip(*finite))
        plt.xscale("log")
        plt.plot(lrs, losses, color="gray", label="loss")
        plt.plot(lrs, smoothed, color="blue", label="smoothed")
        low, high = min(smoothed), max(smoothed[0], min(smoothed)) * 1.25
        plt.ylim(low - 0.05 * (high - low), high)
        decades = range(math.floor(math.log10(lrs[0])), math.ceil(math.log10(lrs[-1])) + 1)
        ticks = [10.0 ** d for d in decades if lrs[0] <= 10.0 ** d <= lrs[-1]]
        if ticks:
            plt.xticks(ticks, [f"{t:.0e}" for t in ticks])
        if result.suggested_lr is not None:
            plt.vline(result.suggested_lr, color="red")
            title += f": suggested lr {result.suggested_lr:.2e} (red line)"
    plt.title(title)
    plt.xlabel("lr")
    text = plt.build()
    return text if color else plt.uncolorize(text)


__all__ = ["LRFindResult", "find_lr", "lr_at", "smooth", "suggest", "plot", "RULE", "STOP_RULE"]

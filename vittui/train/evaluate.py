"""The training loop's evaluation: mean loss, top-1 and top-5 on the validation loader.

`logits_over` walks the loader — eval mode, no gradients, a forked RNG (evaluating never shifts
training), batches moved to the device, the recipe's autocast, unreadable images noted. The fuller report
of `vittui eval` (confusion, calibration, robustness: `vittui.analysis.evaluate._predict`) walks it on its
own, in float32 and with corruptions applied to the batches, so under bf16 its loss and top-1 can differ
from the training evals' in the last digits.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Callable, ContextManager, Iterable, Iterator, NamedTuple

import torch
from torch import nn


class Scores(NamedTuple):
    loss: float
    top1: float
    top5: float


@torch.no_grad()
def logits_over(model: nn.Module, loader: Iterable, device, autocast: Callable[[], ContextManager] = nullcontext,
                skipped: set[str] | None = None) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(float logits, labels) per non-empty batch of `loader`, in eval mode under a forked RNG; the
    identifiers of unreadable images the loader dropped (a third batch item) are added to `skipped`."""
    was_training = model.training
    model.eval()
    try:
        with torch.random.fork_rng(devices=[]):
            for batch in loader:
                if skipped is not None and len(batch) > 2:
                    skipped.update(map(str, batch[2]))
                x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
                if len(y) == 0:
                    continue
                with autocast():
                    logits = model(x)
                yield logits.float(), y
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, loader: Iterable, device, autocast: Callable[[], ContextManager] = nullcontext,
             skipped: set[str] | None = None) -> Scores:
    """Mean loss, top-1 and top-5 (%) on the loader (NaN, 0, 0 when it had no readable image)."""
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    for logits, y in logits_over(model, loader, device, autocast, skipped):
        loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
        topk = logits.topk(min(5, logits.shape[1]), dim=1).indices
        top1 += (topk[:, 0] == y).sum().item()
        top5 += (topk == y[:, None]).any(dim=1).sum().item()
        n += len(y)
    if n == 0:
        return Scores(float("nan"), 0.0, 0.0)
    return Scores(loss_sum / n, 100.0 * top1 / n, 100.0 * top5 / n)

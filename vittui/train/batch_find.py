"""The batch-size finder: the largest micro-batch (`data.batch_size`) that fits, found with real
forward/backward/optimizer steps, and the images/s at each size tried.

    find_batch(built, max_memory=None) -> BatchFindResult     # model, optimizer, RNG put back after

Search (the same on both devices): double from one unit (1 image, 2 with mixup, which needs even
batches) until a size does not fit or the cap is reached, then bisect between the last size that fit
and the first that did not. What "fits" means:
- on a GPU, a real step that does not raise CUDA out-of-memory (the cache is freed after each failure);
  `max_memory` caps the device with `torch.cuda.set_per_process_memory_fraction` for the search;
- on the CPU, where running out of memory is the OOM killer and not an exception, the memory estimator
  (vittui/planning/memory.py, `vittui estimate`) against free RAM (psutil) or `max_memory`; each size it
  passes still takes real steps, for images/s.
The cap is the training set's size (a batch cannot hold more images than there are), or `max_batch`.
A step's batch is the first training batch's images repeated to the size, through the loop's own
`forward_backward` (device transfer, channels-last, mixup, accumulation, autocast).

Recommendation (`RULE`): the largest batch that fits, unless a smaller one that fits was more than
10% faster in images/s — then that fastest one (past some size a larger batch stops paying).
"""

from __future__ import annotations

import gc
import itertools
import time
from dataclasses import asdict, dataclass, field

import torch

from vittui.train import snapshot
from vittui.train.build import Built
from vittui.train.faults import is_out_of_memory
from vittui.train.loop import forward_backward

FASTER = 1.10
TRIES = 3  # steps at each size: a warm-up (allocations, autotuning), then two timed
RULE = ("the largest batch that fits, unless a smaller one that fits was more than 10% faster (images/s): "
        "then the fastest")


@dataclass
class BatchTry:
    batch: int
    fits: bool
    estimate_bytes: int  # the estimator's peak for this batch on this device
    peak_bytes: int | None = None  # measured: torch.cuda.max_memory_allocated on a GPU; None on the CPU
    images_per_s: float | None = None  # None when it did not fit
    note: str = ""


@dataclass
class BatchFindResult:
    device: str
    limit_bytes: int | None  # the memory the search was held to (CPU: the estimator's bound)
    limit_source: str  # "--max-memory", "free RAM (psutil)", "device memory"
    max_batch: int
    unit: int
    tries: list[BatchTry] = field(default_factory=list)
    largest: int = 0  # the largest batch that fits (0: not even one unit)
    recommended: int = 0
    rule: str = RULE

    def as_dict(self) -> dict:
        return asdict(self)


def recommend(tries: list[BatchTry]) -> int:
    """`RULE` over the sizes that fit (0 when none did)."""
    ok = [t for t in tries if t.fits]
    if not ok:
        return 0
    largest = max(ok, key=lambda t: t.batch)
    timed = [t for t in ok if t.images_per_s]
    fastest = max(timed, key=lambda t: t.images_per_s, default=largest)
    if largest.images_per_s and fastest.images_per_s > FASTER * largest.images_per_s:
        return fastest.batch
    return largest.batch


def search(fits, cap: int, unit: int = 1) -> int:
    """Doubling then bisection over multiples of `unit` up to `cap`: the largest n with fits(n) true,
    assuming fits is monotone (0 when fits(unit) is false). Calls `fits` once per size tried."""
    lo, k, hi = 0, 1, None  # in units: lo fits, hi does not
    top = cap // unit
    while k <= top:
        if not fits(k * unit):
            hi = k
            break
        lo = k
        if k == top:
            break
        k = min(2 * k, top)
    if hi is None:
        return lo * unit
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if fits(mid * unit):
            lo = mid
        else:
            hi = mid
    return lo * unit


def find_batch(b: Built, max_memory: int | None = None, max_batch: int | None = None,
               on_try=None) -> BatchFindResult:
    """Search `b`'s largest batch (see the module docstring) and put everything back after.
    `on_try(BatchTry)` is called after each size (progress)."""
    from vittui.planning.memory import estimate

    cuda = b.acc.device.type == "cuda"
    unit = 2 if b.data.mixup is not None else 1
    cap = max_batch or b.data.train_size
    num_classes = len(b.data.classes)
    result = BatchFindResult(device=str(b.acc.device), limit_bytes=None, limit_source="", max_batch=cap, unit=unit)
    if cuda:
        total = torch.cuda.get_device_properties(b.acc.device).total_memory
        result.limit_bytes = min(max_memory, total) if max_memory else total
        result.limit_source = "--max-memory" if max_memory else "device memory"
    else:
        import psutil

        result.limit_bytes = max_memory or psutil.virtual_memory().available
        result.limit_source = "--max-memory" if max_memory else "free RAM (psutil)"

    def estimate_for(n: int) -> int:
        r = b.recipe.with_overrides([f"data.batch_size={n}"])
        return estimate(r, num_classes=num_classes, device="cuda" if cuda else "cpu").peak

    saved = snapshot.take(b)
    images, labels = _examples(b)
    if cuda and max_memory:
        torch.cuda.set_per_process_memory_fraction(result.limit_bytes / total, b.acc.device)
    try:
        def fits(n: int) -> bool:
            t = BatchTry(batch=n, fits=False, estimate_bytes=estimate_for(n))
            if not cuda and t.estimate_bytes > result.limit_bytes:
                t.note = "estimate over the limit"
            else:
                t.fits, t.images_per_s, t.peak_bytes, t.note = _try(b, images, labels, n)
                if cuda:  # the failed step's tensors went with its exception: hand their blocks back
                    gc.collect()
                    torch.cuda.empty_cache()
            result.tries.append(t)
            if on_try is not None:
                on_try(t)
            return t.fits

        result.largest = search(fits, cap, unit)
    finally:
        if cuda and max_memory:
            torch.cuda.set_per_process_memory_fraction(1.0, b.acc.device)
        snapshot.restore(b, saved)
    result.recommended = recommend(result.tries)
    return result


def _examples(b: Built) -> tuple[torch.Tensor, torch.Tensor]:
    """The first training batch (CPU tensors); the snapshot puts back the RNG and sampler it moves."""
    from vittui.data.samplers import iterate_from

    for x, y, _ in iterate_from(b.train_loader, 0, 0):
        if len(y):
            return x, y
    raise RuntimeError("no readable training image in the first epoch")


def _try(b: Built, images: torch.Tensor, labels: torch.Tensor, n: int) -> tuple[bool, float | None, int | None, str]:
    """Three real steps at batch `n`, a warm-up and two timed: (fits, images/s of the faster timed step,
    peak bytes, note). The faster of two, because other processes on a shared CPU slow a step, never
    speed it up."""
    idx = torch.arange(n) % len(labels)
    batch = (images[idx], labels[idx], [])
    cuda = b.acc.device.type == "cuda"
    b.model.train()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(b.acc.device)
    try:
        times = []
        for _ in range(TRIES):
            if cuda:
                torch.cuda.synchronize(b.acc.device)
            t0 = time.perf_counter()
            forward_backward(b, itertools.repeat(batch))
            b.acc.clip_grad_norm_(b.trainable, b.recipe.optim.clip_grad or float("inf"))
            b.optimizer.step()
            b.optimizer.zero_grad(set_to_none=True)
            if cuda:
                torch.cuda.synchronize(b.acc.device)
            times.append(time.perf_counter() - t0)
        peak = torch.cuda.max_memory_allocated(b.acc.device) if cuda else None
        return True, n * b.accum / min(times[1:]), peak, ""
    except Exception as e:  # noqa: BLE001 - only out-of-memory is an answer; anything else is raised
        if not is_out_of_memory(e):
            raise
        return False, None, None, "CUDA out of memory"
    finally:
        b.optimizer.zero_grad(set_to_none=True)
        gc.collect()
        if cuda:
            torch.cuda.empty_cache()


__all__ = ["BatchTry", "BatchFindResult", "find_batch", "search", "recommend", "RULE"]

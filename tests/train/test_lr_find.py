"""The LR range test (vittui/train/lr_find.py): its ramp, smoothing and rules, and that `find_lr` leaves the
model, the optimizer, every RNG and the data order exactly as it found them (Lightning's finder does not:
#6675). Byte-equality is checked on copies this file takes itself, not through the finder's snapshot."""

from __future__ import annotations

import io
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny import tiny_recipe

from vittui.train.build import build
from vittui.train.loop import forward_backward
from vittui.train.lr_find import RULE, find_lr, lr_at, smooth, suggest

# dropout, drop path and mixup draw from torch's and numpy's RNGs at every step: the ramp moves them all
RANDOM = ["regularize.dropout=0.1", "regularize.drop_path=0.1", "augment.mixup=0.2", "augment.crop_scale=[0.5, 1.0]"]


def as_bytes(x):
    """A comparable image of `x` down to the bytes of every tensor and array."""
    if isinstance(x, torch.Tensor):
        t = x.detach().cpu().contiguous()
        raw = t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        return ("tensor", str(t.dtype), tuple(t.shape), raw)
    if isinstance(x, np.ndarray):
        return ("array", str(x.dtype), x.shape, x.tobytes())
    if isinstance(x, dict):
        return {k: as_bytes(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [as_bytes(v) for v in x]
    return x


def rng_states() -> dict:
    states = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def everything(b) -> dict:
    """What must not change, serialised now (torch.save of the optimizer: its tensors are copied out)."""
    buf = io.BytesIO()
    torch.save(b.optimizer.state_dict(), buf)
    buf.seek(0)
    return as_bytes({
        "model": {k: v.clone() for k, v in b.raw_model.state_dict().items()},
        "grads": [None if p.grad is None else p.grad.clone() for p in b.raw_model.parameters()],
        "training": [m.training for m in b.raw_model.modules()],
        "optimizer": torch.load(buf, weights_only=False),
        "rng": rng_states(),
    })


def train_steps(b, n: int) -> None:
    """`n` ordinary optimizer steps, so the optimizer has moments and step counts to lose."""
    from vittui.data.samplers import iterate_from

    batches = iterate_from(b.train_loader, 0, 0)
    for _ in range(n):
        forward_backward(b, batches)
        b.optimizer.step()
        b.optimizer.zero_grad(set_to_none=True)


def test_ramp_smoothing_and_suggestion_rules():
    assert lr_at(0, 100, 1e-7, 10) == pytest.approx(1e-7)
    assert lr_at(99, 100, 1e-7, 10) == pytest.approx(10)
    assert lr_at(50, 101, 1e-6, 1e-2) == pytest.approx(1e-4)  # halfway on a log axis: the geometric mean
    # bias correction: a constant loss smooths to itself from the first point on (no pull towards 0)
    assert smooth([2.0] * 5) == pytest.approx([2.0] * 5)
    # by hand, beta 0.98: avg1 = 0.02*3 -> 3; avg2 = 0.98*0.06 + 0.02*1 = 0.0788, / (1 - 0.98^2) = 0.0396
    assert smooth([3.0, 1.0]) == pytest.approx([3.0, 0.0788 / 0.0396])
    lrs = [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]
    assert suggest(lrs, [2.0, 1.5, 1.0, 1.2, math.inf]) == 1e-3  # the lr at the smoothed minimum
    assert suggest(lrs, [2.0, 1.0, 1.0, 1.2, math.nan]) == 1e-4  # finite points only; the first on a tie
    assert suggest(lrs, [math.inf] * 5) is None
    assert RULE.startswith("min:")


def test_find_lr_leaves_model_optimizer_rngs_and_data_order_exactly_as_before(tmp_path: Path):
    recipe = tiny_recipe(*RANDOM, "optim.clip_grad=1.0")
    ref = build(recipe, tmp_path / "ref", record=False)  # never sees the finder: the data order to expect
    b = build(recipe, tmp_path / "b", record=False)
    train_steps(ref, 2)
    train_steps(b, 2)
    torch.manual_seed(11)
    np.random.seed(12)
    random.seed(13)
    before = everything(b)
    sampler_epoch = b.train_loader.sampler.epoch

    first = next(b.raw_model.parameters()).detach().clone()
    weights_moved = []

    def on_step(i, lr, loss):  # proof that the ramp really trained (the restore has work to do)
        weights_moved.append(not torch.equal(next(b.raw_model.parameters()), first))

    result = find_lr(b, steps=30, start=1e-6, end=1.0, on_step=on_step)
    assert result.steps >= 12 and any(weights_moved)
    after = everything(b)
    for part in ("model", "grads", "training", "optimizer", "rng"):
        assert after[part] == before[part], f"{part} changed by find_lr"
    assert b.train_loader.sampler.epoch == sampler_epoch
    assert b.optimizer.state and all(s["step"] == 2 for s in b.optimizer.state.values())

    # the next batch the loader gives (order and augmentation) is the one it gave a build that never ran it
    t, n, py = torch.get_rng_state(), np.random.get_state(), random.getstate()  # crops draw from all three
    x_ref, y_ref, _ = next(iter(ref.train_loader))
    torch.set_rng_state(t), np.random.set_state(n), random.setstate(py)
    x, y, _ = next(iter(b.train_loader))
    assert torch.equal(y, y_ref) and torch.equal(x, x_ref)


def test_divergence_stops_the_ramp_early(tmp_path: Path):
    b = build(tiny_recipe(), tmp_path / "d", record=False)
    r = find_lr(b, steps=60, start=1e-1, end=1e4)  # far past any lr AdamW survives on this model
    assert r.stopped_early and r.steps < 60
    assert len(r.lrs) == len(r.losses) == len(r.smoothed) == r.steps
    finite = [s for s in r.smoothed if math.isfinite(s)]
    last = r.losses[-1]
    assert not math.isfinite(last) or r.smoothed[-1] > 4 * min(finite)  # the stated rule ended it

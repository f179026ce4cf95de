"""The training loop's CUDA knobs, each checked where it acts: autocast (bf16; fp16 with a GradScaler),
fused AdamW, and pinned host batches copied with non_blocking=True (tiny model, a few steps)."""

from __future__ import annotations

import math
import os

import pytest
import torch
from gpu_helpers import cuda_recipe, record_calls, steps_of

import vittui.models.build as model_build
import vittui.train.build as train_build
import vittui.train.loop as loop
from vittui.runs.launcher import prepare_run
from vittui.train import checkpoint as ckpt

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("precision, dtype", [("bf16", torch.bfloat16), ("fp16", torch.float16)],
                         ids=["bf16", "fp16"])
def test_autocast_steps_run_in_the_precision(tmp_path, monkeypatch, precision, dtype):
    """Every Linear of the training forward computes in `dtype` on the device while its weight stays fp32
    (autocast, not a cast model); fp16 goes through a GradScaler whose state the checkpoint keeps."""
    calls = []  # (training, output dtype, output device, weight dtype) of every Linear call
    real_build = model_build.build_model

    def build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.register_forward_hook(lambda mod, _inp, out: calls.append(
                    (mod.training, out.dtype, out.device.type, mod.weight.dtype)))
        return model

    monkeypatch.setattr(model_build, "build_model", build)  # build() imports it at call time
    accelerators = record_calls(monkeypatch, train_build, "_accelerator")
    r = cuda_recipe(f"compute.precision={precision}", "schedule.max_steps=4")
    run = prepare_run(r, tmp_path, precision)
    result = loop.train(r, run.path)

    assert result.state == "finished" and result.step == 4
    steps = steps_of(run)
    # fp16's first steps may overflow (grad_norm inf, the scaler skips the update): still 4 steps, read back
    assert [s.step for s in steps] == [1, 2, 3, 4]
    assert all(math.isfinite(s.loss) for s in steps)
    training = [c for c in calls if c[0]]
    assert len(training) >= 4 * 9  # 2 blocks x 4 Linears + the head, per step
    assert {c[1] for c in training} == {dtype}
    assert {c[2] for c in training} == {"cuda"}
    assert {c[3] for c in training} == {torch.float32}  # fp32 master weights

    acc = accelerators[0]
    assert acc.device.type == "cuda" and acc.mixed_precision == precision
    state = ckpt.load_state(ckpt.find(run.checkpoints, "last"))
    if precision == "fp16":
        assert isinstance(acc.scaler, torch.amp.GradScaler) and acc.scaler.is_enabled()
        assert state.scaler["scale"] == acc.scaler.get_scale() > 0  # resumable: the scale is saved
    else:
        assert acc.scaler is None and state.scaler is None  # bf16 needs no loss scaling


def test_fused_adamw_is_built_fused_and_steps(tmp_path, monkeypatch):
    from vittui.train.optim import build_optimizer

    made = record_calls(monkeypatch, train_build, "build_optimizer")
    r = cuda_recipe("optim.fused=true", "schedule.max_steps=4")
    run = prepare_run(r, tmp_path, "fused")
    result = loop.train(r, run.path)
    assert result.state == "finished" and result.step == 4

    opt = made[0]
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["fused"] is True and all(g["fused"] is True for g in opt.param_groups)
    params = [p for g in opt.param_groups for p in g["params"]]
    assert params and all(p.is_cuda for p in params)
    for p in params:
        st = opt.state[p]
        # the fused kernel keeps its step count on the device; 4 updates, none skipped in fp32
        assert st["step"].is_cuda and float(st["step"]) == 4.0
        assert st["exp_avg"].is_cuda and st["exp_avg_sq"].is_cuda
    assert any(float(opt.state[p]["exp_avg"].abs().sum()) > 0 for p in params)
    assert [s.step for s in steps_of(run)] == [1, 2, 3, 4]
    # the same recipe on the CPU falls back to the plain kernel (fused AdamW is a CUDA kernel here)
    assert not build_optimizer(torch.nn.Linear(4, 2), r, "cpu").defaults["fused"]


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_are_pinned_and_copied_non_blocking(tmp_path, monkeypatch, workers):
    from vittui.data.sources import build_data

    r = cuda_recipe(f"data.num_workers={workers}", "schedule.max_steps=3")
    data = build_data(r)
    assert data.train_loader.pin_memory is True and data.val_loader.pin_memory is True
    del data

    arrived = []  # (images pinned, labels pinned, images device) of each batch the loop takes
    real_epoch = loop._epoch

    def epoch(*args, **kwargs):
        for batch in real_epoch(*args, **kwargs):
            arrived.append((batch[0].is_pinned(), batch[1].is_pinned(), batch[0].device.type))
            yield batch

    monkeypatch.setattr(loop, "_epoch", epoch)
    copies = []  # non_blocking of every .to() called on a pinned host tensor, in this process
    real_to = torch.Tensor.to
    main = os.getpid()

    def to(self, *args, **kwargs):
        # loader workers are forked from this process and inherit the patch; CUDA (which is_pinned asks)
        # must not be touched there
        if os.getpid() == main and self.device.type == "cpu" and self.is_pinned():
            copies.append(bool(kwargs.get("non_blocking", False)))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", to)
    run = prepare_run(r, tmp_path, f"pin{workers}")
    result = loop.train(r, run.path)
    monkeypatch.undo()

    assert result.state == "finished" and result.step == 3
    assert len(arrived) >= 3 and all(a == (True, True, "cpu") for a in arrived), arrived
    assert len(copies) >= 2 * 3 and all(copies), copies  # images and labels of each step (and the evals)

"""The LR range test on the device: afterwards the CUDA RNG, the weights and the optimizer state on the GPU
are as before (the CPU test, tests/train/test_lr_find.py, checks the rest byte for byte)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gpu_helpers import cuda_recipe

from vittui.train.build import build
from vittui.train.lr_find import find_lr

pytestmark = pytest.mark.gpu


def test_find_lr_on_cuda_puts_back_the_cuda_rng_weights_and_optimizer(tmp_path: Path):
    b = build(cuda_recipe("regularize.dropout=0.1", "regularize.drop_path=0.1"), tmp_path / "x", record=False)
    torch.cuda.manual_seed_all(5)
    torch.rand(3, device="cuda")  # a CUDA RNG state that is not a fresh seed's
    rng = torch.cuda.get_rng_state_all()
    weights = {k: v.clone() for k, v in b.raw_model.state_dict().items()}
    opt = b.optimizer.state_dict()
    lrs = [g["lr"] for g in opt["param_groups"]]

    r = find_lr(b, steps=20, start=1e-5, end=1.0)
    assert r.steps >= 11 and r.suggested_lr is not None
    assert all(torch.equal(a, b_) for a, b_ in zip(torch.cuda.get_rng_state_all(), rng))
    assert all(torch.equal(v, weights[k]) and v.device.type == "cuda" for k, v in b.raw_model.state_dict().items())
    assert b.optimizer.state_dict()["state"] == {} == opt["state"]
    assert [g["lr"] for g in b.optimizer.param_groups] == lrs

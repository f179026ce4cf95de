"""Exact resume on the device: stop mid-epoch, resume, and the losses match an uninterrupted run.

Drop path draws its masks from the CUDA generator, so the resumed run matches only if the checkpoint's CUDA
RNG state (vittui/train/checkpoint.py, `rng_state` / `set_rng_state`) is restored. Both runs are made
deterministic first: cuDNN's deterministic kernels (no autotuning), torch's deterministic mode (warn-only,
so an op without a deterministic kernel warns instead of failing the test), and attention through the math
kernel, because the fused memory-efficient backward may accumulate with atomics whose order varies from
run to run. The two runs then execute the same kernels on the same inputs and should agree bit for bit;
the 1e-5 tolerance (absolute, on losses near 2) leaves room only for a reduction that deterministic mode
does not cover. A different drop-path mask changes the loss far more than that.
"""

from __future__ import annotations

import pytest
import torch
from gpu_helpers import cuda_recipe, steps_of
from tiny import train_stopped_at

from vittui.runs import events as ev
from vittui.runs.launcher import prepare_run
from vittui.train import checkpoint as ckpt
from vittui.train.loop import train

pytestmark = pytest.mark.gpu


@pytest.fixture
def deterministic_cuda():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    before = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark,
              torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        with sdpa_kernel(SDPBackend.MATH):
            yield
    finally:
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = before[0], before[1]
        torch.use_deterministic_algorithms(before[2], warn_only=before[3])


def test_exact_resume_with_cuda_rng_matches_a_straight_run(tmp_path, deterministic_cuda):
    # the CPU test's recipe (tests/train/test_loop.py::test_exact_resume_matches_a_straight_run), on cuda
    r = cuda_recipe("augment.re_prob=0.25", "regularize.drop_path=0.1", "regularize.ema=true",
                    "run.probe_every=5", "regularize.ema_decay=0.9", "augment.mixup=0.8", "augment.cutmix=1.0")
    straight = prepare_run(r, tmp_path, "straight")
    assert train(r, straight.path).state == "finished"

    stop_at = 11  # mid-epoch (8 steps an epoch): the resume must restore the position inside the epoch
    split, first = train_stopped_at(r, tmp_path, "split", stop_at)
    assert first.state == "stopped" and first.step == stop_at
    saved = ckpt.load_state(ckpt.find(split.checkpoints, "last"))
    assert saved.position.step == stop_at
    cuda_states = saved.rng["cuda"]
    assert len(cuda_states) == torch.cuda.device_count()
    second = train(r, split.path, resume=True)
    assert second.state == "finished"

    a = [e.loss for e in steps_of(straight)]
    b = [e.loss for e in steps_of(split)]
    assert len(a) == len(b) == 16
    for x, y in zip(a, b):
        assert abs(x - y) <= 1e-5, (a, b)
    ea = [e.top1 for e in ev.read_all(straight.events_path) if isinstance(e, ev.Eval)]
    eb = [e.top1 for e in ev.read_all(split.events_path) if isinstance(e, ev.Eval)]
    assert ea[-1] == eb[-1]

    # the run did draw from the CUDA generator (so restoring it is what made the match possible)
    torch.cuda.manual_seed_all(r.run.seed)
    assert not torch.equal(cuda_states[0], torch.cuda.get_rng_state(0))

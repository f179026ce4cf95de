"""`compute.compile = true` on the device: the loop trains a torch.compile'd model (TorchDynamo graphs,
Inductor's generated kernels) for a few steps, and what it writes names the model's own parameters."""

from __future__ import annotations

import math
import os
import shutil
import sysconfig

import pytest
from gpu_helpers import cuda_recipe, record_calls, steps_of

import vittui.train.loop as loop
from vittui.models.build import build_model
from vittui.runs import events as ev
from vittui.runs.launcher import prepare_run
from vittui.train import checkpoint as ckpt

pytestmark = pytest.mark.gpu


def _missing_toolchain() -> str | None:
    """Triton compiles a small C launcher per kernel with $CC, gcc or clang against Python.h."""
    if not any(shutil.which(c) for c in (os.environ.get("CC", ""), "gcc", "clang") if c):
        return "no C compiler ($CC, gcc or clang) for Triton's kernel launcher"
    include = sysconfig.get_paths()["include"]
    if not os.path.exists(os.path.join(include, "Python.h")):
        return f"no Python.h in {include} (the python3-dev headers) for Triton's kernel launcher"
    return None


def test_compile_trains_a_few_steps_on_cuda(tmp_path, monkeypatch):
    missing = _missing_toolchain()
    if missing:
        pytest.skip(f"torch.compile cannot build kernels here: {missing}")
    import torch._dynamo
    import torch._inductor.metrics as inductor_metrics
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    inductor_metrics.reset()
    compiled = record_calls(monkeypatch, torch, "compile")
    r = cuda_recipe("compute.compile=true", "schedule.max_steps=4", "run.probe_every=2")
    run = prepare_run(r, tmp_path, "compiled")
    try:
        result = loop.train(r, run.path)
        graphs = counters["stats"]["unique_graphs"]
        kernels = inductor_metrics.generated_kernel_count
    finally:
        torch._dynamo.reset()

    assert result.state == "finished" and result.step == 4
    assert len(compiled) == 1 and isinstance(compiled[0], torch._dynamo.eval_frame.OptimizedModule)
    assert graphs >= 1 and kernels >= 1, (graphs, kernels)  # Dynamo captured, Inductor generated kernels
    steps = steps_of(run)
    assert [s.step for s in steps] == [1, 2, 3, 4] and all(math.isfinite(s.loss) for s in steps)
    # checkpoints, probes and gradient flow use the model's names, not the compiled wrapper's `_orig_mod.`
    plain = build_model(r.model, 10)
    ckpt.load_weights(plain, ckpt.find(run.checkpoints, "last"))
    evs = ev.read_all(run.events_path)
    flows = [e for e in evs if isinstance(e, ev.GradFlow)]
    assert [f.step for f in flows] == [2, 4] and flows[0].names == ["blocks.0", "blocks.1"]
    assert [e.step for e in evs if isinstance(e, ev.AttentionProbe)] == [2, 4]

"""A real CUDA out-of-memory error (no test hook) through the installed command: the run fails with the
message and advice the worker writes (status.json, a Fault event), keeps an emergency checkpoint of the last
completed step, and `vittui train --resume` continues it once the batch is lowered.

The run's own recipe.toml is what a resume reads (`--resume` takes no `--set`), so lowering the batch means
editing that file, as a person following the advice would.
"""

from __future__ import annotations

import re

import pytest
import torch
from gpu_helpers import worker_log
from tiny import TINY_AUGMENT, events, status, step_numbers, tiny_toml

from vittui.recipe import load, save
from vittui.runs import events as ev

pytestmark = pytest.mark.gpu

# ViT-Ti width on 4 px patches of 224 px images: 3137 tokens per image
DEPTH, WIDTH, PATCH, SIZE = 12, 192, 4, 224
BATCH = 1024  # of the ~1437 training digits, resized to 224 px
HUGE = [
    "model.name=vit_tiny_patch16_224", "model.source=timm", f"model.img_size={SIZE}", f"model.patch_size={PATCH}",
    f"model.depth={DEPTH}", f"model.embed_dim={WIDTH}", "model.num_heads=3",
    "data.source=digits", f"data.batch_size={BATCH}", "compute.device=cuda",
    "schedule.epochs=1", "schedule.warmup_epochs=0", "run.checkpoint_every=0", "run.probe_every=0",
] + TINY_AUGMENT


def test_real_cuda_oom_fails_clearly_and_the_run_resumes_with_a_lower_batch(cli, tmp_path):
    # By hand: a ViT block keeps about 16 fp32 values per token and channel for backward (qkv, attention
    # output, norms, the 4x MLP in and out). The first step needs several times the device.
    tokens = (SIZE // PATCH) ** 2 + 1
    kept = BATCH * DEPTH * 16 * tokens * WIDTH * 4
    device_total = torch.cuda.get_device_properties(0).total_memory
    assert kept > 2 * device_total, (kept, device_total)

    toml = tiny_toml(tmp_path / "huge.toml", HUGE)
    p = cli("train", str(toml), "--name", "oom", check=False, timeout=600)
    run = cli.root / "oom"
    assert p.returncode == 1, f"{p.stdout}\n{p.stderr[-3000:]}"
    s = status(run)
    assert s["state"] == "failed"
    # the allocator's torch.OutOfMemoryError ("CUDA out of memory. Tried to allocate …"), or a library's
    # "CUDA error: out of memory"
    assert re.match(rf"out of memory at batch size {BATCH}: CUDA (error: )?out of memory", s["message"]), s["message"]
    first = events(run)
    faults = [e for e in first if isinstance(e, ev.Fault)]
    assert [f.fault for f in faults] == ["oom"]
    assert "data.batch_size" in faults[0].suggestion and "grad_checkpointing" in faults[0].suggestion
    assert step_numbers(first) == []  # the first step did not fit
    assert "oom: failed at step 0" in p.stdout
    # the emergency checkpoint: the weights as of the last completed step (none yet: step 0)
    assert s["last_checkpoint_step"] == 0
    assert (run / "checkpoints" / "step-00000000" / "model.safetensors").exists()
    assert not (run / "worker.lock").exists()

    recipe = load(run / "recipe.toml").with_overrides(["data.batch_size=32", "schedule.max_steps=3"])
    save(recipe, run / "recipe.toml")
    p2 = cli("train", "--resume", "oom", check=False, timeout=600)
    assert p2.returncode == 0, f"{p2.stdout}\n{p2.stderr[-3000:]}\n{worker_log(run)}"
    s2 = status(run)
    assert s2["state"] == "finished" and s2["step"] == 3, s2
    after = events(run)[len(first):]
    assert any(isinstance(e, ev.Log) and "resumed from step-00000000" in e.message for e in after)
    assert step_numbers(after) == [1, 2, 3]
    assert not [e for e in after if isinstance(e, ev.Fault)]

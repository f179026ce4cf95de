"""The installed `vittui train` on one GPU: `--gpus 1` (trains in the foreground through accelerate's
Accelerator on the default device; `accelerate launch` is used from 2 GPUs on) and `--accelerate-config`
with a one-GPU config, which does go through `accelerate launch`, detached."""

from __future__ import annotations

import pytest
from gpu_helpers import worker_log
from tiny import TINY_PROCESS, events, kill_if_alive, status, step_numbers, tiny_toml, wait_for

from vittui.runs import events as ev
from vittui.runs.registry import run_state
from vittui.runs.store import RunDir

pytestmark = pytest.mark.gpu

ONE_GPU_CONFIG = """\
compute_environment: LOCAL_MACHINE
distributed_type: 'NO'
num_processes: 1
num_machines: 1
machine_rank: 0
mixed_precision: 'no'
use_cpu: false
debug: false
"""


def _check_cuda_run(run, steps: int) -> None:
    evs = events(run)
    started = [e for e in evs if isinstance(e, ev.RunStarted)]
    assert len(started) == 1 and started[0].device.startswith("cuda"), (started, worker_log(run))
    assert step_numbers(evs) == list(range(1, steps + 1))
    assert all(e.torch_allocated > 0 for e in evs if isinstance(e, ev.Step))  # the CUDA memory readings
    assert status(run)["last_checkpoint_step"] == steps


def test_gpus_1_trains_on_the_device_and_finishes(cli, tmp_path):
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS)  # compute.device = auto
    p = cli("train", str(toml), "--gpus", "1", "--name", "g1", "--set", "schedule.max_steps=6", timeout=300)
    run = cli.root / "g1"
    assert "g1: finished at step 6" in p.stdout, p.stdout
    assert status(run)["state"] == "finished"
    _check_cuda_run(run, 6)


def test_accelerate_launch_with_a_one_gpu_config_finishes(cli, tmp_path):
    cfg = tmp_path / "one_gpu.yaml"
    cfg.write_text(ONE_GPU_CONFIG)
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS)
    p = cli("train", str(toml), "--accelerate-config", str(cfg), "--name", "al", "--set", "schedule.max_steps=6")
    assert "started al detached" in p.stdout
    run = cli.root / "al"
    try:
        state = wait_for(lambda: (s := run_state(RunDir(run))) in ("finished", "failed", "stopped", "lost") and s,
                         timeout=300, what="the accelerate-launched run to end")
        assert state == "finished", worker_log(run)
        _check_cuda_run(run, 6)
    finally:
        kill_if_alive(status(run).get("pid"))

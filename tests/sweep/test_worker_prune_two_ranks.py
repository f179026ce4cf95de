"""A trial trained by two processes (`accelerate launch`, gloo on the CPU: what a Slurm trial with gpus = 2
runs). Only rank 0 reports to the study, so the pruner's answer must reach every rank: both end at the same
eval, each says `pruned` in worker.log, the launcher exits 0 and no rank is left waiting in a collective."""

from __future__ import annotations

import subprocess

import pytest
from sweep_helpers import trial_that_must_be_pruned
from tiny import TINY_PROCESS, events, status

from vittui.recipe import Recipe
from vittui.runs import events as ev
from vittui.runs.launcher import worker_command


@pytest.mark.slow  # two processes through accelerate launch: ~40 s on 2 cores
def test_both_ranks_of_a_pruned_trial_stop_at_the_same_eval(tmp_path):
    recipe = Recipe().with_overrides(TINY_PROCESS + ["schedule.max_steps=40", "run.eval_every=4",
                                                     "run.checkpoint_every=0", "run.probe_every=0",
                                                     "compute.device=cpu"])
    _, run = trial_that_must_be_pruned(tmp_path / "runs", recipe)
    p = subprocess.run(worker_command(run, gpus=2), capture_output=True, text=True, timeout=300)
    log = p.stdout + p.stderr
    assert p.returncode == 0, log
    st = status(run.path)
    assert st["state"] == "pruned" and st["step"] < 40, st
    at = st["step"]
    assert f"rank 0/2: pruned at step {at}" in log and f"rank 1/2: pruned at step {at}" in log, log
    assert max(e.step for e in events(run.path) if isinstance(e, ev.Step)) == at

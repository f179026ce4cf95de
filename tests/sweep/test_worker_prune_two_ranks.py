"""A trial trained by two processes (`accelerate launch`, gloo on the CPU: what a Slurm trial with gpus = 2
runs). Only rank 0 reports to the study, so the pruner's answer must reach every rank: both end at the same
eval, each says `pruned` in worker.log, the launcher exits 0 and no rank is left waiting in a collective."""

from __future__ import annotations

import subprocess

import optuna
import pytest
from tiny import TINY_PROCESS, events, status

from vittui.recipe import Recipe
from vittui.runs import events as ev
from vittui.runs.launcher import prepare_run, worker_command
from vittui.sweep.storage import TrialTags, default_storage


@pytest.mark.slow  # two processes through accelerate launch: ~40 s on 2 cores
def test_both_ranks_of_a_pruned_trial_stop_at_the_same_eval(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    storage = default_storage(root)
    study = optuna.create_study(study_name="p", storage=storage, direction="maximize")
    dist = {"optim.lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}
    for _ in range(2):  # two finished trials far above anything the tiny model reaches: the pruner must prune
        study.add_trial(optuna.trial.create_trial(value=99.0, params={"optim.lr": 1e-3}, distributions=dist,
                                                  intermediate_values={s: 99.0 for s in range(1, 400)}))
    trial = study.ask()
    recipe = Recipe().with_overrides(TINY_PROCESS + ["schedule.max_steps=40", "run.eval_every=4",
                                                     "run.checkpoint_every=0", "run.probe_every=0",
                                                     "compute.device=cpu"])
    run = prepare_run(recipe, root, "p-t0002")
    TrialTags(study="p", trial=trial.number, trial_id=trial._trial_id, storage=storage, objective="val_top1",
              pruner="median").write(run)
    p = subprocess.run(worker_command(run, gpus=2), capture_output=True, text=True, timeout=300)
    log = p.stdout + p.stderr
    assert p.returncode == 0, log
    st = status(run.path)
    assert st["state"] == "pruned" and st["step"] < 40, st
    at = st["step"]
    assert f"rank 0/2: pruned at step {at}" in log and f"rank 1/2: pruned at step {at}" in log, log
    assert max(e.step for e in events(run.path) if isinstance(e, ev.Step)) == at

"""SIGUSR1 is the signal a Slurm job script asks for before its time limit (runs/slurm.py: `--signal=USR1@N`).
The worker checkpoints at the next step boundary, ends the run `suspended` with the reason, and exits 75,
the code on which the job script requeues its job. Here the worker runs as a plain process (the real
cluster's round trip is tests/slurm/test_slurm_jobs.py); `vittui ctl RUN resume` then continues it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from tiny import TINY_PROCESS, events, kill_if_alive, status, step_numbers, wait_for

from vittui.recipe import Recipe
from vittui.runs import events as ev
from vittui.runs.launcher import prepare_run
from vittui.runs.slurm import REQUEUE_EXIT

STEPS = 40


@pytest.mark.slow  # a worker, a pause, a resume: ~10 s; the default tier keeps under 10 minutes on 2 cores
def test_sigusr1_checkpoints_suspends_and_exits_for_a_requeue(cli, tmp_path):
    recipe = Recipe().with_overrides(TINY_PROCESS + [f"schedule.max_steps={STEPS}", "run.checkpoint_every=1000"])
    run = prepare_run(recipe, cli.root, "u")
    worker = subprocess.Popen([sys.executable, "-m", "vittui.train.worker", str(run.path)],
                              env={**os.environ, "SLURM_JOB_ID": "42"}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: len(step_numbers(events(run.path))) >= 5, what="five steps")
        cli("ctl", "u", "pause", "--wait", "60")  # so the signal lands well before the end on any machine
        worker.send_signal(signal.SIGUSR1)
        assert worker.wait(timeout=120) == REQUEUE_EXIT
    finally:
        kill_if_alive(worker.pid)
    st = status(run.path)
    at = st["step"]
    assert st["state"] == "suspended" and 5 <= at < STEPS and st["last_checkpoint_step"] == at
    said = [e for e in events(run.path) if isinstance(e, ev.Status)][-1]
    assert said.state == "suspended" and said.step == at
    assert said.reason == f"slurm job 42's time limit is near; the job requeues itself: checkpoint at step {at}, worker exited"
    assert not [e for e in events(run.path) if isinstance(e, ev.Finished)]

    cli("ctl", "u", "resume")  # without Slurm: a new local worker continues from the checkpoint
    wait_for(lambda: status(run.path).get("state") == "finished", timeout=180, what="the resumed run to finish")
    assert step_numbers(events(run.path)) == list(range(1, STEPS + 1))
    assert [e.resumed_from_step for e in events(run.path) if isinstance(e, ev.RunStarted)] == [0, at]

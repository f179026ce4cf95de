"""A sweep whose trials run as Slurm jobs (`vittui sweep … --executor slurm`): the driver stays on this
machine (a login node on a real cluster), every trial is an sbatch job of its own, each reports its evals
to the study from the compute node, and the study ends with every trial told."""

from __future__ import annotations

import json
import os
import subprocess

import pytest
from slurm_helpers import job_ids
from tiny import SWEEP_SPACE, events, sweep_args, vittui_cmd

from vittui.runs import events as ev

pytestmark = [pytest.mark.slurm, pytest.mark.slow]  # two Slurm jobs one after another (~1-2 min)
N = 2


def test_sweep_trials_run_as_slurm_jobs_and_the_study_is_told(tmp_path, slurm_cluster):
    runs = tmp_path / "runs"
    space = tmp_path / "space.toml"
    space.write_text(SWEEP_SPACE)
    env = {**os.environ, "VITTUI_RUNS": str(runs)}
    p = subprocess.run(vittui_cmd() + sweep_args(space, N, "--study", "sl", "--sampler", "random", "--seed", "1",
                                                 "--pruner", "none", "--executor", "slurm"),
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    trial_runs = sorted(r for r in runs.glob("sl-t*") if r.is_dir())
    for run in trial_runs:  # cancelled afterwards by the fixture, whatever happened
        slurm_cluster.extend(job_ids(run))
    assert p.returncode == 0, p.stdout + p.stderr
    assert len(trial_runs) == N, [r.name for r in trial_runs]

    jobs = [job_ids(r) for r in trial_runs]
    assert all(len(j) == 1 for j in jobs) and len({j[0] for j in jobs}) == N, jobs  # one job per trial
    for run in trial_runs:
        assert json.loads((run / "executor.json").read_text())["executor"] == "slurm"
        assert "slurm job" in (run / "worker.log").read_text()  # the sbatch script's line: it ran under Slurm
        assert any(isinstance(e, ev.Finished) for e in events(run))

    st = json.loads(subprocess.run(vittui_cmd() + ["sweep", "status", "sl", "--json"], cwd=tmp_path, env=env,
                                   capture_output=True, text=True, timeout=120, check=True).stdout)
    assert [t["state"] for t in st["trials"]] == ["complete"] * N, st["trials"]
    # each trial was told the best eval its run wrote on the compute node
    for t in st["trials"]:
        run = runs / t["run"]
        assert t["value"] == pytest.approx(max(e.top1 for e in events(run) if isinstance(e, ev.Eval)))

"""Helpers of the sweep tests that drive the `vittui sweep` command as a user runs it (imported by module
name: a `conftest` import resolves to whichever conftest.py was imported first)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tiny import SWEEP_SPACE, sweep_args, vittui_cmd


def sweep_env(runs: Path) -> dict[str, str]:
    return {**os.environ, "VITTUI_RUNS": str(runs)}


def start_sweep(tmp: Path, runs: Path, trials: int, *extra: str) -> subprocess.Popen:
    """`vittui sweep` over the tiny sweep recipe and SWEEP_SPACE, started in the background (output to
    tmp/sweep-<n>.log)."""
    space = tmp / "space.toml"
    space.write_text(SWEEP_SPACE)
    log_path = tmp / f"sweep-{len(list(tmp.glob('sweep-*.log')))}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(vittui_cmd() + sweep_args(space, trials, *extra), cwd=tmp, env=sweep_env(runs),
                                stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def run_sweep(tmp: Path, runs: Path, trials: int, *extra: str, timeout: float = 900) -> str:
    """The same, waited for; its output (fails the test on a non-zero exit)."""
    proc = start_sweep(tmp, runs, trials, *extra)
    return finish(proc, timeout)


def finish(proc: subprocess.Popen, timeout: float = 900) -> str:
    """Wait for a sweep started by `start_sweep`; its output (fails the test on a non-zero exit)."""
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.log_path.read_text()  # type: ignore[attr-defined]
    assert rc == 0, log
    return log


def sweep_status(tmp: Path, runs: Path, study: str, *extra: str) -> dict:
    p = subprocess.run(vittui_cmd() + ["sweep", "status", study, "--json", *extra], cwd=tmp, env=sweep_env(runs),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def kill_trial_workers(runs: Path) -> None:
    """SIGKILL every worker still behind a run in `runs` (by the pid in its status, never by name)."""
    from tiny import kill_if_alive, status

    for run in runs.glob("*/status.json"):
        kill_if_alive(status(run.parent).get("pid"))


def trial_that_must_be_pruned(root: Path, recipe, name: str = "p-t0002"):
    """A run tagged as trial 2 of study "p" in `root`, whose two finished trials reported 99% at every
    step, far above anything a tiny model reaches: the median pruner must prune it. (storage, run)."""
    import optuna

    from vittui.runs.launcher import prepare_run
    from vittui.sweep.storage import TrialTags, default_storage

    root.mkdir(exist_ok=True)
    storage = default_storage(root)
    study = optuna.create_study(study_name="p", storage=storage, direction="maximize")
    dist = {"optim.lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}
    for _ in range(2):
        study.add_trial(optuna.trial.create_trial(value=99.0, params={"optim.lr": 1e-3}, distributions=dist,
                                                  intermediate_values={s: 99.0 for s in range(1, 400)}))
    trial = study.ask()
    run = prepare_run(recipe, root, name)
    TrialTags(study="p", trial=trial.number, trial_id=trial._trial_id, storage=storage, objective="val_top1",
              pruner="median").write(run)
    return storage, run

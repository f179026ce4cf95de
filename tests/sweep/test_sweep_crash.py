"""kill -9 in the middle of a sweep. The driver: the same command again continues the study — the trial
whose run finished while no driver watched is told, none is run or counted twice, the study ends with N.
One trial's worker: that trial is told FAIL (its run is `lost`) and the sweep goes on to N."""

from __future__ import annotations

import os
import signal

import pytest
from sweep_helpers import finish, kill_trial_workers, start_sweep, sweep_status
from tiny import status, wait_for

from vittui.runs.store import list_runs

pytestmark = pytest.mark.slow
N = 3


def run_dirs(runs):
    return sorted(r.name for r in list_runs(runs))


def test_driver_killed_then_rerun_continues_the_study(tmp_path):
    runs = tmp_path / "runs"
    args = ("--study", "crash", "--sampler", "random", "--seed", "8", "--pruner", "none")
    driver = start_sweep(tmp_path, runs, N, *args)
    try:
        # trial 0 told, trial 1's worker training: kill the driver between two tells
        wait_for(lambda: status(runs / "crash-t0001").get("state") == "running", timeout=600, what="trial 1 running")
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=60)
        # trial 1's worker (its own session) trains on and finishes with no driver watching
        wait_for(lambda: status(runs / "crash-t0001").get("state") == "finished", timeout=600, what="trial 1 done")
        out = finish(start_sweep(tmp_path, runs, N, *args))
    finally:
        kill_trial_workers(runs)
    assert "trial 1: complete" in out and "trial 0:" not in out  # told once, by the driver that came back
    report = sweep_status(tmp_path, runs, "crash")
    assert [(t["number"], t["state"]) for t in report["trials"]] == [(i, "complete") for i in range(N)]
    assert run_dirs(runs) == [f"crash-t{i:04d}" for i in range(N)]  # no run made twice


def test_worker_killed_fails_its_trial_and_the_sweep_goes_on(tmp_path):
    from tiny import kill_if_alive

    runs = tmp_path / "runs"
    driver = start_sweep(tmp_path, runs, N, "--study", "wk", "--sampler", "random", "--seed", "8", "--pruner", "none")
    try:
        st = wait_for(lambda: (s := status(runs / "wk-t0001")).get("state") == "running" and s.get("step", 0) >= 2
                      and s, timeout=600, what="trial 1 training")
        kill_if_alive(st["pid"])
        out = finish(driver)
    finally:
        kill_trial_workers(runs)
    assert "trial 1: fail (wk-t0001 lost)" in out  # no worker behind a live status: lost
    report = sweep_status(tmp_path, runs, "wk")
    assert [(t["number"], t["state"]) for t in report["trials"]] == [(0, "complete"), (1, "fail"), (2, "complete")]
    assert report["trials"][1]["ended"] == "wk-t0001 lost"
    assert run_dirs(runs) == [f"wk-t{i:04d}" for i in range(N)]

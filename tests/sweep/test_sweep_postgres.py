"""Two boxes, one study: two sweep processes, each with its own runs folder, against one study on a real
PostgreSQL server (started by the session fixture). The study ends with N trials in total, each run
once, on one box or the other, and both boxes report the same best."""

from __future__ import annotations

import pytest
from sweep_helpers import finish, kill_trial_workers, start_sweep, sweep_status

from vittui.runs.store import list_runs

pytestmark = pytest.mark.slow
N = 4


def test_two_sweeps_share_one_study_over_postgres(tmp_path, postgres_url):
    boxes = [tmp_path / "a", tmp_path / "b"]
    for box in boxes:
        box.mkdir()
    args = ("--study", "shared", "--storage", postgres_url, "--sampler", "random", "--seed", "8", "--pruner", "none")
    procs = [start_sweep(box, box / "runs", N, *args) for box in boxes]
    try:
        for proc in procs:
            finish(proc)
    finally:
        for box in boxes:
            kill_trial_workers(box / "runs")
    reports = [sweep_status(box, box / "runs", "shared", "--storage", postgres_url) for box in boxes]
    trials = reports[0]["trials"]
    assert [t["number"] for t in trials] == list(range(N))
    assert all(t["state"] == "complete" for t in trials)
    made = sorted(r.name for box in boxes for r in list_runs(box / "runs"))
    assert made == [f"shared-t{i:04d}" for i in range(N)]  # every trial ran once, on one box
    assert all(list_runs(box / "runs") for box in boxes)  # and both boxes ran trials
    for t in trials:  # each trial's run is where the study says
        assert t["run_path"].startswith(str(tmp_path))
    assert reports[0]["best"] == reports[1]["best"] and reports[0]["best"] is not None

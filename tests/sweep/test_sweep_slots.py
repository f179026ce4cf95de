"""`vittui sweep --parallel K` keeps K trials in line; how many train at once on this box is the queue's
`max_cpu_runs` (CPU) or `max_per_gpu`, which `vittui sweep --max-cpu-runs N` / `--max-per-gpu N` set as
`vittui train --queue` does. With fewer CPU slots than --parallel the sweep says so in one note."""

from __future__ import annotations

import subprocess

import pytest
from sweep_helpers import run_sweep, sweep_env, sweep_status
from tiny import SWEEP_SPACE, events, sweep_args, vittui_cmd

from vittui.runs import events as ev
from vittui.runs import queue


@pytest.mark.parametrize(("extra", "says"), [
    (["--max-cpu-runs", "0"], "--max-cpu-runs must be >= 1 (got 0)"),
    (["--max-per-gpu", "-1"], "--max-per-gpu must be >= 1 (got -1)"),
    (["--max-cpu-runs", "2", "--executor", "slurm"], "with --executor slurm, Slurm decides"),
])
def test_bad_slot_flags_are_one_line_exit_2_and_nothing_written(tmp_path, extra, says):
    runs = tmp_path / "runs"
    space = tmp_path / "space.toml"
    space.write_text(SWEEP_SPACE)
    p = subprocess.run(vittui_cmd() + sweep_args(space, 2, *extra), cwd=tmp_path, env=sweep_env(runs),
                       capture_output=True, text=True, timeout=120)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and says in lines[0], p.stderr
    assert not runs.exists()


def _interval(run) -> tuple[float, float]:
    log = events(run)
    start = next(e.t for e in log if isinstance(e, ev.RunStarted))
    return start, log[-1].t


@pytest.mark.slow  # three tiny trials: ~1 min on 2 cores
def test_max_cpu_runs_lets_parallel_trials_train_at_once(tmp_path):
    runs = tmp_path / "runs"
    out = run_sweep(tmp_path, runs, 1, "--study", "slots", "--parallel", "2")
    assert "note: trials that train on the CPU run 1 at a time (the queue's max_cpu_runs); " \
           "add --max-cpu-runs 2 for 2 at once" in out, out

    out = run_sweep(tmp_path, runs, 3, "--study", "slots", "--parallel", "2", "--max-cpu-runs", "2")
    assert "note:" not in out, out
    assert queue.read_config(runs)["max_cpu_runs"] == 2
    report = sweep_status(tmp_path, runs, "slots")
    assert [t["number"] for t in report["trials"]] == [0, 1, 2]
    (a0, a1), (b0, b1) = _interval(runs / "slots-t0001"), _interval(runs / "slots-t0002")
    assert a0 < b1 and b0 < a1, "trials 1 and 2 trained at the same time"  # the intervals overlap

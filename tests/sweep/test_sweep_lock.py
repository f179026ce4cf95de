"""One driver per study and runs folder. A second `vittui sweep` on the same study in the same folder (a
second terminal, `--detach` twice) would look after the first one's trials as its own: it refuses in one line,
exit 2, and writes nothing. Once the first driver is killed (-9), the same command takes over (its lock names
a dead pid)."""

from __future__ import annotations

import os
import signal
import subprocess

from sweep_helpers import kill_trial_workers, start_sweep, sweep_env
from tiny import SWEEP_SPACE, sweep_args, vittui_cmd, wait_for

from vittui.runs.lock import read_lock

ARGS = ("--study", "held", "--sampler", "random", "--seed", "8", "--pruner", "none")


def second(tmp_path, runs, *extra: str) -> subprocess.CompletedProcess:
    space = tmp_path / "space.toml"
    space.write_text(SWEEP_SPACE)
    return subprocess.run(vittui_cmd() + sweep_args(space, 3, *extra), cwd=tmp_path, env=sweep_env(runs),
                          capture_output=True, text=True, timeout=300)


def test_a_second_driver_on_the_same_study_and_folder_refuses(tmp_path):
    runs = tmp_path / "runs"
    lock = runs / "held.sweep.lock"
    first = start_sweep(tmp_path, runs, 3, *ARGS)
    try:
        wait_for(lambda: (read_lock(lock) or {}).get("pid") == first.pid, timeout=120, what="the driver's lock")
        wait_for(lambda: (runs / "held-t0000").exists(), timeout=120, what="its first trial (the study made)")
        def not_trials():  # the first driver's trials come and go meanwhile
            return sorted(p.name for p in runs.iterdir() if not p.name.startswith("held-t"))

        before = not_trials()
        for extra in ((), ("--detach",)):
            p = second(tmp_path, runs, *ARGS, *extra)
            assert p.returncode == 2, p.stdout + p.stderr
            lines = p.stderr.strip().splitlines()
            assert len(lines) == 1 and f"study held already has a driver in {runs} (pid {first.pid})" in lines[0], lines
            assert "Traceback" not in p.stderr
        assert not_trials() == before  # no held.sweep.log from the refused --detach, nothing else
        assert first.poll() is None  # the first driver goes on
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        kill_trial_workers(runs)
        taken = start_sweep(tmp_path, runs, 3, *ARGS)  # the same command: the dead driver's lock is free
        try:
            wait_for(lambda: (read_lock(lock) or {}).get("pid") == taken.pid, timeout=120, what="the lock taken over")
        finally:
            taken.kill()
            taken.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        kill_trial_workers(runs)

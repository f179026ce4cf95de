"""The runs folder as every reader sees it: how a run is doing (`run_state`), every run with its numbers
(`scan_runs`), a run named on a command line or in the dashboard (`resolve_run`). No torch; the CLI
(`vittui runs`, attach, ctl, eval, compare, …) and the dashboard ask here and nowhere else.

**States.** status.json's state, except:
  - `lost` when it claims a live state (starting, running, paused, stopping) and neither the lock's
    holder nor the pid it names is alive (killed with -9, machine rebooted);
  - no status.json (never written, or unreadable): `starting` while a live worker holds the lock (a
    worker started on a bare run directory, by an executor that does not go through the launcher, has
    not written its first status yet), else `lost` (nothing says what it is and nothing is behind it).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from vittui.recipe import load
from vittui.runs.lock import lock_holder_alive, pid_alive
from vittui.runs.store import LIVE_STATES, RunDir, RunStatus, list_runs


def run_state(run: RunDir) -> str:
    """starting / running / paused / stopping / stopped / suspended / finished / failed / pruned / lost (see the
    module docstring; `pruned`, a sweep trial its pruner stopped, is final like finished). `suspended` is final for now: the worker checkpointed and exited; a resume starts a new one."""
    status = run.read_status()
    if status is None:
        return "starting" if lock_holder_alive(run.lock_path) else "lost"
    if status.state in LIVE_STATES and not (lock_holder_alive(run.lock_path) or pid_alive(status.pid)):
        return "lost"
    return status.state


def is_live(state: str | None) -> bool:
    """A worker is (or should be) behind a run in this state: it can take commands."""
    return state in LIVE_STATES


RESUMABLE = ("suspended", "stopped", "failed", "lost")


def has_checkpoint(run: RunDir) -> bool:
    """A complete checkpoint folder (train/checkpoint.py writes state.pt last, then renames into place)."""
    return any((p / "state.pt").exists() for p in run.checkpoints.glob("step-*"))


def why_not_resumable(run: RunDir, state: str) -> str | None:
    """None when a new worker may continue `run` from its last checkpoint, else the reason in one line."""
    if is_live(state):
        return f"run {run.name} is {state}: a worker is behind it"
    if state not in RESUMABLE:
        return f"run {run.name} is {state}; only suspended, stopped, failed or lost runs resume"
    if not has_checkpoint(run):
        return (f"run {run.name} is {state} and has no checkpoint to resume from "
                f"(`vittui train --resume {run.name}` starts it over)")
    return None


@dataclass
class RunSummary:
    name: str
    path: Path
    state: str
    step: int
    total_steps: int
    epoch: float
    best_top1: float | None
    last_top1: float | None
    model: str
    updated: float  # status.json's last write (0 without one)
    resumable: bool = False  # no worker behind it and a checkpoint to continue from (why_not_resumable)

    @property
    def updated_text(self) -> str:
        return time.strftime("%m-%d %H:%M", time.localtime(self.updated)) if self.updated else "-"


def summarize(run: RunDir) -> RunSummary:
    status = run.read_status()
    s = status or RunStatus(updated=0.0)
    try:
        model = load(run.recipe_path).model.name
    except Exception:  # noqa: BLE001 - a broken recipe must not hide the run from the list
        model = "?"
    state = run_state(run)
    return RunSummary(run.name, run.path, state, s.step, s.total_steps, s.epoch, s.best_top1,
                      s.last_top1, model, s.updated, resumable=why_not_resumable(run, state) is None)


def scan_runs(runs_root: str | Path) -> list[RunSummary]:
    """Every run in `runs_root`, oldest first (by the time its recipe was written)."""
    return [summarize(r) for r in list_runs(runs_root)]


def resolve_run(name_or_path: str | Path, runs_root: str | Path) -> RunDir:
    """A run given as a path or as a name in `runs_root`; FileNotFoundError when it is neither."""
    for cand in (Path(name_or_path), Path(runs_root) / name_or_path):
        run = RunDir(cand)
        if run.exists():
            return run
    raise FileNotFoundError(f"no run named {str(name_or_path)!r} (looked in {Path(runs_root)}/ and at the path itself)")

"""Run state and launch, through the lead's launcher when present (imported lazily: the launcher
spawns the worker as a command and never imports torch into this process)."""

from __future__ import annotations

from pathlib import Path

from vittui.recipe import Recipe
from vittui.runs.lock import lock_holder_alive, pid_alive
from vittui.runs.store import LIVE_STATES, RunDir

LIVE = LIVE_STATES  # starting, running, paused, stopping


def run_state(run: RunDir) -> str:
    """starting/running/paused/stopping/stopped/finished/failed/lost."""
    try:
        from vittui.runs.launcher import run_state as _state
    except ImportError:
        _state = None
    if _state is not None:
        try:
            return _state(run)
        except Exception:
            pass
    status = run.read_status()
    if status is None:
        return "starting" if lock_holder_alive(run.lock_path) else "lost"
    if status.state in LIVE_STATES and not (pid_alive(status.pid) or lock_holder_alive(run.lock_path)):
        return "lost"
    return status.state


def is_live(state: str | None) -> bool:
    return state in LIVE


def launch(recipe: Recipe, runs_root: Path, name: str | None = None) -> RunDir:
    from vittui.runs.launcher import launch as _launch  # ImportError reported by the caller

    return _launch(recipe, runs_root, name=name)

"""The runs folder as every reader sees it: how a run is doing (`run_state`), every run with its numbers
(`scan_runs`), a run named on a command line or in the dashboard (`resolve_run`). No torch; the CLI
(`vittui runs`, attach, ctl, eval, compare, …) and the dashboard ask here and nowhere else.

**States.** status.json's state, except:
  - `lost` when it claims a live state (starting, running, paused, stopping) and neither the lock's
    holder nor the pid it names is alive (killed with -9, machine rebooted);
  - no status.json (never written, or unreadable): `starting` while a live worker holds the lock (a
    worker started on a bare run directory, by an executor that does not go through the launcher, has
    not written its first status yet), else `lost` (nothing says what it is and nothing is behind it);
  - a Slurm run (runs/slurm.py): `queued` while its job is pending (also a job Slurm requeued after
    preemption), and its job's state decides where this host's pids cannot (a worker on another node).
    Asking Slurm runs `squeue`: `ask_slurm=False` where that must not block (the dashboard's event loop).
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from vittui.recipe import Recipe
from vittui.runs import slurm
from vittui.runs.lock import lock_holder_alive, pid_alive
from vittui.runs.store import LIVE_STATES, RunDir, RunStatus, list_runs

_ASK = object()  # run_state's `job` default: ask Slurm when the run is a Slurm run

_UNREAD = RunStatus()  # run_state's `status` default: read status.json


def run_state(run: RunDir, status: RunStatus | None = _UNREAD, *, ask_slurm: bool = True,
              job: str | None | object = _ASK) -> str:
    """queued / starting / running / paused / stopping / stopped / suspended / finished / failed / pruned / lost
    (see the module docstring; `pruned`, a sweep trial its pruner stopped, is final like finished).
    `suspended` is final: the worker checkpointed and exited; a resume starts a new one. `status`: status.json already read by the caller (None: there is none), so a scan reads it once.
    `job`: the Slurm job's state when the caller already asked (scan_runs asks once for every run)."""
    if status is _UNREAD:
        status = run.read_status()
    if status is None:
        local = "starting" if lock_holder_alive(run.lock_path) else "lost"
    elif status.state in LIVE_STATES and not (
            lock_holder_alive(run.lock_path) or (status.host == socket.gethostname() and pid_alive(status.pid))):
        local = "lost"
    else:
        local = status.state
    if not ask_slurm or (job_id := slurm.job_id_of(run)) is None:
        return local
    if job is _ASK:
        job = slurm.job_state(job_id)
    return slurm.run_state_with_job(status.state if status else None, local, job)  # type: ignore[arg-type]


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
    executor: str = "local"
    job_id: str | None = None  # the Slurm job behind the run (its latest submission)
    job_state: str | None = None  # Slurm's state of that job (PENDING, RUNNING, …), None when unknown

    @property
    def updated_text(self) -> str:
        return time.strftime("%m-%d %H:%M", time.localtime(self.updated)) if self.updated else "-"


_MODEL_NAMES: dict[Path, tuple[tuple[int, int], str]] = {}  # run path -> (recipe.toml's mtime and size, model.name)


def model_name(run: RunDir) -> str:
    """`model.name` of the run's recipe.toml, "?" when it cannot be read. A list of a thousand runs needs only
    this one value, and validating every recipe was 90% of a scan: the `[model]` table's `name` line is read
    (the whole file parsed only when that line is not where `recipe.save` puts it), and the answer is kept
    per file version — recipe.toml is written once, when the run is made, so a rescan reads none again."""
    path = run.recipe_path
    try:
        st = path.stat()
        version = (st.st_mtime_ns, st.st_size)
        if (hit := _MODEL_NAMES.get(run.path)) is not None and hit[0] == version:
            return hit[1]
        text = path.read_text(encoding="utf-8")
    except OSError:
        return "?"
    name = _model_line(text)
    if name is None:
        try:
            name = str(tomllib.loads(text).get("model", {}).get("name", Recipe().model.name))
        except (ValueError, AttributeError):
            name = "?"
    _MODEL_NAMES[run.path] = (version, name)
    return name


def _model_line(text: str) -> str | None:
    """The string value of `name = ...` in the `[model]` table, or None when the file is laid out otherwise."""
    if text.startswith("[model]\n"):
        start = 0
    elif (at := text.find("\n[model]\n")) >= 0:
        start = at + 1
    else:
        return None
    for line in text[start:].splitlines()[1:]:
        if line.startswith("["):
            return None
        if line.startswith("name ") or line.startswith("name="):
            try:
                value = tomllib.loads(line).get("name")
            except ValueError:
                return None
            return value if isinstance(value, str) else None
    return None


def summarize(run: RunDir, jobs: dict[str, str] | None = None) -> RunSummary:
    """One run's row; `jobs` holds Slurm's job states when the caller asked for many at once."""
    status = run.read_status()
    s = status or RunStatus(updated=0.0)
    model = model_name(run)
    job_id = slurm.job_id_of(run)
    job = (jobs.get(job_id) if jobs is not None else slurm.job_state(job_id)) if job_id else None
    state = run_state(run, status, job=job)
    return RunSummary(run.name, run.path, state, s.step, s.total_steps, s.epoch, s.best_top1,
                      s.last_top1, model, s.updated, resumable=why_not_resumable(run, state) is None,
                      executor="slurm" if job_id else "local", job_id=job_id, job_state=job)


def scan_runs(runs_root: str | Path) -> list[RunSummary]:
    """Every run in `runs_root`, oldest first (by the time its recipe was written). Slurm is asked once for
    all its runs' jobs (a blocking `squeue`: callers run this off the dashboard's event loop)."""
    runs = list_runs(runs_root)
    jobs = job_states_of(runs)
    return [summarize(r, jobs) for r in runs]


def job_states_of(runs: list[RunDir]) -> dict[str, str]:
    """Slurm's state of every job behind `runs` (job id -> state), from one `squeue`; {} without Slurm runs."""
    ids = [j for r in runs if (j := slurm.job_id_of(r))]
    return slurm.job_states(ids) if ids else {}


def resolve_run(name_or_path: str | Path, runs_root: str | Path) -> RunDir:
    """A run given as a path or as a name in `runs_root`; FileNotFoundError when it is neither."""
    for cand in (Path(name_or_path), Path(runs_root) / name_or_path):
        run = RunDir(cand)
        if run.exists():
            return run
    raise FileNotFoundError(f"no run named {str(name_or_path)!r} (looked in {Path(runs_root)}/ and at the path itself)")

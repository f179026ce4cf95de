"""One worker per run: a lock file naming the owner's pid, process start time and host (and its Slurm job
when it runs under Slurm).

The start time makes the check immune to pid reuse: a lock whose pid is alive but started at a
different time belongs to a dead worker and is cleared. A lock taken on another host (a Slurm job's
worker on a compute node, seen from the login node) cannot be judged by this host's pids: it counts as
held, and the executor's own view (Slurm's job state, runs/slurm.py) says when its job has ended."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

# psutil is imported where it is used: it costs ~18 ms, and the dashboard's first frame needs no lock check


class RunLocked(RuntimeError):
    pass


def process_start_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, psutil.AccessDenied, ValueError):
        return None


def pid_alive(pid: int, start_time: float | None = None) -> bool:
    """True when `pid` is running (and, if given, started at `start_time`); zombies count as dead."""
    if pid <= 0:
        return False
    import psutil

    try:
        p = psutil.Process(pid)
        if p.status() == psutil.STATUS_ZOMBIE:
            return False
        return start_time is None or abs(p.create_time() - start_time) < 0.5
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def read_lock(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def is_foreign(info: dict | None) -> bool:
    """The lock was taken on another host: its pid means nothing here."""
    return bool(info) and info.get("host", socket.gethostname()) != socket.gethostname()


def lock_holder_alive(path: Path) -> bool:
    """A live worker holds the lock; a lock from another host counts as held (see the module docstring)."""
    info = read_lock(path)
    if is_foreign(info):
        return True
    return bool(info) and pid_alive(int(info.get("pid", 0)), info.get("start_time"))


def _stale_foreign(info: dict) -> bool:
    """Under Slurm, a lock from another host is stale when it names this same job (requeued onto another
    node: its earlier incarnation is gone) or a job Slurm no longer runs."""
    mine = os.environ.get("SLURM_JOB_ID")
    theirs = info.get("job_id")
    if not mine or not theirs:
        return False
    if str(theirs) == mine:
        return True
    from vittui.runs.slurm import RUNNING_STATES, job_state

    return job_state(str(theirs)) not in RUNNING_STATES


def acquire(path: Path) -> None:
    """Take the lock for this process, clearing a stale one; RunLocked if a live worker holds it."""
    me = {"pid": os.getpid(), "start_time": process_start_time(os.getpid()), "host": socket.gethostname(),
          "job_id": os.environ.get("SLURM_JOB_ID")}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            info = read_lock(path)
            if info and info.get("pid") == os.getpid() and not is_foreign(info):
                return
            if is_foreign(info) and not _stale_foreign(info):
                raise RunLocked(f"run is already being trained on {info['host']} (pid {info.get('pid')}, "
                                f"{path.parent})")
            if info and not is_foreign(info) and pid_alive(int(info.get("pid", 0)), info.get("start_time")):
                raise RunLocked(f"run is already being trained by pid {info['pid']} ({path.parent})")
            path.unlink(missing_ok=True)  # stale: its owner is dead
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise RunLocked(f"could not take the lock {path}")


def release(path: Path) -> None:
    info = read_lock(path)
    if info and info.get("pid") == os.getpid() and not is_foreign(info):
        path.unlink(missing_ok=True)

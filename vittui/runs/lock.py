"""One worker per run: a lock file naming the owner's pid and process start time.

The start time makes the check immune to pid reuse: a lock whose pid is alive but started at a
different time belongs to a dead worker and is cleared."""

from __future__ import annotations

import json
import os
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


def lock_holder_alive(path: Path) -> bool:
    info = read_lock(path)
    return bool(info) and pid_alive(int(info.get("pid", 0)), info.get("start_time"))


def acquire(path: Path) -> None:
    """Take the lock for this process, clearing a stale one; RunLocked if a live worker holds it."""
    me = {"pid": os.getpid(), "start_time": process_start_time(os.getpid())}
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            info = read_lock(path)
            if info and info.get("pid") == os.getpid():
                return
            if info and pid_alive(int(info.get("pid", 0)), info.get("start_time")):
                raise RunLocked(f"run is already being trained by pid {info['pid']} ({path.parent})")
            path.unlink(missing_ok=True)  # stale: its owner is dead
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(me, f)
        return
    raise RunLocked(f"could not take the lock {path}")


def release(path: Path) -> None:
    info = read_lock(path)
    if info and info.get("pid") == os.getpid():
        path.unlink(missing_ok=True)

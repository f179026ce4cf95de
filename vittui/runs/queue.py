"""The run queue on one box: runs waiting for a slot, in the order they will start. No torch, no NVML.

A queued run is an ordinary run directory whose status.json says `queued`; nothing else needs to know
about the queue. Three small things beside it:

    runs/<name>/queue.json          the queue's facts about the run (QueueEntry): its place in line (`seq`),
                                    memory estimate, GPUs, executor, whether it resumes, where it started
    runs/.queue/waiting/<name>      an empty marker per waiting run: `revive` (run by every `vittui`
                                    command) sees a non-empty queue with one directory listing, without
                                    reading any run's files or importing psutil
    runs/.queue/scheduler.lock      the scheduler's pid + start-time lock (runs/lock.py)
    runs/.queue/config.json         the scheduler's options (`--max-per-gpu` …), so a restarted one keeps them
    runs/.queue/scheduler.log       its output

The scheduler itself (admission against NVML, starting workers) is `vittui/scheduler.py`: it needs
`hardware`, which this floor may not import. `ensure_scheduler` starts it as a command
(`python -m vittui.scheduler RUNS_ROOT`), detached like a worker.

`remove` keeps the run directory and marks it `stopped` ("removed from the queue"): nothing a person
wrote is deleted by a queue command, and a removed run can still be started with `vittui train --resume`.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from vittui.recipe import Recipe
from vittui.runs.store import RunDir, RunStatus, atomic_write_text

EXECUTORS = ("local", "slurm")
QUEUE_DIR = ".queue"


class QueueError(ValueError):
    """A queue request that cannot be done (the run is not queued, not resumable, …): one line for the user."""


@dataclass
class QueueEntry:
    """queue.json: what the queue knows about a run. `seq` orders the line (smaller starts first)."""

    seq: float
    enqueued: float = field(default_factory=time.time)
    estimate_bytes: int | None = None  # planning's peak estimate per process, None when unknown
    gpus: int = 0  # GPUs the run asks for (0: the default device; >1: accelerate launch)
    executor: str = "local"
    resume: bool = False  # started with --resume (a requeued run)
    gpu_ids: list[int] = field(default_factory=list)  # the cards the scheduler gave it
    started_by: int | None = None  # the scheduler's pid
    started_at: float | None = None
    exited_at: float | None = None  # when the scheduler saw its worker process gone
    exit_code: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "QueueEntry":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


# --- paths ----------------------------------------------------------------------------------------------

def queue_dir(runs_root: str | Path) -> Path:
    return Path(runs_root) / QUEUE_DIR


def waiting_dir(runs_root: str | Path) -> Path:
    return queue_dir(runs_root) / "waiting"


def scheduler_lock_path(runs_root: str | Path) -> Path:
    return queue_dir(runs_root) / "scheduler.lock"


def config_path(runs_root: str | Path) -> Path:
    return queue_dir(runs_root) / "config.json"


def scheduler_log_path(runs_root: str | Path) -> Path:
    return queue_dir(runs_root) / "scheduler.log"


def _root_of(run: RunDir) -> Path:
    return run.path.parent


def _marker(run: RunDir) -> Path:
    return waiting_dir(_root_of(run)) / run.name


def _make_dirs(runs_root: str | Path) -> None:
    old = os.umask(0o077)
    try:
        waiting_dir(runs_root).mkdir(parents=True, exist_ok=True, mode=0o700)
    finally:
        os.umask(old)


@contextmanager
def mutex(runs_root: str | Path) -> Iterator[None]:
    """One queue change at a time across processes (a `rm` racing the scheduler's start of the same run)."""
    _make_dirs(runs_root)
    fd = os.open(queue_dir(runs_root) / "mutex", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --- entries --------------------------------------------------------------------------------------------

def read_entry(run: RunDir) -> QueueEntry | None:
    try:
        return QueueEntry.from_dict(json.loads(run.queue_path.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return None


def write_entry(run: RunDir, entry: QueueEntry) -> None:
    atomic_write_text(run.queue_path, json.dumps(asdict(entry), indent=1))


def _set_state(run: RunDir, state: str, message: str, **fields: Any) -> None:
    status = run.read_status() or RunStatus()
    status.state, status.message = state, message
    for k, v in fields.items():
        setattr(status, k, v)
    run.write_status(status)


# --- the API --------------------------------------------------------------------------------------------

def enqueue(recipe: Recipe, runs_root: str | Path, name: str | None = None, *, estimate_bytes: int | None = None,
            gpus: int = 0, executor: str = "local", tags: dict[str, str] | None = None) -> RunDir:
    """A new run directory in state `queued` at the end of the line; starts the scheduler for `local`.

    Order of writes: recipe.toml, tags.json, status.json (`queued`), queue.json, then the waiting marker.
    Whoever sees the state sees the tags; the scheduler, which looks only at markers, sees everything."""
    from vittui.runs.launcher import prepare_run

    if executor not in EXECUTORS:
        raise QueueError(f"unknown executor {executor!r} (known: {', '.join(EXECUTORS)})")
    if gpus < 0:
        raise QueueError(f"gpus must be >= 0 (got {gpus})")
    _make_dirs(runs_root)
    run = prepare_run(recipe, runs_root, name, state="queued", tags=tags, message="waiting in the queue")
    with mutex(runs_root):
        write_entry(run, QueueEntry(seq=_next_seq(runs_root), estimate_bytes=estimate_bytes, gpus=gpus,
                                    executor=executor))
        if executor == "local":  # other executors submit the run themselves (Slurm: sbatch's own queue)
            _marker(run).touch(mode=0o600)
    if executor == "local":
        ensure_scheduler(runs_root)
    return run


def requeue(run: RunDir) -> None:
    """A resumable run (suspended, stopped, failed or lost, with a checkpoint) back at the end of the line;
    the scheduler starts it with --resume. Keeps the estimate and GPUs it was queued with."""
    from vittui.runs.registry import run_state, why_not_resumable

    root = _root_of(run)
    with mutex(root):
        state = run_state(run)
        if state == "queued":
            raise QueueError(f"run {run.name} is already queued (position {position(run)})")
        if (why := why_not_resumable(run, state)) is not None:
            raise QueueError(why)
        old = read_entry(run)
        entry = QueueEntry(seq=_next_seq(root), estimate_bytes=old.estimate_bytes if old else None,
                           gpus=old.gpus if old else 0, executor=old.executor if old else "local", resume=True)
        write_entry(run, entry)
        _set_state(run, "queued", f"waiting in the queue to resume ({state} before)", pid=0)
        if entry.executor == "local":
            _marker(run).touch(mode=0o600)
    if entry.executor == "local":
        ensure_scheduler(root)


def queued(runs_root: str | Path) -> list[RunDir]:
    """Queued runs in the order they will start (by `seq`, then name). A marker whose run is gone or no
    longer queued is skipped here and cleared by the scheduler."""
    wd = waiting_dir(runs_root)
    try:
        names = os.listdir(wd)
    except FileNotFoundError:
        return []
    rows = []
    for name in names:
        run = RunDir(Path(runs_root) / name)
        status = run.read_status()
        if status is None or status.state != "queued":
            continue
        entry = read_entry(run)
        rows.append((entry.seq if entry else float("inf"), name, run))
    return [r for _, _, r in sorted(rows, key=lambda t: (t[0], t[1]))]


def position(run: RunDir) -> int | None:
    """1 for the next run to start; None when the run is not queued."""
    for i, r in enumerate(queued(_root_of(run)), 1):
        if r.name == run.name:
            return i
    return None


def _require_queued(run: RunDir) -> None:
    from vittui.runs.registry import run_state

    state = run_state(run)
    if state != "queued" or not _marker(run).exists():
        hint = f" (stop it with `vittui ctl {run.name} stop`)" if state in ("starting", "running", "paused") else ""
        raise QueueError(f"run {run.name} is {state}, not queued{hint}")


def remove(run: RunDir) -> None:
    """Out of the queue: the run directory stays, state `stopped` ("removed from the queue")."""
    with mutex(_root_of(run)):
        _require_queued(run)
        _set_state(run, "stopped", "removed from the queue")
        _marker(run).unlink(missing_ok=True)


def top(run: RunDir) -> None:
    """First in line: the next run the scheduler starts."""
    root = _root_of(run)
    with mutex(root):
        _require_queued(run)
        entry = read_entry(run) or QueueEntry(seq=0.0)
        seqs = [e.seq for r in queued(root) if r.name != run.name and (e := read_entry(r)) is not None]
        entry.seq = min(seqs + [entry.seq + 1]) - 1
        write_entry(run, entry)


def _next_seq(runs_root: str | Path) -> float:
    """After everything in line (also after a run `top` moved to a seq below the clock)."""
    seqs = [e.seq for r in queued(runs_root) if (e := read_entry(r)) is not None]
    return max([time.time()] + [s + 1e-3 for s in seqs])


# --- the scheduler process ------------------------------------------------------------------------------

def scheduler_alive(runs_root: str | Path) -> bool:
    from vittui.runs.lock import lock_holder_alive

    return lock_holder_alive(scheduler_lock_path(runs_root))


def has_waiting(runs_root: str | Path) -> bool:
    """A waiting marker exists: one directory listing, no run read (the check every command makes)."""
    try:
        with os.scandir(waiting_dir(runs_root)) as it:
            return any(True for _ in it)
    except (FileNotFoundError, NotADirectoryError):
        return False


def read_config(runs_root: str | Path) -> dict[str, Any]:
    try:
        d = json.loads(config_path(runs_root).read_text())
        return d if isinstance(d, dict) else {}
    except (FileNotFoundError, ValueError):
        return {}


def write_config(runs_root: str | Path, **options: Any) -> dict[str, Any]:
    """Merge scheduler options (max_per_gpu, max_cpu_runs, suspend_paused_after, margin_bytes) into
    config.json; a running scheduler rereads it on every pass."""
    _make_dirs(runs_root)
    config = {**read_config(runs_root), **{k: v for k, v in options.items() if v is not None}}
    atomic_write_text(config_path(runs_root), json.dumps(config, indent=1))
    return config


def ensure_scheduler(runs_root: str | Path) -> int | None:
    """The pid of a live scheduler for `runs_root`, or of one just started detached (own session, output
    in .queue/scheduler.log); None when nothing waits. Two callers racing both start one: the second
    finds the lock taken and exits."""
    import subprocess  # here, not at the top: `revive` runs in every command, the dashboard's first frame too
    import sys

    from vittui.runs.lock import read_lock

    if not has_waiting(runs_root):
        return None
    if scheduler_alive(runs_root):
        info = read_lock(scheduler_lock_path(runs_root)) or {}
        return int(info.get("pid", 0)) or None
    log = os.open(scheduler_log_path(runs_root), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen([sys.executable, "-m", "vittui.scheduler", str(Path(runs_root).resolve())],
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True)
    finally:
        os.close(log)
    return proc.pid


def revive(runs_root: str | Path) -> int | None:
    """The cheap check every `vittui` command makes: one directory listing when nothing is queued (no
    psutil, no run files read); restarts the scheduler when runs wait and none is alive. Never raises."""
    try:
        if not has_waiting(runs_root):
            return None
        return ensure_scheduler(runs_root)
    except Exception:  # noqa: BLE001 - a command must never fail because the queue could not be checked
        return None

"""Layout of a run directory and its small state files.

    runs/<name>/
      recipe.toml      the resolved recipe the worker trains
      status.json      state, step, epoch, pid, host — rewritten atomically
      events.jsonl     the whole history, one event a line
      commands.jsonl   control commands from any process
      worker.log       the worker's stdout and stderr when detached
      worker.lock      pid and start time of the worker that owns the run
      checkpoints/     step-N/ folders, `last` and `best` pointers (their layout: train/checkpoint.py)
      attention/       probe arrays
      report.json      `vittui eval`'s report (and report.md, the same for people)
      summary.csv      timm-style table, one row per evaluation (`runs/summary_csv.py`)
      tags.json        free-form labels ({"sweep": "s1", "trial": "3"}), written before the run is queued
      queue.json       the queue's facts about the run: order, memory estimate, GPUs, executor (`runs/queue.py`)

Every other module reaches these through `RunDir`'s properties, never by spelling a name.

Everything is created owner-only: a run may hold private data and its control file must not be
writable by other users.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATES = ("queued", "starting", "running", "paused", "stopping", "stopped", "suspended", "finished", "failed",
          "pruned")
# "queued" is not live: no worker is behind a queued run, so run_state never calls it lost
LIVE_STATES = ("starting", "running", "paused", "stopping")


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o600, fsync: bool = True) -> None:
    """Write to a temp file in the same folder, (fsync,) rename: readers see the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_text(path: Path, text: str, mode: int = 0o600, fsync: bool = True) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode, fsync)


@dataclass
class RunStatus:
    state: str = "starting"
    step: int = 0
    epoch: float = 0.0
    total_steps: int = 0
    pid: int = 0
    host: str = field(default_factory=socket.gethostname)
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    message: str = ""
    best_top1: float | None = None
    last_top1: float | None = None
    last_checkpoint_step: int | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunStatus":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names})


class RunDir:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    # --- layout -----------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.path.name

    @property
    def recipe_path(self) -> Path:
        return self.path / "recipe.toml"

    @property
    def status_path(self) -> Path:
        return self.path / "status.json"

    @property
    def events_path(self) -> Path:
        return self.path / "events.jsonl"

    @property
    def commands_path(self) -> Path:
        return self.path / "commands.jsonl"

    @property
    def log_path(self) -> Path:
        return self.path / "worker.log"

    @property
    def lock_path(self) -> Path:
        return self.path / "worker.lock"

    @property
    def report_path(self) -> Path:
        return self.path / "report.json"

    @property
    def report_md_path(self) -> Path:
        return self.path / "report.md"

    @property
    def summary_csv_path(self) -> Path:
        return self.path / "summary.csv"

    @property
    def tags_path(self) -> Path:
        return self.path / "tags.json"

    @property
    def queue_path(self) -> Path:
        return self.path / "queue.json"

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    @property
    def attention(self) -> Path:
        return self.path / "attention"

    def exists(self) -> bool:
        return self.recipe_path.exists()

    def create(self) -> "RunDir":
        old = os.umask(0o077)
        try:
            self.path.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.chmod(self.path, 0o700)
            for sub in (self.checkpoints, self.attention):
                sub.mkdir(exist_ok=True, mode=0o700)
            for f in (self.events_path, self.commands_path):
                if not f.exists():
                    f.touch(mode=0o600)
        finally:
            os.umask(old)
        return self

    def read_tags(self) -> dict[str, str]:
        """tags.json ({} without one, or when it is unreadable: tags label a run, they never hide it)."""
        try:
            tags = json.loads(self.tags_path.read_text())
        except (FileNotFoundError, ValueError):
            return {}
        return {str(k): str(v) for k, v in tags.items()} if isinstance(tags, dict) else {}

    def write_tags(self, tags: dict[str, str]) -> None:
        atomic_write_text(self.tags_path, json.dumps({str(k): str(v) for k, v in tags.items()}, indent=1))

    # --- status -----------------------------------------------------------------------------
    def read_status(self) -> RunStatus | None:
        try:
            return RunStatus.from_dict(json.loads(self.status_path.read_text()))
        except (FileNotFoundError, ValueError):
            return None

    def write_status(self, status: RunStatus) -> None:
        status.updated = time.time()
        # no fsync: status is rewritten often and rename alone keeps readers from seeing half a file
        atomic_write_text(self.status_path, json.dumps(asdict(status), indent=1), fsync=False)


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "run"


def new_run_name(runs_root: Path, base: str) -> str:
    """`base` if free, else base-2, base-3, … — names a person can type."""
    base = slug(base)
    if not (runs_root / base).exists():
        return base
    i = 2
    while (runs_root / f"{base}-{i}").exists():
        i += 1
    return f"{base}-{i}"


def list_runs(runs_root: str | Path) -> list[RunDir]:
    """Every run directory (a folder holding recipe.toml) in `runs_root`, oldest recipe first. One stat per
    run (the folder test comes from the directory listing itself): the runs screen lists a thousand."""
    found = []
    try:
        with os.scandir(runs_root) as entries:
            for entry in entries:
                if not entry.is_dir():
                    continue
                run = RunDir(entry.path)
                try:
                    found.append((run.recipe_path.stat().st_mtime, entry.name, run))
                except OSError:  # no recipe.toml: not a run (the queue's folder, a stray directory)
                    continue
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [run for _, _, run in sorted(found, key=lambda t: (t[0], t[1]))]

"""What the Slurm tests share (imported by module name)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tiny import events

from vittui.runs import events as ev


def job_ids(run: Path) -> list[str]:
    """Every Slurm job the run was submitted as (executor.json), for the fixture to cancel."""
    try:
        return json.loads((run / "executor.json").read_text())["jobs"]
    except (FileNotFoundError, ValueError, KeyError):
        return []


def squeue_state(job: str) -> str:
    """Slurm's own answer, asked here independently of vittui/runs/slurm.py."""
    p = subprocess.run(["squeue", "-h", "-t", "all", "-j", job, "-o", "%T"], capture_output=True, text=True,
                       timeout=30)
    return p.stdout.strip()


def losses(run: Path) -> dict[int, float]:
    return {e.step: e.loss for e in events(run) if isinstance(e, ev.Step)}


def acks(run: Path) -> list:
    return [e for e in events(run) if isinstance(e, ev.ControlAck)]

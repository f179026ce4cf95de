"""What the Slurm tests share (imported by module name)."""

from __future__ import annotations

import json
import subprocess
import time
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


def start_requeued_now(job: str) -> None:
    """Slurm holds a requeued job ~2 minutes (BeginTime); this is the admin's way to let it start now. Not
    in the second the job's last run ended: slurmd revoked that run's credential with a timestamp in whole
    seconds, and a new start in the same second is killed as "Job credential revoked" (slurmctld.log)."""
    time.sleep(2)
    subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], check=True, timeout=30)

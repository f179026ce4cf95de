"""Start workers, without importing torch (how runs are doing: `runs/registry.py`).

A detached worker is a process of its own in a new session: closing the terminal (SIGHUP) or the
launching process exiting leaves it training. Several GPUs or machines go through `accelerate launch`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vittui.recipe import Recipe, save
from vittui.runs.store import RunDir, RunStatus, new_run_name


def prepare_run(recipe: Recipe, runs_root: str | Path, name: str | None = None, *, state: str = "starting",
                tags: dict[str, str] | None = None, message: str = "") -> RunDir:
    """A new run directory holding the resolved recipe, its tags and a status in `state` ('starting', or
    'queued' from runs/queue.py). status.json comes last: whoever sees the state sees the rest already."""
    root = Path(runs_root)
    root.mkdir(parents=True, exist_ok=True)
    base = name or recipe.run.name or recipe.model.name.split("/")[-1].split(".")[0]
    run = RunDir(root / new_run_name(root, base)).create()
    save(recipe, run.recipe_path)
    os.chmod(run.recipe_path, 0o600)
    if tags:
        run.write_tags(tags)
    run.write_status(RunStatus(state=state, message=message))
    return run


def worker_command(run: RunDir, *, resume: bool = False, gpus: int = 0, accelerate_config: str | None = None) -> list[str]:
    args = [str(run.path)] + (["--resume"] if resume else [])
    if gpus > 1 or accelerate_config:
        cmd = [sys.executable, "-m", "accelerate.commands.launch"]
        if accelerate_config:
            cmd += ["--config_file", accelerate_config]
        else:
            # one process per GPU; with compute.device = "cpu" the same launch trains on CPU processes (gloo)
            cmd += ["--multi_gpu", "--num_processes", str(gpus), "--num_machines", "1",
                    "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(_free_port())]
        return cmd + ["-m", "vittui.train.worker"] + args
    return [sys.executable, "-m", "vittui.train.worker"] + args


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(cmd: list[str], run: RunDir, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start `cmd` detached: own session, stdin closed, output appended to worker.log."""
    log = os.open(run.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            env={**os.environ, **(env or {})}, close_fds=True,
        )
    finally:
        os.close(log)


def launch(recipe: Recipe, runs_root: str | Path, name: str | None = None, *, gpus: int = 0,
           accelerate_config: str | None = None, env: dict[str, str] | None = None) -> RunDir:
    run = prepare_run(recipe, runs_root, name)
    proc = spawn(worker_command(run, gpus=gpus, accelerate_config=accelerate_config), run, env)
    status = run.read_status() or RunStatus()
    status.pid = proc.pid
    run.write_status(status)
    return run


def resume(run: RunDir, *, gpus: int = 0, accelerate_config: str | None = None,
           env: dict[str, str] | None = None) -> subprocess.Popen:
    """A detached worker continuing `run` from its last checkpoint (`vittui train --resume RUN --detach`,
    `vittui ctl RUN resume` on a run no worker is behind, the runs screen's resume key). status.json says
    `starting` with the new pid at once, so a reader never sees the old final state behind a live worker."""
    status = run.read_status() or RunStatus()
    status.state, status.message, status.pid = "starting", "resuming from the last checkpoint", None
    run.write_status(status)
    proc = spawn(worker_command(run, resume=True, gpus=gpus, accelerate_config=accelerate_config), run, env)
    status.pid = proc.pid
    run.write_status(status)
    return proc

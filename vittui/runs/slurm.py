"""Slurm as the executor: a run's worker starts as an `sbatch` job instead of a local process. No torch.

The run directory on a shared filesystem stays the only contract: the job's worker writes status, events
and checkpoints there and reads commands from there, so the dashboard and `vittui ctl` on the login node
treat it as a local run. Slurm decides when it starts; this module only writes the job script, submits
it and asks Slurm what the job is doing.

    runs/<name>/slurm.sbatch    the job script (`--requeue`; `--signal=USR1@N` before the time limit: the
                                worker checkpoints, ends `suspended` with exit code 75 and the script
                                requeues the job, which resumes; output appended to worker.log)
    runs/<name>/executor.json   {"executor": "slurm", "job_id": …, "jobs": [every job id], "config": …}

The script decides at run time whether to pass `--resume`: the run's checkpoint is on disk when Slurm
requeues a preempted job, so the requeued job continues exactly; one requeued before its first
checkpoint has logged steps but has no checkpoint, and the worker's `--resume` starts it over from step 0
with a warning and a `RunStarted(resumed_from_step=0)` that rewinds the history (runs/history.py). Several nodes go through `srun` + `accelerate launch` with accelerate's own
multi-node flags (one launcher per node, each told its rank by Slurm), never a launcher of our own.

The executor config is a small TOML file (`slurm.toml`), every key optional:

    partition = "gpu"           # sbatch --partition (default: the cluster's default partition)
    time = "1-00:00:00"         # time limit, Slurm's format
    nodes = 1                   # > 1: one run across several nodes (accelerate launch per node)
    gpus = 1                    # GPUs per node for the run (--gpus-per-node)
    cpus = 4                    # CPUs per task (--cpus-per-task)
    mem = "32G"                 # memory per node (--mem)
    signal_seconds = 120        # SIGUSR1 this long before the time limit: time to checkpoint and requeue
    runs_dir = "/shared/runs"   # the runs folder on the shared filesystem (when --runs-dir is not given)
    python = "/shared/venv/bin/python"   # the interpreter on the compute nodes (default: this one)
    sbatch = ["--account=vision", "--qos=normal"]   # extra #SBATCH lines, as sbatch options
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from vittui.runs.store import RunDir, RunStatus, atomic_write_text

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (pyproject's floor), as recipe/codec.py
    import tomli as tomllib

SCRIPT_NAME = "slurm.sbatch"
REQUEUE_EXIT = 75  # the worker's exit code after SIGUSR1 (train/worker.py): checkpointed, requeue the job
EXECUTOR_NAME = "executor.json"
# Slurm states in which the job waits to start: the run is `queued`
PENDING_STATES = ("PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "CONFIGURING")
# states in which the job's worker is (or is about to be) alive
RUNNING_STATES = ("RUNNING", "COMPLETING", "SUSPENDED", "STAGE_OUT", "SIGNALING", "RESIZING")
_TIME = re.compile(r"^(\d+-)?\d+(:\d{1,2}){0,2}$|^UNLIMITED$|^INFINITE$")


def time_limit_seconds(text: str) -> int | None:
    """A time in Slurm's format (`minutes`, `minutes:seconds`, `hours:minutes:seconds`, `days-hours`,
    `days-hours:minutes`, `days-hours:minutes:seconds`) in seconds; None for no limit."""
    if text in ("UNLIMITED", "INFINITE"):
        return None
    days, _, rest = text.rpartition("-")
    parts = [int(x) for x in rest.split(":")]
    if days:  # days-hours[:minutes[:seconds]]
        h, m, sec = (parts + [0, 0])[:3]
    elif len(parts) == 3:  # hours:minutes:seconds
        h, m, sec = parts
    else:  # minutes[:seconds]
        h, m, sec = 0, parts[0], (parts[1] if len(parts) == 2 else 0)
    return ((int(days or 0) * 24 + h) * 60 + m) * 60 + sec


class SlurmError(ValueError):
    """Slurm cannot take the run (no sbatch, a bad config, sbatch refused the job): one line for the user."""


@dataclass
class SlurmConfig:
    """The executor config (`slurm.toml`); the module docstring documents each key."""

    partition: str = ""
    time: str = "1-00:00:00"
    nodes: int = 1
    gpus: int = 0
    cpus: int = 1
    mem: str = ""
    signal_seconds: int = 120
    runs_dir: str = ""
    python: str = ""
    sbatch: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "slurm config") -> "SlurmConfig":
        """Validated: an unknown key, a wrong type or a value out of range raises SlurmError naming it."""
        known = {f.name: f for f in fields(cls)}
        for key in d:
            if key not in known:
                raise SlurmError(f"{source}: unknown key {key!r} (known: {', '.join(known)})")
        kinds = {"nodes": int, "gpus": int, "cpus": int, "signal_seconds": int}
        for key, value in d.items():
            want = kinds.get(key, list if key == "sbatch" else str)
            if want is int and (not isinstance(value, int) or isinstance(value, bool)):
                raise SlurmError(f"{source}: {key} must be a whole number (got {value!r})")
            if want is str and not isinstance(value, str):
                raise SlurmError(f"{source}: {key} must be a string (got {value!r})")
            if want is list and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
                raise SlurmError(f"{source}: sbatch must be a list of strings, e.g. [\"--account=vision\"] "
                                 f"(got {value!r})")
        config = cls(**d)
        for key, low in (("nodes", 1), ("cpus", 1), ("gpus", 0), ("signal_seconds", 0)):
            if getattr(config, key) < low:
                raise SlurmError(f"{source}: {key} must be >= {low} (got {getattr(config, key)})")
        if not _TIME.match(config.time):
            raise SlurmError(f"{source}: time must be Slurm's [days-]hours:minutes:seconds or minutes "
                             f"(got {config.time!r})")
        limit = time_limit_seconds(config.time)
        if limit is not None and config.signal_seconds >= limit:
            raise SlurmError(f"{source}: signal_seconds = {config.signal_seconds} is not less than the time limit "
                             f"({config.time!r} is {limit} s): Slurm would signal the run as it starts; lower "
                             "signal_seconds or raise time")
        for line in config.sbatch:
            if not line.startswith("-") or "\n" in line:
                raise SlurmError(f"{source}: each sbatch entry is one sbatch option starting with '-' (got {line!r})")
        return config


def load_config(path: str | Path | None) -> SlurmConfig:
    """The config in `path` (the defaults when None); SlurmError in one line for a missing, unreadable or
    invalid file."""
    if path is None:
        return SlurmConfig()
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text())
    except FileNotFoundError:
        raise SlurmError(f"no Slurm config at {p}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise SlurmError(f"cannot read the Slurm config {p}: {e}") from None
    except tomllib.TOMLDecodeError as e:
        raise SlurmError(f"{p} is not valid TOML: {e}") from None
    return SlurmConfig.from_dict(data, source=str(p))


def require_sbatch() -> str:
    """The sbatch command, or SlurmError when this machine has none (checked before a run dir exists)."""
    exe = shutil.which("sbatch")
    if exe is None:
        raise SlurmError("sbatch not found: --executor slurm needs Slurm's commands on PATH (a login node)")
    return exe


# --- the job script -----------------------------------------------------------------------------------

def script_text(run: RunDir, config: SlurmConfig) -> str:
    """The sbatch script for `run`. One node: `srun` starts the worker as a job step (so `scancel
    --signal` and `--signal` reach it); several nodes or GPUs: `accelerate launch` under srun, one per node,
    ranked by Slurm's SLURM_NODEID."""
    run_path = str(Path(run.path).resolve())
    python = config.python or sys.executable
    lines = ["#!/bin/bash",
             f"#SBATCH --job-name=vittui-{run.name}",
             f"#SBATCH --output={run_path}/worker.log",
             "#SBATCH --open-mode=append",
             "#SBATCH --requeue",
             f"#SBATCH --signal=USR1@{config.signal_seconds}",
             f"#SBATCH --time={config.time}",
             f"#SBATCH --nodes={config.nodes}",
             "#SBATCH --ntasks-per-node=1",
             f"#SBATCH --cpus-per-task={config.cpus}"]
    if config.partition:
        lines.append(f"#SBATCH --partition={config.partition}")
    if config.gpus:
        lines.append(f"#SBATCH --gpus-per-node={config.gpus}")
    if config.mem:
        lines.append(f"#SBATCH --mem={config.mem}")
    lines += [f"#SBATCH {extra}" for extra in config.sbatch]
    lines += [
        "# written by vittui (vittui/runs/slurm.py); Slurm requeues it after preemption, and the script itself",
        "# when the worker exits 75: it checkpointed on SIGUSR1, sent before the job's time limit",
        f"RUN={shlex.quote(run_path)}",
        f"PYTHON={shlex.quote(python)}",
        "RESUME=",
        "# a checkpoint on disk: continue from it (a requeued job resumes exactly); a run that logged steps but",
        "# has no checkpoint yet: --resume starts it over and says so (the history rewinds to 0); else step 0",
        'if compgen -G "$RUN/checkpoints/step-*/state.pt" >/dev/null || [ -s "$RUN/events.jsonl" ]; then',
        "  RESUME=--resume",
        "fi",
        'echo "vittui: slurm job $SLURM_JOB_ID (restart ${SLURM_RESTART_COUNT:-0}) on $(hostname) ${RESUME}"',
    ]
    if config.nodes > 1 or config.gpus > 1:
        per_node = max(config.gpus, 1)
        lines += [
            'MAIN=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)',
            "PORT=$(( 20000 + SLURM_JOB_ID % 20000 ))",
            "export RUN PYTHON RESUME MAIN PORT",
            # single quotes: SLURM_NODEID is each node's own, expanded by the task's shell
            "srun --kill-on-bad-exit=1 bash -c '\"$PYTHON\" -m accelerate.commands.launch "
            "--num_machines $SLURM_NNODES --machine_rank $SLURM_NODEID --main_process_ip $MAIN "
            f"--main_process_port $PORT --num_processes $(( SLURM_NNODES * {per_node} )) --multi_gpu "
            "--mixed_precision no --dynamo_backend no -m vittui.train.worker \"$RUN\" $RESUME'",
        ]
    else:
        lines.append('srun --kill-on-bad-exit=1 "$PYTHON" -m vittui.train.worker "$RUN" $RESUME')
    lines += [
        "RC=$?",
        f'if [ "$RC" -eq {REQUEUE_EXIT} ]; then',
        '  echo "vittui: checkpointed before the time limit; requeueing slurm job $SLURM_JOB_ID"',
        '  scontrol requeue "$SLURM_JOB_ID" && exit 0',
        "fi",
        'exit "$RC"',
    ]
    return "\n".join(lines) + "\n"


# --- submit, ask ---------------------------------------------------------------------------------------

def read_executor(run: RunDir) -> dict[str, Any] | None:
    """executor.json ({"executor", "job_id", "jobs", "config", …}) or None for a run no executor file names."""
    try:
        d = json.loads((run.path / EXECUTOR_NAME).read_text())
    except (FileNotFoundError, ValueError):
        return None
    return d if isinstance(d, dict) else None


def job_id_of(run: RunDir) -> str | None:
    """The Slurm job id behind `run` (its latest submission), None for a run not submitted to Slurm."""
    info = read_executor(run)
    return str(info["job_id"]) if info and info.get("executor") == "slurm" and info.get("job_id") else None


def config_of(run: RunDir) -> SlurmConfig:
    """The config the run was submitted with (a resubmission asks for the same resources)."""
    info = read_executor(run) or {}
    return SlurmConfig.from_dict(info.get("config") or {}, source=str(run.path / EXECUTOR_NAME))


def submit(run: RunDir, config: SlurmConfig, *, resume: bool = False) -> str:
    """Write the job script into the run directory, `sbatch --parsable` it, record the job id in
    executor.json and set the run `queued`; the job id. `resume` only says why in status.json: the script
    itself resumes whenever a checkpoint is on disk. SlurmError when sbatch is missing or refuses."""
    exe = require_sbatch()
    if not config.python:  # recorded, so a resubmission from another shell runs the same interpreter
        config = SlurmConfig(**{**asdict(config), "python": sys.executable})
    script = run.path.resolve() / SCRIPT_NAME
    atomic_write_text(script, script_text(run, config), mode=0o700)
    try:
        p = subprocess.run([exe, "--parsable", str(script)], capture_output=True, text=True, timeout=60,
                           cwd=run.path)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(f"sbatch failed: {e}") from None
    if p.returncode != 0:
        why = (p.stderr.strip().splitlines() or ["(no message)"])[-1]
        raise SlurmError(f"sbatch refused the job: {why}")
    job_id = p.stdout.strip().split(";")[0]
    if not job_id.isdigit():
        raise SlurmError(f"sbatch answered {p.stdout.strip()!r}, not a job id")
    old = read_executor(run) or {}
    atomic_write_text(run.path / EXECUTOR_NAME, json.dumps({
        "executor": "slurm", "job_id": job_id, "jobs": [*old.get("jobs", []), job_id],
        "config": asdict(config), "script": SCRIPT_NAME, "submitted": time.time(),
    }, indent=1))
    status = run.read_status() or RunStatus()
    status.state, status.pid = "queued", 0
    status.message = f"slurm job {job_id}" + (" (resuming from the last checkpoint)" if resume else "")
    run.write_status(status)
    return job_id


def submit_new(recipe, runs_root: str | Path, name: str | None, config: SlurmConfig, *,
               tags: dict[str, str] | None = None) -> tuple[RunDir, str]:
    """A new run directory for `recipe` (state queued, executor slurm, `tags` written before any worker
    can read them) submitted at once; (run, job id). A job sbatch refuses leaves no run directory behind
    and raises SlurmError. `vittui train --executor slurm` and a sweep's Slurm trials both start here."""
    from vittui.runs import queue

    run = queue.enqueue(recipe, runs_root, name, gpus=config.gpus, executor="slurm", tags=tags)
    try:
        return run, submit(run, config)
    except SlurmError:
        shutil.rmtree(run.path, ignore_errors=True)
        raise


def resubmit(run: RunDir) -> str:
    """A new job continuing `run` from its last checkpoint, with the resources it was submitted with."""
    return submit(run, config_of(run), resume=True)


def cancel(run: RunDir) -> str:
    """Cancel the run's job while it waits in Slurm's queue (`ctl RUN stop` on a queued Slurm run): the
    run is `stopped`, nothing lost. The job id; SlurmError when scancel is missing or refuses."""
    job_id = job_id_of(run)
    exe = shutil.which("scancel")
    if job_id is None or exe is None:
        raise SlurmError(f"cannot cancel {run.name}: " + ("no Slurm job recorded" if job_id is None
                                                          else "scancel not found on PATH"))
    p = subprocess.run([exe, job_id], capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise SlurmError(f"scancel {job_id} failed: {(p.stderr.strip().splitlines() or ['(no message)'])[-1]}")
    status = run.read_status() or RunStatus()
    if status.state == "queued":  # a worker that started meanwhile got SIGTERM: it writes its own ending
        status.state, status.message = "stopped", f"slurm job {job_id} cancelled while pending"
        run.write_status(status)
    return job_id


def job_states(job_ids: list[str]) -> dict[str, str]:
    """Slurm's state (PENDING, RUNNING, COMPLETED, …) of each job it still knows, from one `squeue` call
    (finished jobs stay listed for the controller's MinJobAge), then `sacct` for the rest when accounting
    is on. Jobs Slurm does not know, or every job when squeue is missing, are left out. Blocks on a
    subprocess: never call it on the dashboard's event loop."""
    ids = sorted({str(j) for j in job_ids if j})
    if not ids or shutil.which("squeue") is None:
        return {}
    out: dict[str, str] = {}
    try:
        p = subprocess.run(["squeue", "-h", "-t", "all", "-j", ",".join(ids), "-o", "%i %T"],
                           capture_output=True, text=True, timeout=20)
        for line in p.stdout.splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[0] in ids:
                out[parts[0]] = parts[1]
        missing = [j for j in ids if j not in out]
        if missing and shutil.which("sacct"):
            p = subprocess.run(["sacct", "-n", "-X", "-P", "-j", ",".join(missing), "-o", "JobID,State"],
                               capture_output=True, text=True, timeout=20)
            for line in p.stdout.splitlines():
                jid, _, state = line.partition("|")
                if jid in missing and state:
                    out[jid] = state.split()[0]  # "CANCELLED by 0" -> CANCELLED
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


def job_state(job_id: str) -> str | None:
    """Slurm's state of one job, None when Slurm does not know it (or cannot be asked)."""
    return job_states([job_id]).get(str(job_id))


def run_state_with_job(status_state: str | None, local_state: str, job: str | None) -> str:
    """A Slurm run's state from status.json's state, the state local evidence gives (registry.run_state
    without Slurm: pids, a lock from another host counting as held) and the job's Slurm state (None:
    unknown). A pending job is `queued` whatever the run last said (a job Slurm requeued after
    preemption); a running job's worker counts as alive; a job that ended leaves no worker behind."""
    if job in PENDING_STATES:
        return "queued"
    if job in RUNNING_STATES:
        if status_state in (None, "queued"):
            return "starting"  # the job runs; its worker has not written its first status yet
        return status_state if local_state == "lost" else local_state
    if job is None:
        return local_state  # Slurm does not know the job (any more): local evidence only
    if status_state == "queued" or local_state in ("starting", "running", "paused", "stopping"):
        return "lost"  # the job ended (cancelled, failed, node lost) with no worker to say how
    return local_state

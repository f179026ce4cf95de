"""The Slurm executor without a cluster: the config file's validation, the job script's text (one node and
several), bad input on the command line (one line, exit 2, no run directory left), how a Slurm job's state
decides the run's, and a lock taken on another host."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import TINY_PROCESS, tiny_toml

from vittui.runs import lock, registry, slurm
from vittui.runs.launcher import prepare_run
from vittui.runs.store import RunDir, RunStatus


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, says", [
    ("partition = 'gpu'\nwalltime = '1:00:00'\n", "unknown key 'walltime'"),
    ("nodes = 'two'\n", "nodes must be a whole number"),
    ("nodes = 0\n", "nodes must be >= 1"),
    ("gpus = true\n", "gpus must be a whole number"),
    ("time = 'an hour'\n", "time must be Slurm's"),
    ("time = '00:02:00'\n", "signal_seconds = 120 is not less than the time limit ('00:02:00' is 120 s)"),
    ("time = '3'\nsignal_seconds = 200\n", "signal_seconds = 200 is not less than the time limit ('3' is 180 s)"),
    ("sbatch = '--account=a'\n", "sbatch must be a list of strings"),
    ("sbatch = ['account=a']\n", "each sbatch entry is one sbatch option"),
    ("partition = \n", "is not valid TOML"),
])
def test_config_errors_name_the_key(tmp_path, text, says):
    path = write(tmp_path / "slurm.toml", text)
    with pytest.raises(slurm.SlurmError) as e:
        slurm.load_config(path)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("text, seconds", [
    ("90", 90 * 60), ("2:30", 150), ("01:02:03", 3723), ("1-0", 86400), ("2-03:04", (2 * 24 + 3) * 3600 + 240),
    ("1-00:00:10", 86410), ("UNLIMITED", None), ("INFINITE", None),
])
def test_time_limits_in_every_slurm_format(text, seconds):
    assert slurm.time_limit_seconds(text) == seconds


def test_config_loads_every_key(tmp_path):
    path = write(tmp_path / "slurm.toml", "partition = 'gpu'\ntime = '2-00:00:00'\nnodes = 2\ngpus = 4\ncpus = 8\n"
                 "mem = '64G'\nsignal_seconds = 300\nruns_dir = '/shared/runs'\npython = '/venv/bin/python'\n"
                 "sbatch = ['--account=vision', '--qos=high']\n")
    c = slurm.load_config(path)
    assert (c.partition, c.time, c.nodes, c.gpus, c.cpus, c.mem, c.signal_seconds, c.runs_dir, c.python,
            c.sbatch) == ("gpu", "2-00:00:00", 2, 4, 8, "64G", 300, "/shared/runs", "/venv/bin/python",
                          ["--account=vision", "--qos=high"])
    assert slurm.load_config(None) == slurm.SlurmConfig()


def sbatch_lines(text: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in text.splitlines() if line.startswith("#SBATCH ")]


def test_one_node_script_requeues_signals_and_resumes_from_a_checkpoint(tmp_path):
    run = RunDir(tmp_path / "r").create()
    text = slurm.script_text(run, slurm.SlurmConfig(partition="debug", time="30", cpus=2, gpus=1,
                                                    signal_seconds=90, sbatch=["--account=a"]))
    opts = sbatch_lines(text)
    for want in ("--requeue", "--signal=USR1@90", "--time=30", "--partition=debug", "--cpus-per-task=2",
                 "--gpus-per-node=1", "--nodes=1", "--account=a", f"--output={run.path.resolve()}/worker.log",
                 "--open-mode=append"):
        assert want in opts, (want, opts)
    assert "accelerate" not in text
    assert 'srun --kill-on-bad-exit=1 "$PYTHON" -m vittui.train.worker "$RUN" $RESUME' in text.splitlines()
    # the script's own decision, run here with srun replaced by echo: --resume only with a checkpoint on disk
    script = write(tmp_path / "job.sh", text.replace("srun --kill-on-bad-exit=1 ", "echo "))

    def argv() -> str:
        env = {**os.environ, "SLURM_JOB_ID": "7"}
        return subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env).stdout.splitlines()[-1]

    assert argv().endswith(f"-m vittui.train.worker {run.path.resolve()}")  # a new run: from step 0
    (run.checkpoints / "step-10").mkdir()
    assert argv().endswith(f"-m vittui.train.worker {run.path.resolve()}")  # a half-written checkpoint: no
    (run.checkpoints / "step-10" / "state.pt").write_bytes(b"x")
    assert argv().endswith(f"-m vittui.train.worker {run.path.resolve()} --resume")
    (run.checkpoints / "step-10" / "state.pt").unlink()
    run.events_path.write_text('{"type":"step","step":1}\n')  # requeued before its first checkpoint
    assert argv().endswith(f"-m vittui.train.worker {run.path.resolve()} --resume")  # the worker starts over


@pytest.mark.parametrize(("worker_exit", "requeued", "job_exit"), [(75, True, 0), (0, False, 0), (1, False, 1)])
def test_the_script_requeues_its_job_when_the_worker_checkpointed_for_the_time_limit(tmp_path, worker_exit,
                                                                                     requeued, job_exit):
    """Exit 75 is the worker's answer to SIGUSR1 (`--signal=USR1@N`, before the time limit): the script asks
    Slurm to requeue the job, so the next job resumes from the checkpoint; any other exit is the job's."""
    run = RunDir(tmp_path / "r").create()
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    write(bin_dir / "srun", f"#!/bin/sh\nexit {worker_exit}\n").chmod(0o755)
    said = tmp_path / "scontrol.txt"
    write(bin_dir / "scontrol", f"#!/bin/sh\necho \"$@\" >> {said}\n").chmod(0o755)
    script = write(tmp_path / "job.sh", slurm.script_text(run, slurm.SlurmConfig()))
    env = {**os.environ, "SLURM_JOB_ID": "7", "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    p = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert p.returncode == job_exit
    assert (said.read_text().split() if said.exists() else []) == (["requeue", "7"] if requeued else [])
    assert ("requeueing slurm job 7" in p.stdout) == requeued


def test_several_nodes_go_through_accelerate_launch_under_srun(tmp_path):
    run = RunDir(tmp_path / "r").create()
    text = slurm.script_text(run, slurm.SlurmConfig(nodes=3, gpus=4, python="/venv/bin/python"))
    assert "--nodes=3" in sbatch_lines(text) and "--ntasks-per-node=1" in sbatch_lines(text)
    launch = next(line for line in text.splitlines() if line.startswith("srun "))
    assert launch.startswith("srun --kill-on-bad-exit=1 bash -c '")
    for flag in ("-m accelerate.commands.launch", "--num_machines $SLURM_NNODES", "--machine_rank $SLURM_NODEID",
                 "--main_process_ip $MAIN", "--num_processes $(( SLURM_NNODES * 4 ))",
                 '-m vittui.train.worker "$RUN" $RESUME'):
        assert flag in launch, flag
    assert 'MAIN=$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1)' in text
    assert "PYTHON=/venv/bin/python" in text
    subprocess.run(["bash", "-n"], input=text, text=True, check=True)  # the script parses


def run_cli(tmp_path, *args, env=None):
    from tiny import vittui_cmd

    return subprocess.run(vittui_cmd() + ["--runs-dir", str(tmp_path / "runs"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120, env={**os.environ, **(env or {})})


def test_bad_config_or_no_sbatch_is_one_line_exit_2_and_no_run_dir(tmp_path):
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS)
    bad = write(tmp_path / "bad.toml", "partiton = 'gpu'\n")
    p = run_cli(tmp_path, "train", str(toml), "--executor", "slurm", "--slurm-config", str(bad))
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == [f"error: {bad}: unknown key 'partiton' (known: partition, time, nodes, "
                                             "gpus, cpus, mem, signal_seconds, runs_dir, python, sbatch)"]
    p = run_cli(tmp_path, "train", str(toml), "--executor", "slurm", "--slurm-config", str(tmp_path / "none.toml"))
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "no Slurm config" in p.stderr
    # a PATH without sbatch (the interpreter called by its full path)
    bare = tmp_path / "bin"
    bare.mkdir()
    p = subprocess.run([sys.executable, "-m", "vittui.cli", "--runs-dir", str(tmp_path / "runs"), "train", str(toml),
                        "--executor", "slurm"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PATH": str(bare)})
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines() == ["error: sbatch not found: --executor slurm needs Slurm's commands on "
                                             "PATH (a login node)"]
    p = run_cli(tmp_path, "train", str(toml), "--slurm-config", str(bad))
    assert p.returncode == 2 and "needs --executor slurm" in p.stderr
    assert not any((tmp_path / "runs").glob("*/recipe.toml"))


def test_sbatch_refusing_the_job_leaves_no_run_dir(tmp_path):
    """A fake sbatch that refuses (as for an unknown partition): one line, exit 2, nothing left."""
    fake = tmp_path / "bin"
    fake.mkdir()
    sbatch = write(fake / "sbatch", "#!/bin/sh\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n")
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS)
    p = subprocess.run([sys.executable, "-m", "vittui.cli", "--runs-dir", str(tmp_path / "runs"), "train", str(toml),
                        "--executor", "slurm"], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == ["error: sbatch refused the job: sbatch: error: invalid partition "
                                             "specified: nope"]
    assert not any((tmp_path / "runs").glob("*/recipe.toml"))


@pytest.mark.parametrize("status_state, local, job, want", [
    ("queued", "queued", "PENDING", "queued"),
    ("stopped", "stopped", "PENDING", "queued"),      # requeued after preemption
    ("queued", "queued", "RUNNING", "starting"),      # the job runs, its worker has not written yet
    ("running", "lost", "RUNNING", "running"),        # a worker on another node: local pids say nothing
    ("paused", "paused", "RUNNING", "paused"),
    ("finished", "finished", "COMPLETED", "finished"),
    ("running", "running", "CANCELLED", "lost"),      # a lock from another host, and the job is over
    ("queued", "queued", "CANCELLED", "lost"),        # cancelled before it ever started
    ("running", "lost", None, "lost"),                # Slurm forgot the job: local evidence
    ("stopped", "stopped", None, "stopped"),
])
def test_a_slurm_jobs_state_decides_the_runs(status_state, local, job, want):
    assert slurm.run_state_with_job(status_state, local, job) == want


def test_a_lock_from_another_host_is_held_and_run_state_asks_slurm(tmp_path, monkeypatch):
    from vittui.recipe import Recipe

    run = prepare_run(Recipe().with_overrides(TINY_PROCESS), tmp_path / "runs", "r")
    run.write_status(RunStatus(state="running", pid=999999, host="node-17"))
    run.lock_path.write_text(json.dumps({"pid": 999999, "start_time": 1.0, "host": "node-17", "job_id": "41"}))
    assert lock.lock_holder_alive(run.lock_path)  # not judged by this host's pids
    assert registry.run_state(run) == "running"
    (run.path / slurm.EXECUTOR_NAME).write_text(json.dumps({"executor": "slurm", "job_id": "41", "jobs": ["41"]}))
    monkeypatch.setattr(slurm, "job_states", lambda ids: {"41": "NODE_FAIL"})
    assert registry.run_state(run) == "lost"
    assert registry.scan_runs(tmp_path / "runs")[0].job_state == "NODE_FAIL"
    # a worker of the same job requeued onto this host takes the stale lock; another job's worker may not
    monkeypatch.setenv("SLURM_JOB_ID", "41")
    lock.acquire(run.lock_path)
    assert json.loads(run.lock_path.read_text())["host"] == socket.gethostname()
    lock.release(run.lock_path)
    run.lock_path.write_text(json.dumps({"pid": 999999, "start_time": 1.0, "host": "node-17", "job_id": "40"}))
    monkeypatch.setattr(slurm, "job_states", lambda ids: {"40": "RUNNING"})
    with pytest.raises(lock.RunLocked, match="node-17"):
        lock.acquire(run.lock_path)


def test_submit_through_a_fake_sbatch_records_the_job_and_skips_this_machines_devices(tmp_path):
    """sbatch's answer (`id;cluster`) becomes the run's job; a CUDA recipe is not refused on a login node
    without a GPU (the compute node has one), while a bad recipe value still is."""
    fake = tmp_path / "bin"
    fake.mkdir()
    sbatch = write(fake / "sbatch", f"#!/bin/sh\necho \"$@\" > {tmp_path}/argv\necho '4242;cluster'\n")
    sbatch.chmod(sbatch.stat().st_mode | stat.S_IEXEC)
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS + ["compute.device=cuda"])
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"}
    base = [sys.executable, "-m", "vittui.cli", "--runs-dir", str(tmp_path / "runs"), "train", str(toml)]
    p = subprocess.run(base + ["--executor", "slurm", "--name", "g", "--gpus", "2"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120, env=env)
    assert p.returncode == 0, p.stderr
    assert "submitted g as slurm job 4242" in p.stdout
    run = RunDir(tmp_path / "runs" / "g")
    assert slurm.job_id_of(run) == "4242" and slurm.config_of(run).gpus == 2
    assert (tmp_path / "argv").read_text().split() == ["--parsable", str((run.path / "slurm.sbatch").resolve())]
    assert "--gpus-per-node=2" in (run.path / "slurm.sbatch").read_text()
    assert (run.read_status().state, run.read_status().message) == ("queued", "slurm job 4242")
    p = subprocess.run(base + ["--executor", "slurm", "--set", "optim.lr=-1"], cwd=tmp_path, capture_output=True,
                       text=True, timeout=120, env=env)
    assert p.returncode == 2 and "optim.lr" in p.stderr and len(p.stderr.strip().splitlines()) == 1

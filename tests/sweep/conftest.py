"""Sweep tests: the `vittui sweep` command run as a user runs it, and a PostgreSQL server for the
two-box test (started per session into a temporary folder, on a loopback port, as the postgres user)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from tiny import SWEEP_SPACE, sweep_args, vittui_cmd

sys.path.insert(0, str(Path(__file__).parents[1] / "ui"))  # the Pilot helpers (ui_helpers) for the sweep screen


@pytest.fixture
def anyio_backend():
    return "asyncio"


def sweep_env(runs: Path) -> dict[str, str]:
    return {**os.environ, "VITTUI_RUNS": str(runs)}


def start_sweep(tmp: Path, runs: Path, trials: int, *extra: str) -> subprocess.Popen:
    """`vittui sweep` over the tiny sweep recipe and SWEEP_SPACE, started in the background (output to
    tmp/sweep-<n>.log)."""
    space = tmp / "space.toml"
    space.write_text(SWEEP_SPACE)
    log_path = tmp / f"sweep-{len(list(tmp.glob('sweep-*.log')))}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(vittui_cmd() + sweep_args(space, trials, *extra), cwd=tmp, env=sweep_env(runs),
                                stdout=log, stderr=subprocess.STDOUT)
    proc.log_path = log_path  # type: ignore[attr-defined]
    return proc


def run_sweep(tmp: Path, runs: Path, trials: int, *extra: str, timeout: float = 900) -> str:
    """The same, waited for; its output (fails the test on a non-zero exit)."""
    proc = start_sweep(tmp, runs, trials, *extra)
    return finish(proc, timeout)


def finish(proc: subprocess.Popen, timeout: float = 900) -> str:
    """Wait for a sweep started by `start_sweep`; its output (fails the test on a non-zero exit)."""
    try:
        rc = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    log = proc.log_path.read_text()  # type: ignore[attr-defined]
    assert rc == 0, log
    return log


def sweep_status(tmp: Path, runs: Path, study: str, *extra: str) -> dict:
    p = subprocess.run(vittui_cmd() + ["sweep", "status", study, "--json", *extra], cwd=tmp, env=sweep_env(runs),
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def kill_trial_workers(runs: Path) -> None:
    """SIGKILL every worker still behind a run in `runs` (by the pid in its status, never by name)."""
    from tiny import kill_if_alive, status

    for run in runs.glob("*/status.json"):
        kill_if_alive(status(run.parent).get("pid"))


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL server for this session: initdb + pg_ctl as the postgres user into a temp folder,
    listening on 127.0.0.1 only; a database `optuna`. Skips (with the reason) where the binaries are absent."""
    for tool in ("initdb", "pg_ctl", "psql", "runuser"):
        if shutil.which(tool) is None:
            pytest.skip(f"PostgreSQL test: {tool} not on PATH (install postgresql to run it)")
    if os.geteuid() != 0:
        pytest.skip("PostgreSQL test: needs root to run initdb as the postgres user (runuser)")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    d = Path(tempfile.mkdtemp(prefix="vittui-pg-"))
    shutil.chown(d, "postgres")
    as_pg = ["runuser", "-u", "postgres", "--"]
    subprocess.run(as_pg + ["initdb", "-D", str(d / "data"), "-A", "trust", "-U", "postgres"], check=True,
                   capture_output=True, timeout=300)
    subprocess.run(as_pg + ["pg_ctl", "-D", str(d / "data"), "-o", f"-p {port} -k {d} -c listen_addresses=127.0.0.1",
                            "-l", str(d / "log"), "-w", "start"], check=True, capture_output=True, timeout=300)
    try:
        for _ in range(100):
            if subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-c",
                               "create database optuna"], capture_output=True).returncode == 0:
                break
            time.sleep(0.2)
        else:
            raise RuntimeError(f"PostgreSQL did not take a database: {(d / 'log').read_text()}")
        yield f"postgresql://postgres@127.0.0.1:{port}/optuna"
    finally:
        subprocess.run(as_pg + ["pg_ctl", "-D", str(d / "data"), "-m", "immediate", "stop"], capture_output=True,
                       timeout=120)
        shutil.rmtree(d, ignore_errors=True)

"""Sweep tests' fixtures: the anyio backend, and a PostgreSQL server for the two-box test (started per
session into a temporary folder, on a loopback port, as the postgres user). Helpers: sweep_helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

# the UI tests' helpers (ui_helpers, fakerun): the sweep screen on a real study, fake run directories
sys.path.insert(0, str(Path(__file__).parents[1] / "ui"))


@pytest.fixture
def anyio_backend():
    return "asyncio"


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

"""Sweep tests' fixtures: the anyio backend, and a PostgreSQL server for the two-box test — the one `.ci/run`
starts (`.ci/postgres.sh`, its URL in VITTUI_TEST_POSTGRES_URL), or else one started for this session into a
temporary folder, on a loopback port, as the postgres user. Helpers: sweep_helpers.py."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# the UI tests' helpers (ui_helpers, fakerun): the sweep screen on a real study, fake run directories
sys.path.insert(0, str(Path(__file__).parents[1] / "ui"))


@pytest.fixture
def anyio_backend():
    return "asyncio"


def _create_database(host: str, port: int, user: str) -> str:
    """A new, empty database on the server, so a rerun on a long-lived server never meets an old study."""
    name = f"optuna_{os.getpid()}_{int(time.time() * 1000)}"
    for _ in range(100):
        if subprocess.run(["psql", "-h", host, "-p", str(port), "-U", user, "-d", "postgres", "-c",
                           f"create database {name}"], capture_output=True).returncode == 0:
            return name
        time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL on {host}:{port} did not take a database")


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh database on a PostgreSQL server listening on 127.0.0.1: CI's server when VITTUI_TEST_POSTGRES_URL
    names it, else one started for this session by the same `.ci/postgres.sh` CI uses. Skips (with the reason)
    where the binaries are absent."""
    server = os.environ.get("VITTUI_TEST_POSTGRES_URL")
    tools = ("psql",) if server else ("initdb", "pg_ctl", "psql", "runuser")
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"PostgreSQL test: {tool} not on PATH (install postgresql to run it)")
    if not server and os.geteuid() != 0:
        pytest.skip("PostgreSQL test: needs root to run initdb as the postgres user (runuser)")
    script = Path(__file__).parents[2] / ".ci" / "postgres.sh"
    d = None if server else Path(tempfile.mkdtemp(prefix="vittui-pg-"))
    try:
        if d is not None:
            subprocess.run(["bash", str(script), "start", str(d)], check=True, capture_output=True, timeout=300)
            server = (d / "url").read_text().strip()
        u = urlsplit(server)
        name = _create_database(u.hostname or "127.0.0.1", u.port or 5432, u.username or "postgres")
        yield f"{u.scheme}://{u.netloc}/{name}"
    finally:
        if d is not None:
            subprocess.run(["bash", str(script), "stop", str(d)], capture_output=True, timeout=120)

"""Tests that submit real jobs: they need `sbatch` and a controller that answers (.ci/slurm_up.sh starts a
one-node cluster; CI runs it before the tests, and there a skip is a failure)."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def slurm_missing() -> str | None:
    """Why no job can be submitted here, or None when a controller answers."""
    if shutil.which("sbatch") is None:
        return "no sbatch on PATH (start a one-node cluster with .ci/slurm_up.sh)"
    try:
        p = subprocess.run(["sinfo", "-h", "-o", "%a %T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"sinfo did not answer: {e}"
    if p.returncode != 0 or "up" not in p.stdout:
        return f"no Slurm controller answers (sinfo: {(p.stderr or p.stdout).strip()[:200]})"
    return None


@pytest.fixture
def slurm_cluster():
    """Skips (with the reason) where no cluster answers; afterwards cancels every job the test's runs left."""
    if (why := slurm_missing()) is not None:
        pytest.skip(why)
    jobs: list[str] = []
    yield jobs
    for job in jobs:
        subprocess.run(["scancel", job], capture_output=True, timeout=30)


@pytest.fixture
def anyio_backend():
    return "asyncio"

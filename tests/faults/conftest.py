"""Fixtures of the fault suite (helpers live in fault_helpers.py)."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest
from fault_helpers import TINY_PROCESS, vittui_cmd

from vittui.recipe import Recipe


@pytest.fixture
def cli(tmp_path):
    """Run the installed `vittui` command in tmp_path with its own runs folder."""
    env = {**os.environ, "VITTUI_RUNS": str(tmp_path / "runs")}

    def run(*args, check=True, timeout=120, extra_env=None):
        p = subprocess.run(vittui_cmd() + list(args), cwd=tmp_path, env={**env, **(extra_env or {})},
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"vittui {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    run.root = tmp_path / "runs"
    return run


@pytest.fixture
def tiny_process_toml(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(Recipe().with_overrides(TINY_PROCESS).to_toml())
    return path


@pytest.fixture
def reap():
    """Workers a test started; SIGKILLed at teardown if still alive (by pid, never by name)."""
    from vittui.runs.lock import pid_alive

    pids: list[int] = []
    yield pids
    for pid in pids:
        if pid and pid_alive(pid):
            os.kill(pid, signal.SIGKILL)

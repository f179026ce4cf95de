"""Fixtures of the fault suite (helpers live in fault_helpers.py)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from fault_helpers import TINY_PROCESS

from vittui.recipe import Recipe


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

"""Pilot helpers: a fake run directory, a fixed hardware source, waiting on conditions (never sleeps)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakerun import FakeRun
from ui_helpers import HOST

from vittui.hardware import FakeSource


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    root.mkdir()
    return root


@pytest.fixture
def fake_run(runs_root: Path):
    fr = FakeRun(runs_root)
    yield fr
    fr.close()


@pytest.fixture
def no_gpu() -> FakeSource:
    return FakeSource([], HOST, reason="NVIDIA driver library (libnvidia-ml) not found")

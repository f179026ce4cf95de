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


@pytest.fixture
def queue_held(runs_root: Path):
    """The run queue of `runs_root` with its scheduler lock held by this test process: to every caller a
    scheduler is alive, so `enqueue`/`requeue` start none and queued runs stay in line while a test looks."""
    from vittui.runs import lock, queue

    queue.waiting_dir(runs_root).mkdir(parents=True, exist_ok=True)
    lock.acquire(queue.scheduler_lock_path(runs_root))
    yield queue
    lock.release(queue.scheduler_lock_path(runs_root))

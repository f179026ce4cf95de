"""Helpers the CUDA tests share (the tiny recipe itself lives in tests/tiny.py)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tiny import TINY_PROCESS, events, status, tiny_recipe

from vittui.runs import events as ev

CUDA = ["compute.device=cuda"]
# the detached worker of tests/tiny.py, on the device: it never ends by itself
CUDA_PROCESS = TINY_PROCESS + CUDA


def cuda_recipe(*extra: str):
    """The in-process tiny recipe (digits, 2 blocks, width 32) on the CUDA device."""
    return tiny_recipe(*CUDA, *extra)


def steps_of(run) -> list[ev.Step]:
    path = Path(getattr(run, "path", run))
    return [e for e in events(path) if isinstance(e, ev.Step)]


def record_calls(monkeypatch, owner: Any, name: str) -> list:
    """Wrap `owner.name` so every value it returns is also appended to the returned list."""
    real = getattr(owner, name)
    results: list = []

    def wrapper(*args, **kwargs):
        out = real(*args, **kwargs)
        results.append(out)
        return out

    monkeypatch.setattr(owner, name, wrapper)
    return results


def worker_log(run: Path) -> str:
    try:
        return (Path(run) / "worker.log").read_text()[-4000:]
    except FileNotFoundError:
        return "(no worker.log)"


def wait_for_steps(run: Path, n: int, timeout: float = 300.0) -> list[ev.Step]:
    """Wait until the run has written `n` Step events; fail at once, with the worker's log, if it failed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        steps = steps_of(run)
        if len(steps) >= n:
            return steps
        if status(run).get("state") in ("failed", "finished", "stopped"):
            break
        time.sleep(0.1)
    raise AssertionError(f"{n} steps not written in {timeout:.0f}s (state {status(run).get('state')!r}); "
                         f"worker.log:\n{worker_log(run)}")

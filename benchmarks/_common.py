"""Shared bits for benchmarks: tiny-but-real recipes and reading numbers back from a run's events."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from vittui.recipe import Recipe, load_preset
from vittui.runs import events as ev


def demo_recipe(**overrides) -> Recipe:
    r = load_preset("demo-digits")
    return r.with_overrides(overrides) if overrides else r


def step_events(run_path: Path) -> list[ev.Step]:
    return [e for e in ev.read_all(Path(run_path) / "events.jsonl") if isinstance(e, ev.Step)]


def images_per_s(run_path: Path, skip: int = 5) -> float:
    """Images per second over the steady part of a run: total images / total step time, first steps dropped."""
    steps = step_events(run_path)[skip:]
    if not steps:
        return float("nan")
    return sum(s.images_per_s * s.step_time for s in steps) / sum(s.step_time for s in steps)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def wait_for(pred, timeout=300.0, interval=0.02):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise TimeoutError("condition not met in time")


def cpu_seconds(pid: int | str) -> float:
    """user+sys CPU seconds of a process (all its threads), from /proc; NaN once it is gone."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


def load_note() -> str:
    la = os.getloadavg()
    return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} cores"

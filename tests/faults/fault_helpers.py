"""Helpers for the fault suite: tiny recipes, the real `vittui` command, waiting on the run directory."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from vittui.runs import events as ev

# The e2e tiny model (tests/e2e/conftest.py TINY_E2E), with a step budget large enough that a run
# never finishes by itself while a test drives it.
TINY_PROCESS = [
    "model.name=vit_tiny_patch16_224", "model.source=timm", "model.img_size=16", "model.patch_size=4",
    "model.depth=2", "model.embed_dim=32", "model.num_heads=2",
    "data.source=digits", "data.batch_size=32", "data.limit=256",
    "augment.hflip=0.0", "augment.crop_scale=[0.8, 1.0]", "augment.interpolation=bilinear",
    "schedule.epochs=400", "schedule.warmup_epochs=0", "compute.threads=1", "run.checkpoint_every=10",
    "run.keep_last=2",
]

# An in-process model for data and permission faults: one block, a few steps.
TINY_INPROC = [
    "model.name=vit_tiny_patch16_224", "model.source=timm", "model.img_size=16", "model.patch_size=4",
    "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
    "augment.hflip=0.0", "augment.crop_scale=[0.8, 1.0]", "augment.interpolation=bilinear",
    "schedule.warmup_epochs=0", "regularize.drop_path=0.0", "compute.threads=1", "run.seed=1",
]


def vittui_cmd() -> list[str]:
    exe = shutil.which("vittui")
    return [exe] if exe else [sys.executable, "-m", "vittui.cli"]


def wait_for(pred, timeout: float = 90.0, interval: float = 0.02, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError(f"{what} not met in {timeout:.0f}s")


def status(run: Path) -> dict:
    try:
        return json.loads((run / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def events(run: Path) -> list[ev.Event]:
    return ev.read_all(run / "events.jsonl")


def step_numbers(evs: list[ev.Event]) -> list[int]:
    return [e.step for e in evs if isinstance(e, ev.Step)]

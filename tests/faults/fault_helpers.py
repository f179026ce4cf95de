"""Helpers for the fault suite: tiny recipes, the real `vittui` command, waiting on the run directory."""

from __future__ import annotations

from tiny import TINY_AUGMENT, TINY_MODEL, TINY_PROCESS, events, status, step_numbers, vittui_cmd, wait_for  # noqa: F401 (re-exported)

# An in-process model for data and permission faults: one block, a few steps.
TINY_INPROC = TINY_MODEL + TINY_AUGMENT + [
    "model.depth=1", "schedule.warmup_epochs=0", "regularize.drop_path=0.0", "compute.threads=1", "run.seed=1",
]

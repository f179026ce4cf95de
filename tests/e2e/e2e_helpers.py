"""Helpers for end-to-end tests that drive the real `vittui` command."""

import json
import shutil
import sys
import time
from pathlib import Path


def vittui_cmd() -> list[str]:
    exe = shutil.which("vittui")
    return [exe] if exe else [sys.executable, "-m", "vittui.cli"]


def wait_for(pred, timeout=90.0, interval=0.05):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def status(run: Path) -> dict:
    try:
        return json.loads((run / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}

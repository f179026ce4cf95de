"""Run a `vittui … --json` command as a subprocess from a thread worker: how the dashboard asks for anything
that needs torch (pre-flight, the LR range test) without importing it. The caller's worker is polled for
cancellation, so a screen that goes away (or a newer request, with exclusive workers) kills the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from vittui import recipe as R


@dataclass
class CliResult:
    """The command's exit status, its stdout parsed as JSON (None when it printed none), and `error`: one
    line saying what went wrong (the last line of stderr, a timeout, a cancellation), empty when nothing did."""

    rc: int
    data: Any = None
    error: str = ""


def cli_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "vittui.cli", *args]


def run_cli_json(args: list[str], runs_root: Path, *, timeout: float,
                 cancelled: Callable[[], bool] = lambda: False) -> CliResult:
    """`vittui ARGS` with VITTUI_RUNS=runs_root; polled every 0.1 s for `cancelled` and the timeout."""
    env = {**os.environ, "VITTUI_RUNS": str(runs_root)}
    try:
        proc = subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, stdin=subprocess.DEVNULL)
    except OSError as e:
        return CliResult(-1, error=f"could not run vittui: {e}")
    end = time.monotonic() + timeout
    while True:
        try:
            out, err = proc.communicate(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            if cancelled() or time.monotonic() > end:
                proc.kill()
                proc.communicate()
                return CliResult(-1, error="cancelled" if cancelled() else f"no answer in {timeout:.0f} s")
    lines = [line for line in err.splitlines() if line.strip()]
    try:
        data = json.loads(out) if out.strip() else None
    except ValueError:
        data = None
    error = "" if proc.returncode == 0 else (lines[-1] if lines else f"exited with {proc.returncode}")
    return CliResult(proc.returncode, data, error)


def run_on_recipe(command: str, recipe: R.Recipe, runs_root: Path, *, timeout: float,
                  cancelled: Callable[[], bool] = lambda: False) -> CliResult:
    """`vittui COMMAND RECIPE.toml --json` on the editor's recipe, written to a temporary file first."""
    with tempfile.TemporaryDirectory(prefix="vittui-") as tmp:
        path = Path(tmp) / "recipe.toml"
        try:
            R.save(recipe, path)
        except OSError as e:
            return CliResult(-1, error=f"could not write the recipe: {e}")
        return run_cli_json([command, str(path), "--json"], runs_root, timeout=timeout, cancelled=cancelled)

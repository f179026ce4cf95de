"""Run a `vittui … --json` command as a subprocess from a thread worker: how the dashboard asks for anything
that needs torch (pre-flight, the LR range test) without importing it. The caller's worker is polled for
cancellation, so a screen that goes away (or a newer request, with exclusive workers) kills the process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
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
                 cancelled: Callable[[], bool] = lambda: False,
                 on_line: Callable[[str], None] | None = None) -> CliResult:
    """`vittui ARGS` with VITTUI_RUNS=runs_root; polled every 0.1 s for `cancelled` and the timeout.
    `on_line` gets each stderr line as it comes (the command's progress), from a reader thread."""
    env = {**os.environ, "VITTUI_RUNS": str(runs_root)}
    try:
        proc = subprocess.Popen(cli_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env, stdin=subprocess.DEVNULL, bufsize=1)
    except OSError as e:
        return CliResult(-1, error=f"could not run vittui: {e}")
    out: list[str] = []
    err: list[str] = []

    def read_err() -> None:
        for line in proc.stderr:
            err.append(line)
            if on_line is not None and line.strip():
                on_line(line.rstrip("\n"))

    readers = [threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True),
               threading.Thread(target=read_err, daemon=True)]
    for r in readers:
        r.start()
    end = time.monotonic() + timeout
    while True:
        try:
            proc.wait(timeout=0.1)
            break
        except subprocess.TimeoutExpired:
            if cancelled() or time.monotonic() > end:
                proc.kill()
                proc.wait()
                return CliResult(-1, error="cancelled" if cancelled() else f"no answer in {timeout:.0f} s")
    for r in readers:
        r.join(timeout=5)
    text = "".join(out)
    lines = [line for line in "".join(err).splitlines() if line.strip()]
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = None
    error = "" if proc.returncode == 0 else (lines[-1] if lines else f"exited with {proc.returncode}")
    return CliResult(proc.returncode, data, error)


def run_on_recipe(command: str, recipe: R.Recipe, runs_root: Path, *, timeout: float,
                  cancelled: Callable[[], bool] = lambda: False,
                  on_line: Callable[[str], None] | None = None) -> CliResult:
    """`vittui COMMAND RECIPE.toml --json` on the editor's recipe, written to a temporary file first."""
    with tempfile.TemporaryDirectory(prefix="vittui-") as tmp:
        path = Path(tmp) / "recipe.toml"
        try:
            R.save(recipe, path)
        except OSError as e:
            return CliResult(-1, error=f"could not write the recipe: {e}")
        return run_cli_json([command, str(path), "--json"], runs_root, timeout=timeout, cancelled=cancelled,
                            on_line=on_line)

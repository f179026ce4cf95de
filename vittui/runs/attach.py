"""`vittui attach RUN` without the dashboard: the run's history, then a live progress line.

Keys (when stdin is a terminal): p pause · r resume · s stop · c checkpoint · e eval · q detach.
Leaving never touches the run; it goes on training."""

from __future__ import annotations

import os
import select
import sys
import time

from vittui.runs import control
from vittui.runs.events import EventTail, replay_stride
from vittui.runs.progress import Progress
from vittui.runs.registry import run_state
from vittui.runs.store import RunDir

KEYS = {"p": "pause", "r": "resume", "s": "stop", "c": "checkpoint", "e": "eval"}
DONE = ("finished", "stopped", "suspended", "failed", "lost")


def attach_headless(run: RunDir, out=sys.stdout, inp=sys.stdin, poll: float = 0.2) -> int:
    tail = EventTail(run.events_path)
    prog = Progress()
    prog.feed_all(tail.poll(step_stride=replay_stride(tail)))  # a long run's steps sampled, as the dashboard does
    history = prog.take_lines()
    out.write(f"run {run.name}: {run_state(run)}, step {prog.step}/{prog.total_steps or '?'}, "
              f"{len(history)} notable events\n")
    for line in history[-20:]:
        out.write("  " + line + "\n")
    out.write(prog.line() + "\n")
    tty = hasattr(inp, "isatty") and inp.isatty()
    if tty:
        out.write("keys: p pause · r resume · s stop · c checkpoint · e eval · q detach\n")
    out.flush()
    old = _cbreak(inp) if tty else None
    try:
        while True:
            prog.feed_all(tail.poll())
            for line in prog.take_lines():
                out.write("\r\033[K" + line + "\n" if tty else line + "\n")
            out.write(("\r\033[K" + prog.line()) if tty else "")
            out.flush()
            state = run_state(run)
            if state in DONE:
                out.write(("\n" if tty else "") + f"run {run.name} is {state}\n")
                return 0 if state in ("finished", "stopped", "suspended") else 1
            if tty and select.select([inp], [], [], poll)[0]:
                key = os.read(inp.fileno(), 1).decode(errors="ignore").lower()
                if key == "q":
                    out.write(f"\ndetached; {run.name} keeps going\n")
                    return 0
                if key in KEYS:
                    control.send(run.path, KEYS[key])
            elif not tty:
                time.sleep(poll)
    except KeyboardInterrupt:
        out.write(f"\ndetached; {run.name} keeps going\n")
        return 0
    finally:
        if old is not None:
            import termios

            termios.tcsetattr(inp.fileno(), termios.TCSADRAIN, old)


def _cbreak(inp):
    import termios
    import tty

    old = termios.tcgetattr(inp.fileno())
    tty.setcbreak(inp.fileno())
    return old

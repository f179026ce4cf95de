"""Control commands: any process appends one JSON line to `commands.jsonl`; the worker reads them
between steps and acknowledges each in `events.jsonl` with the step at which it took effect.

A file rather than a socket: no port is opened, permissions are the file's, and a command sent while
the worker is restarting is still there when it comes back (it resumes reading after the last
acknowledged id)."""

from __future__ import annotations

import json
import math
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vittui.runs.store import RunDir

COMMANDS = ("pause", "resume", "stop", "suspend", "checkpoint", "eval", "set")
KNOBS = ("lr_multiplier", "eval_every", "probe_every")
# names a knob had before: commands written with them (old scripts, an old commands.jsonl) still read
OLD_KNOB_NAMES = {"lr_scale": "lr_multiplier"}
INT_KNOBS = ("eval_every", "probe_every")  # in steps; 0 turns the thing off


@dataclass
class Command:
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    t: float = field(default_factory=time.time)
    sender: int = field(default_factory=os.getpid)


def knob_name(key: str) -> str:
    """The one name of a knob (`lr_multiplier`), whichever name a command used for it."""
    return OLD_KNOB_NAMES.get(key, key)


def check_knob(key: str, value: Any) -> None:
    """ValueError naming the knob unless `value` is one it can take: the lr multiplier a finite number
    > 0 (0 would stop learning without saying so), the intervals whole numbers of steps >= 0."""
    name = knob_name(key)
    if name not in KNOBS:
        raise ValueError(f"unknown knob {key!r} (known: {', '.join(KNOBS)})")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number (got {value!r})")
    if name in INT_KNOBS and (value < 0 or value != int(value)):
        raise ValueError(f"{name} must be a whole number of steps >= 0, 0 for off (got {value!r})")
    if name not in INT_KNOBS and value <= 0:
        raise ValueError(f"{name} must be > 0 (got {value!r})")


def parse_knob(key: str, text: str) -> float | int:
    """A knob's value typed by a person ("0.5", "1e-1", "200"), checked as `check_knob` does."""
    name = knob_name(key)
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{name} must be a number (got {text.strip()!r})") from None
    check_knob(name, value)
    return int(value) if name in INT_KNOBS else value


def validate(command: str, args: dict[str, Any] | None = None) -> None:
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r} (known: {', '.join(COMMANDS)})")
    if command in ("set", "resume"):  # resume may carry knobs too (`ctl RUN resume --lr-multiplier 0.5`)
        for key, value in (args or {}).items():
            check_knob(key, value)


def _canonical(args: dict[str, Any]) -> dict[str, Any]:
    return {knob_name(k): v for k, v in args.items()}


def send(run_path: str | Path, command: str, **args: Any) -> Command:
    """Append one command; a single O_APPEND write, so concurrent senders never interleave. Knobs are
    written under their one name (`lr_multiplier`, also when given as the old `lr_scale`)."""
    validate(command, args)
    cmd = Command(command, _canonical(args))
    path = RunDir(run_path).commands_path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, (json.dumps(asdict(cmd)) + "\n").encode())
    finally:
        os.close(fd)
    return cmd


class CommandReader:
    """The worker's side: new commands since the last poll, skipping a torn trailing line."""

    def __init__(self, path: str | Path, skip_ids: set[str] | None = None):
        self.path = Path(path)
        self.offset = 0
        self.skip = set(skip_ids or ())

    def skip_existing(self) -> None:
        """Start after everything already in the file (a fresh run ignores stale commands)."""
        try:
            self.offset = self.path.stat().st_size
        except FileNotFoundError:
            self.offset = 0

    def poll(self) -> list[Command]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n")
        if end < 0:
            return []
        self.offset += end + 1
        out = []
        for raw in data[: end + 1].splitlines():
            try:
                d = json.loads(raw)
                cmd = Command(**d)
                validate(cmd.command, cmd.args)
            except (ValueError, TypeError):
                continue
            if cmd.id not in self.skip:
                out.append(cmd)
        return out


class InProcessControl:
    """The same interface as CommandReader for a loop driven inside one process (tests, notebooks)."""

    def __init__(self) -> None:
        self.pending: list[Command] = []

    def send(self, command: str, **args: Any) -> Command:
        validate(command, args)
        cmd = Command(command, _canonical(args))
        self.pending.append(cmd)
        return cmd

    def poll(self) -> list[Command]:
        out, self.pending = self.pending, []
        return out

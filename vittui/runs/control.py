"""Control commands: any process appends one JSON line to `commands.jsonl`; the worker reads them
between steps and acknowledges each in `events.jsonl` with the step at which it took effect.

A file rather than a socket: no port is opened, permissions are the file's, and a command sent while
the worker is restarting is still there when it comes back (it resumes reading after the last
acknowledged id)."""

from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vittui.runs.store import RunDir

COMMANDS = ("pause", "resume", "stop", "suspend", "checkpoint", "eval", "set")
KNOBS = ("lr_scale", "eval_every", "probe_every")


@dataclass
class Command:
    command: str
    args: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    t: float = field(default_factory=time.time)
    sender: int = field(default_factory=os.getpid)


def validate(command: str, args: dict[str, Any] | None = None) -> None:
    if command not in COMMANDS:
        raise ValueError(f"unknown command {command!r} (known: {', '.join(COMMANDS)})")
    for key, value in (args or {}).items():
        if command == "set" and key not in KNOBS:
            raise ValueError(f"unknown knob {key!r} (known: {', '.join(KNOBS)})")
        if command == "set" and (not isinstance(value, (int, float)) or value < 0):
            raise ValueError(f"{key} must be a number >= 0 (got {value!r})")


def send(run_path: str | Path, command: str, **args: Any) -> Command:
    """Append one command; a single O_APPEND write, so concurrent senders never interleave."""
    validate(command, args)
    cmd = Command(command, args)
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
        cmd = Command(command, args)
        self.pending.append(cmd)
        return cmd

    def poll(self) -> list[Command]:
        out, self.pending = self.pending, []
        return out

"""The loop's control point: between optimizer steps it reads commands and acts on them.

Pause blocks here, at a step boundary, holding everything needed to resume (model, optimizer,
loaders); resume returns to the loop, which continues the same step sequence. With several
processes rank 0 reads the commands and broadcasts them, so every rank pauses at the same step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from vittui.runs.control import Command


class CommandSource(Protocol):
    def poll(self) -> list[Command]: ...


@dataclass
class Knobs:
    lr_scale: float = 1.0
    eval_every: int = 0
    probe_every: int = 0


@dataclass
class ControlPoint:
    source: CommandSource | None = None
    # wired by the loop: it owns the events, the state and what a checkpoint or an eval means
    ack: Callable[[Command, int, bool, str], None] = lambda cmd, step, ok, detail: None
    set_state: Callable[[str, str], None] = lambda state, reason: None
    do_checkpoint: Callable[[], None] = lambda: None
    do_eval: Callable[[], None] = lambda: None
    emergency_checkpoint: Callable[[], None] = lambda: None  # after a fault, at the last step boundary
    knobs: Knobs = field(default_factory=Knobs)
    broadcast: Callable[[list[Command]], list[Command]] | None = None
    poll_interval: float = 0.05
    paused: bool = False
    stop_requested: bool = False
    stop_now: bool = False  # a second interrupt: leave without a checkpoint
    pause_reason: str = ""

    def _poll(self) -> list[Command]:
        cmds = self.source.poll() if self.source is not None else []
        if self.broadcast is None:
            return cmds
        if self.stop_requested:  # a signal reached rank 0 only: every rank must stop at this step
            cmds = cmds + [Command("stop", id="signal")]
        return self.broadcast(cmds)

    def request_stop(self) -> None:
        """From a signal handler: the loop stops (after a checkpoint) at the next step boundary."""
        if self.stop_requested:
            self.stop_now = True
        self.stop_requested = True

    def pause(self, reason: str) -> None:
        self.paused = True
        self.pause_reason = reason

    def __call__(self, step: int) -> bool:
        """Handle pending commands; block while paused. Returns True when the loop should stop."""
        self._handle(self._poll(), step)
        if self.paused and not self.stop_requested:
            self.set_state("paused", self.pause_reason)
            while self.paused and not self.stop_requested:
                time.sleep(self.poll_interval)
                self._handle(self._poll(), step)
            if not self.stop_requested:
                self.set_state("running", "resumed")
        return self.stop_requested

    def _handle(self, cmds: list[Command], step: int) -> None:
        for cmd in cmds:
            ok, detail = True, ""
            if cmd.command == "pause":
                ok = not self.paused
                detail = "" if ok else "already paused"
                self.pause("paused by user")
            elif cmd.command == "resume":
                ok = self.paused
                detail = "" if ok else "not paused"
                self._apply_knobs(cmd.args)
                self.paused = False
            elif cmd.command == "stop":
                self.stop_requested = True
            elif cmd.command == "checkpoint":
                self.do_checkpoint()
            elif cmd.command == "eval":
                self.do_eval()
            elif cmd.command == "set":
                detail = self._apply_knobs(cmd.args)
            self.ack(cmd, step, ok, detail)

    def _apply_knobs(self, args: dict) -> str:
        changed = []
        for key, value in args.items():
            if hasattr(self.knobs, key):
                cast = type(getattr(self.knobs, key))
                setattr(self.knobs, key, cast(value))
                changed.append(f"{key}={cast(value)}")
        return ", ".join(changed)

"""The loop's control point: between optimizer steps it reads commands and acts on them.

Pause blocks here, at a step boundary, holding everything needed to resume (model, optimizer,
loaders); resume returns to the loop, which continues the same step sequence. Suspend ends the loop
like stop (a checkpoint at this step boundary) and the run ends `suspended`: the worker exits, its
memory is freed, and `vittui ctl RUN resume` starts a new worker from that checkpoint. With several
processes rank 0 reads the commands and broadcasts them, so every rank pauses at the same step.
The loop builds it with its actions (acknowledge, set the state, checkpoint, evaluate); a signal
handler reaches it only through the `StopRequest` it was given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Protocol

from vittui.runs.control import Command, knob_name


class CommandSource(Protocol):
    def poll(self) -> list[Command]: ...


@dataclass
class Knobs:
    lr_multiplier: float = 1.0  # the user's live multiplier on the scheduled lr (not timm's per-group lr_scale)
    eval_every: int = 0
    probe_every: int = 0


@dataclass
class StopRequest:
    """Set from a signal handler: the loop stops (after a checkpoint) at the next step boundary; asked
    twice, it stops without one. `suspend(reason)` (SIGUSR1: Slurm's warning before a job's time limit)
    stops the same way but the run ends `suspended`, to be continued by the next job."""

    requested: bool = False
    now: bool = False
    suspend_reason: str = ""

    def __call__(self) -> None:
        if self.requested:
            self.now = True
        self.requested = True

    def suspend(self, reason: str) -> None:
        self.suspend_reason = reason
        self.requested = True


def _nothing(*_args) -> None:
    return None


@dataclass
class ControlPoint:
    source: CommandSource | None = None
    stop: StopRequest = field(default_factory=StopRequest)
    # the loop's actions: it owns the events, the state and what a checkpoint or an eval means
    # ack(command, step, ok, detail, changes): changes is knob -> [old, new] for what the command changed
    ack: Callable[[Command, int, bool, str, dict[str, list[float]]], None] = _nothing
    set_state: Callable[[str, str], None] = _nothing
    checkpoint: Callable[[], None] = _nothing
    eval: Callable[[], None] = _nothing
    broadcast: Callable[[list[Command]], list[Command]] | None = None  # several processes: rank 0's commands
    knobs: Knobs = field(default_factory=Knobs)
    poll_interval: float = 0.05
    paused: bool = False
    pause_reason: str = ""
    suspended: bool = False  # the loop stops as for `stop`; the run ends `suspended`, not `stopped`
    suspend_reason: str = ""  # who asked and why (the queue's scheduler: "paused N min while runs wait")

    def _poll(self) -> list[Command]:
        cmds = self.source.poll() if self.source is not None else []
        if self.broadcast is None:
            return cmds
        if self.stop.suspend_reason:  # every rank suspends at this step (Slurm signals each of them)
            cmds = cmds + [Command("suspend", id="signal", args={"reason": self.stop.suspend_reason})]
        elif self.stop.requested:  # a signal reached rank 0 only: every rank must stop at this step
            cmds = cmds + [Command("stop", id="signal")]
        return self.broadcast(cmds)

    def pause(self, reason: str) -> None:
        self.paused = True
        self.pause_reason = reason

    def __call__(self, step: int) -> bool:
        """Handle pending commands; block while paused. Returns True when the loop should stop."""
        self._handle(self._poll(), step)
        if self.paused and not self.stop.requested:
            self.set_state("paused", self.pause_reason)
            while self.paused and not self.stop.requested:
                time.sleep(self.poll_interval)
                self._handle(self._poll(), step)
            if not self.stop.requested:
                self.set_state("running", "resumed")
        if self.stop.suspend_reason and not self.suspended:  # SIGUSR1 in a single process, or while paused
            self.suspended, self.suspend_reason = True, self.stop.suspend_reason
        return self.stop.requested

    def _handle(self, cmds: list[Command], step: int) -> None:
        for cmd in cmds:
            ok, detail, changes = True, "", {}
            if cmd.command == "pause":
                ok = not self.paused
                detail = "" if ok else "already paused"
                self.pause("paused by user")
            elif cmd.command == "resume":
                ok = self.paused
                detail = "" if ok else "not paused"
                changes = self._apply_knobs(cmd.args)
                self.paused = False
            elif cmd.command == "stop":
                self.stop.requested = True
            elif cmd.command == "suspend":
                self.suspended = True
                self.suspend_reason = str(cmd.args.get("reason", "") or "")
                detail = self.suspend_reason
                self.stop.requested = True
            elif cmd.command == "checkpoint":
                self.checkpoint()
            elif cmd.command == "eval":
                self.eval()
            elif cmd.command == "set":
                changes = self._apply_knobs(cmd.args)
            if changes:
                detail = ", ".join(filter(None, [detail, *(f"{k} {o:g} -> {n:g}" for k, (o, n) in changes.items())]))
            self.ack(cmd, step, ok, detail, changes)

    def _apply_knobs(self, args: dict) -> dict[str, list[float]]:
        """Set the knobs `args` names (old names too: `lr_scale`); knob -> [old, new] for each one set."""
        changes = {}
        for key, value in args.items():
            name = knob_name(key)
            if hasattr(self.knobs, name):
                old = getattr(self.knobs, name)
                setattr(self.knobs, name, type(old)(value))
                changes[name] = [old, getattr(self.knobs, name)]
        return changes

"""Messages that cross from thread workers to the event loop (and from widgets up to screens)."""

from __future__ import annotations

from textual.message import Message

from vittui.hardware import GpuSnapshot, HostSnapshot
from vittui.runs.events import Event
from vittui.runs.store import RunStatus


class EventsArrived(Message):
    """A batch of events tailed from events.jsonl; `initial` marks the history read on attach.

    Never replaced: the plots need every point."""

    def __init__(self, events: list[Event], initial: bool = False) -> None:
        super().__init__()
        self.events = events
        self.initial = initial


class RunStateChanged(Message):
    """The run's state (launcher.run_state) and status.json; only the latest matters."""

    def __init__(self, state: str, status: RunStatus | None) -> None:
        super().__init__()
        self.state = state
        self.status = status

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RunStateChanged)


class HardwareSampled(Message):
    """One GPU + host reading; high rate and only the latest is drawn."""

    def __init__(self, gpus: list[GpuSnapshot], host: HostSnapshot, available: bool, reason: str) -> None:
        super().__init__()
        self.gpus = gpus
        self.host = host
        self.available = available
        self.reason = reason

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, HardwareSampled)


class WorkerFailed(Message):
    """A thread worker hit an error: shown on screen, never a dead app."""

    def __init__(self, where: str, error: str) -> None:
        super().__init__()
        self.where = where
        self.error = error


class ProbeLoaded(Message):
    """An attention probe file read (and its rollout computed) by a thread worker; `probe` is a
    `vittui.ui.probeview.LoadedProbe`, or None with `error` set."""

    def __init__(self, path: str, probe: object | None, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.probe = probe
        self.error = error

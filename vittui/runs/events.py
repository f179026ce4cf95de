"""Typed events and their JSON-lines codec.

One event a line, appended and flushed by the worker, so that any reader in any process sees the
run's whole history and can rebuild every plot from it. Readers skip a torn trailing line (a worker
killed mid-write) and pick it up once it is complete.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Iterator


@dataclass
class Event:
    kind: ClassVar[str] = "event"
    t: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> str:
        d = asdict(self)
        d["type"] = self.kind
        return json.dumps(d, separators=(",", ":"), allow_nan=True)


@dataclass
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    name: str
    model: str
    params_total: int
    params_trainable: int
    num_classes: int
    classes: list[str]
    train_size: int
    val_size: int
    steps_per_epoch: int
    total_steps: int
    device: str
    resumed_from_step: int = 0


@dataclass
class Step(Event):
    kind: ClassVar[str] = "step"
    step: int
    epoch: float
    loss: float
    lr: float
    grad_norm: float
    images_per_s: float
    data_time: float
    step_time: float
    torch_allocated: int = 0  # bytes, CUDA only
    torch_reserved: int = 0


@dataclass
class Eval(Event):
    kind: ClassVar[str] = "eval"
    step: int
    epoch: float
    loss: float
    top1: float
    top5: float
    ema_top1: float | None = None


@dataclass
class Log(Event):
    kind: ClassVar[str] = "log"
    level: str  # info | warning | error
    message: str
    step: int = 0


@dataclass
class DataSkipped(Event):
    kind: ClassVar[str] = "data_skipped"
    count: int  # total unreadable images skipped so far
    examples: list[str] = field(default_factory=list)


@dataclass
class Status(Event):
    kind: ClassVar[str] = "status"
    state: str
    step: int
    reason: str = ""


@dataclass
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint"
    step: int
    path: str
    best: bool = False
    metric: float | None = None


@dataclass
class ControlAck(Event):
    kind: ClassVar[str] = "control_ack"
    command: str
    id: str
    step: int
    ok: bool = True
    detail: str = ""
    # the knobs the command changed, by their one name: knob -> [old, new] (a `set`, a `resume` with knobs);
    # they apply from the step after `step`. Older logs have none (their `detail` says "lr_scale=0.5").
    changes: dict[str, list[float]] = field(default_factory=dict)


@dataclass
class Fault(Event):
    kind: ClassVar[str] = "fault"
    fault: str  # nan | spike | divergence (rewinds used up) | oom | exception
    step: int
    message: str
    quantity: str = ""
    suggestion: str = ""


@dataclass
class AttentionProbe(Event):
    kind: ClassVar[str] = "attention"
    step: int
    path: str  # relative to the run directory
    entropy: list[list[float]] = field(default_factory=list)  # [layer][head], normalised
    distance: list[list[float]] = field(default_factory=list)  # [layer][head], pixels
    diversity: list[float] = field(default_factory=list)  # [layer]
    flags: list[str] = field(default_factory=list)
    query: str = "cls"  # the map's query: "cls" or "patch_mean" (no CLS token; see attention_stats.QUERY_LABELS)


@dataclass
class GradFlow(Event):
    kind: ClassVar[str] = "grad_flow"
    step: int
    names: list[str]
    attn: list[float]
    mlp: list[float]
    other: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    measured: str = ""  # when the norms were read: "before clipping", "after clipping to max norm 1", ...


@dataclass
class Rewound(Event):
    """The divergence guard (`run.on_divergence = "rewind"`) reloaded the checkpoint at `to_step` after the
    loss diverged at `step`, and the lr multiplier became `lr_multiplier`. The steps after `to_step` are
    redone: a reader's history drops what was logged after `to_step` (runs/history.py), as for a resume."""

    kind: ClassVar[str] = "rewound"
    step: int
    to_step: int
    lr_multiplier: float
    reason: str = ""


@dataclass
class Finished(Event):
    kind: ClassVar[str] = "finished"
    step: int
    best_top1: float | None
    wall_time: float


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (RunStarted, Step, Eval, Log, DataSkipped, Status, CheckpointSaved, ControlAck, Fault,
                AttentionProbe, GradFlow, Rewound, Finished)
}


try:  # orjson parses a line about six times faster; re-attaching to a long run is mostly parsing
    from orjson import loads as _loads
except ImportError:  # pragma: no cover - orjson is a dependency, but readers must not depend on it
    _loads = json.loads

# every field name of each event type, with "type" (the codec's tag): a line carrying exactly these
# keys (what our writer writes) is turned into an event without going through __init__
_KEYS = {cls: frozenset(f.name for f in fields(cls)) | {"type"} for cls in EVENT_TYPES.values()}


def decode(line: str | bytes) -> Event | None:
    """One line to a typed event; unknown types and malformed lines give None (old readers, new writers)."""
    try:
        d = _loads(line)
    except ValueError:
        try:  # NaN / Infinity (an fp16 step whose gradients overflowed): valid for json, refused by orjson
            d = json.loads(line)
        except ValueError:
            return None
    if not isinstance(d, dict):
        return None
    cls = EVENT_TYPES.get(d.get("type"))  # type: ignore[arg-type]
    if cls is None:
        return None
    if d.keys() == _KEYS[cls]:
        del d["type"]
        event = object.__new__(cls)
        event.__dict__ = d
        return event
    names = _KEYS[cls]
    try:
        return cls(**{k: v for k, v in d.items() if k in names and k != "type"})
    except TypeError:
        return None


class EventWriter:
    """Appends whole lines with one write each and flushes, so readers never see half an event
    except when the process dies inside write(); readers tolerate that."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._f = os.fdopen(fd, "a", encoding="utf-8")
        # A worker killed mid-line leaves a torn tail; start on a fresh line so our first event parses.
        if self.path.stat().st_size > 0:
            with open(self.path, "rb") as r:
                r.seek(-1, os.SEEK_END)
                if r.read(1) != b"\n":
                    self._f.write("\n")
                    self._f.flush()

    def write(self, event: Event) -> None:
        self._f.write(event.to_json() + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


_STEP_TAIL = b',"type":"step"}'  # how every Step line our writer writes ends ("type" is the last key)
STEP_LINE_BYTES = 280  # about what one Step line takes; sizes a replay's sampling stride


class EventTail:
    """Incremental reader: `poll()` returns the events appended since the last call.

    Keeps a byte offset and holds back an incomplete last line; memory is bounded by one read chunk,
    never by the length of the history.

    `step_stride=k` decodes one Step line in k (and always the one just before any other event, and
    the last one read), recognising Step lines by their ending without parsing them. Parsing is what
    re-attaching to a long run costs — about 3 µs a line, 3 s for a million steps on a slow core — and
    a plot of a million steps draws a few hundred points; evals, probes, logs and every other event are
    still read in full. Like TensorBoard's scalar sampling, but deterministic."""

    def __init__(self, path: str | Path, chunk: int = 1 << 20):
        self.path = Path(path)
        self.offset = 0
        self.chunk = chunk
        self._partial = b""
        self._steps_seen = 0
        self.steps_skipped = 0

    def remaining_bytes(self) -> int:
        try:
            return max(0, self.path.stat().st_size - self.offset)
        except FileNotFoundError:
            return 0

    def poll(self, max_bytes: int | None = None, *, step_stride: int = 1) -> list[Event]:
        out: list[Event] = []
        held: bytes | None = None  # the latest Step line not decoded (yet)
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return out
        with f:
            f.seek(self.offset)
            budget = max_bytes
            while True:
                data = f.read(self.chunk if budget is None else min(self.chunk, budget))
                if not data:
                    break
                self.offset += len(data)
                if budget is not None:
                    budget -= len(data)
                buf = self._partial + data
                lines = buf.split(b"\n")
                self._partial = lines.pop()
                for raw in lines:
                    if step_stride > 1 and raw.endswith(_STEP_TAIL):
                        self._steps_seen += 1
                        if self._steps_seen % step_stride:
                            if held is not None:
                                self.steps_skipped += 1
                            held = raw
                            continue
                    elif held is not None:  # the step just before an eval, a probe, a log: exact
                        _append(out, held)
                        held = None
                    if held is not None:
                        self.steps_skipped += 1
                        held = None
                    if raw.strip():
                        _append(out, raw)
                if budget is not None and budget <= 0:
                    break
        if held is not None:
            _append(out, held)
        return out


def _append(out: list[Event], raw: bytes) -> None:
    ev = decode(raw)
    if ev is not None:
        out.append(ev)


REPLAY_STEPS = 50_000  # Step events decoded when re-attaching, about: a plot draws a few hundred points


def replay_stride(tail: EventTail, steps: int = REPLAY_STEPS) -> int:
    """The step stride that leaves about `steps` Step events to decode in what `tail` has left to read."""
    return max(1, tail.remaining_bytes() // (steps * STEP_LINE_BYTES))


def read_all(path: str | Path) -> list[Event]:
    return EventTail(path).poll()


def iter_events(path: str | Path) -> Iterator[Event]:
    tail = EventTail(path)
    yield from tail.poll()


def event_dict(event: Event) -> dict[str, Any]:
    d = asdict(event)
    d["type"] = event.kind
    return d


# ---- the log line that says attention probing switched off (the pane shows its reason) ----

PROBE_OFF_PREFIX = "attention probe off: "  # the run's log line when probing switches off; the pane shows it


def probe_off_message(error: BaseException | str) -> str:
    """The one log line that says why attention probing switched off for the rest of the run, e.g.
    "attention probe off: not available for windowed attention (SwinTransformer): ...". The dashboard
    finds it by `PROBE_OFF_PREFIX` and shows the reason in the attention pane."""
    if isinstance(error, BaseException):
        why = str(error) if getattr(error, "plain", False) else f"{type(error).__name__}: {error}"
    else:
        why = str(error)
    return PROBE_OFF_PREFIX + why


"""Messages: how a thread worker hands its result to the event loop (every worker ends in `post_message`
of one of these; no worker calls into the event loop any other way), and how a screen tells the app what
it chose.

Dataclasses (Textual's `Message.__post_init__` is there for them). The types that need numpy or the
planner are imported for annotations only: the setup screen imports this module before its first frame."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from vittui.analysis.metrics import EvalReport
    from vittui.runs.compare import Comparison
    from vittui.hardware import GpuSnapshot, HostSnapshot
    from vittui.planning.memory import MemoryEstimate
    from vittui.recipe import Recipe
    from vittui.runs.events import Event
    from vittui.runs.store import RunDir, RunStatus
    from vittui.ui.probeview import LoadedProbe
    from vittui.runs.registry import RunSummary
    from vittui.sweep.status import StudyReport


class Latest(Message):
    """A message of which only the newest matters: one still queued is replaced by the next."""

    def can_replace(self, message: Message) -> bool:
        return type(message) is type(self)


# --- errors --------------------------------------------------------------------------------------
@dataclass
class WorkerFailed(Message):
    """A thread worker raised (`where` is the worker's name): shown on screen, never a dead app."""

    where: str
    error: str


# --- the monitor's workers -----------------------------------------------------------------------
@dataclass
class EventsArrived(Message):
    """A batch of events tailed from events.jsonl; `initial` marks the history read on attach.

    Never replaced: the plots need every point."""

    events: list[Event]
    initial: bool = False


@dataclass
class RunStateChanged(Latest):
    """The run's state (runs.registry.run_state) and status.json."""

    state: str
    status: RunStatus | None


@dataclass
class HardwareSampled(Latest):
    """One GPU + host reading; high rate and only the latest is drawn."""

    gpus: list[GpuSnapshot]
    host: HostSnapshot
    available: bool
    reason: str


@dataclass
class ProbeLoaded(Message):
    """An attention probe file read (and its rollout computed) off the event loop, or `error` why not."""

    path: str
    probe: LoadedProbe | None
    error: str = ""


# --- setup and monitor ---------------------------------------------------------------------------
@dataclass
class MemoryEstimated(Latest):
    """The planner's estimate for a recipe, or `error` when it cannot size it."""

    estimate: MemoryEstimate | None
    error: str = ""


@dataclass
class RunLaunched(Message):
    """The launcher started a worker for the setup screen's recipe."""

    run: RunDir
    queued: bool = False  # enqueued (the setup screen's queue action), not started
    position: int | None = None  # its place in the queue


@dataclass
class LaunchFailed(Message):
    """The launcher could not start the run (the runs folder not writable, the worker would not spawn)."""

    error: str
    queued: bool = False


@dataclass
class PreflightChecked(Latest):
    """`vittui check` on `recipe`: its problems (none: ok), or `error` when it could not be asked."""

    recipe: Recipe
    problems: list[str]
    error: str = ""


@dataclass
class LrProgress(Latest):
    """A progress line of the running `vittui lr-find` ("step 40/100  lr 3.2e-04  loss 2.1043")."""

    text: str


@dataclass
class LrFound(Message):
    """`vittui lr-find` answered (`result`, a screens.lr_find.LrFindResult) or failed (`error`, one line)."""

    result: object | None
    error: str = ""


@dataclass
class RecipeChosen(Message):
    """Up from the setup screen to the app: the recipe a new setup screen starts from."""

    recipe: Recipe


# --- runs, report, compare -----------------------------------------------------------------------
@dataclass
class RunsScanned(Latest):
    """Every run in the runs folder, newest first."""

    rows: list[RunSummary]
    positions: dict = field(default_factory=dict)  # Path -> place in the queue (1 = next), queued runs only


@dataclass
class RunsActed(Message):
    """A runs-screen action that ran in a thread worker (resume, delete) is done: `note` says what happened,
    or `error` why nothing did."""

    note: str = ""
    error: str = ""
    attach: Path | None = None  # the run the monitor should open on (a resubmitted Slurm run)


@dataclass
class ReportRead(Message):
    """report.json read: None when there is none yet (`error` says why when it could not be read)."""

    report: EvalReport | None
    error: str = ""


@dataclass
class EvalOutput(Message):
    """One line of `vittui eval`'s output (never replaced: every line is shown)."""

    line: str


@dataclass
class EvalFinished(Message):
    """`vittui eval` exited with `rc` (-1 and `error` when it could not start)."""

    rc: int
    error: str = ""


@dataclass
class RunsCompared(Message):
    """The runs lined up for the compare screen with its table rows, or `error` why not."""

    comparison: Comparison | None
    rows: list[list[str]] = field(default_factory=list)
    error: str = ""


@dataclass
class StudyRead(Latest):
    """A sweep's study read back (vittui.sweep.status), or `error` why it could not be."""

    report: StudyReport | None
    error: str = ""

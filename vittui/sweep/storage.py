"""Where a study lives, what a trial's run directory carries, and the study's fixed choices.

The default storage is an SQLite file in the runs folder (`runs/sweeps.db`): nothing to set up, and
`optuna-dashboard sqlite:///runs/sweeps.db` opens it. Several processes write it at once (the driver
tells, each worker reports its evals), so the SQLite connection waits for the file lock instead of
failing at once ("database is locked"). Any other Optuna RDB URL (`postgresql://…`) shares a study
across machines.

A trial's run directory carries tags (`tags.json`, RunDir.read_tags: study, trial number and id, storage
URL, objective, pruner): all its worker needs to find its trial. The pruner is not kept in Optuna's storage, so the worker makes
the same one from its name here (`make_pruner`), and the driver and the worker agree.
"""

from __future__ import annotations

import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from vittui.runs.store import RunDir

SCHEMA_ATTEMPTS = 5  # opening an empty database: the tables may be being made by another process
SQLITE_TIMEOUT_S = 120  # how long an SQLite writer waits for another process's lock
# objective name -> (Optuna direction, the Eval event's field)
OBJECTIVES = {"val_top1": ("maximize", "top1"), "val_loss": ("minimize", "loss")}
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "hyperband", "none")
MEDIAN_STARTUP_TRIALS = 2  # trials that must finish before the median pruner prunes anyone
MEDIAN_WARMUP_FRACTION = 0.25  # no trial is pruned in its first quarter (steps reported before it are kept)


def default_storage(runs_root: str | Path) -> str:
    return f"sqlite:///{(Path(runs_root) / 'sweeps.db').resolve()}"


def open_storage(url: str):
    """An Optuna RDB storage for `url`; SQLite waits for locks held by the other processes."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(SCHEMA_ATTEMPTS):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except Exception as e:  # noqa: BLE001 - only the schema race below is retried
            # Two processes opening an empty database both create Optuna's tables; on PostgreSQL the
            # second fails (duplicate type "studydirection"). By the next try the first has made them.
            if type(e).__name__ not in ("IntegrityError", "ProgrammingError") or attempt == SCHEMA_ATTEMPTS - 1:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")  # pragma: no cover


def make_pruner(name: str, warmup_steps: int = 0):
    """median: a trial whose objective at a step is worse than the median of earlier trials at that step
    (after MEDIAN_STARTUP_TRIALS finished trials, and not before `warmup_steps`: the worker passes its
    trial's, `report.TrialReporter.started`); hyperband: Optuna's successive halving brackets; none.

    The warm-up matters: with none, the median pruner judged trials on their first eval, and in the
    8-trial digits benchmark it pruned the eventual winner after one epoch."""
    import optuna

    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=MEDIAN_STARTUP_TRIALS,
                                           n_warmup_steps=warmup_steps)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


@dataclass
class TrialTags:
    """A trial run's tags (tags.json holds them as strings)."""

    study: str
    trial: int  # the trial's number in the study
    trial_id: int  # Optuna's id of the trial in the storage (what `optuna.trial.Trial` takes)
    storage: str
    objective: str
    pruner: str

    def as_tags(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}

    def write(self, run: RunDir) -> None:
        run.write_tags(self.as_tags())


def read_trial_tags(run: RunDir) -> TrialTags | None:
    """The run's trial tags, or None for a run that is not a sweep trial (or whose tags are unreadable)."""
    tags = run.read_tags()
    try:
        return TrialTags(study=tags["study"], trial=int(tags["trial"]), trial_id=int(tags["trial_id"]),
                         storage=tags["storage"], objective=tags["objective"], pruner=tags["pruner"])
    except (KeyError, ValueError):
        return None


def owner_id(runs_root: str | Path) -> str:
    """Which driver runs a trial: this machine and this runs folder (two boxes share a study, each with
    its own runs folder; a driver looks after its own trials only)."""
    return f"{socket.gethostname()}:{Path(runs_root).resolve()}"

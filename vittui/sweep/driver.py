"""The sweep driver: ask Optuna for a trial, enqueue its run, tell Optuna how the run ended; repeat.

    loop:  tell every trial of ours whose run has ended   (COMPLETE / PRUNED / FAIL)
           stop when the study holds N trials and none of ours is running
           ask for a new trial while fewer than N are in the study and fewer than K of ours run

The driver keeps no state of its own: everything is in the study (trial states, each trial's owner and
run name as user attributes) and in the run directories. So a driver killed with -9 is simply started
again with the same command: `load_if_exists` finds the study, runs that ended meanwhile are told, live
ones are awaited, a trial whose run was lost (worker killed) or never made (the driver died between
asking and enqueueing) is told FAIL, and asking resumes until the study holds N. The count comes from the
study, so two drivers on one study (two boxes, one PostgreSQL storage) reach N together. Two drivers
asking at the same instant can overshoot; a trial numbered N or more is told FAIL at once, marked
`surplus`, and never run or counted.

The objective told at COMPLETE is the run's best eval over its whole run (the highest val top-1 or the
lowest val loss), the same number `vittui runs` shows as BEST; a pruned trial is told PRUNED (Optuna
keeps its last reported value).
"""

from __future__ import annotations

import socket
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vittui.recipe import Recipe, dumps
from vittui.runs import events as ev
from vittui.runs.registry import is_live, run_state
from vittui.runs.store import RunDir
from vittui.runs.slurm import SlurmError
from vittui.sweep.space import Space
from vittui.sweep.storage import OBJECTIVES, TrialTags, default_storage, make_pruner, open_storage, owner_id

ORPHAN_AFTER_S = 120  # a RUNNING trial that no driver claimed this long ago was asked by a driver that died
WAITING_STATES = ("queued", "suspended")  # no worker now, but the run is not over: wait for it


@dataclass
class SweepConfig:
    recipe: Recipe  # the base recipe (preset with --set), before the sampled values
    space: Space
    runs_root: Path
    study: str
    storage: str
    n_trials: int
    sampler: str = "tpe"
    pruner: str = "median"
    objective: str = "val_top1"
    parallel: int = 1
    seed: int | None = None
    executor: str = "local"
    poll_s: float = 1.0
    slurm: Any = None  # vittui.runs.slurm.SlurmConfig with executor "slurm": each trial submitted as a job


@dataclass
class SweepOutcome:
    told: dict[int, str] = field(default_factory=dict)  # trial number -> the state this driver told
    started: list[int] = field(default_factory=list)  # trial numbers this driver asked for and enqueued


def trial_run_name(study: str, number: int) -> str:
    return f"{study}-t{number:04d}"


def make_sampler(cfg: SweepConfig, n_done: int):
    """The sampler named by --sampler. The seed is offset by the trials already in the study, so a
    restarted driver does not draw the first trials' values again (TPE also conditions on them). On a study
    shared between boxes (any storage but the runs folder's own SQLite file) it is offset by the box and its
    runs folder as well: two boxes started at once with the README's one command and one --seed would
    otherwise draw the same values, trial for trial, until TPE's random start-up is over."""
    import optuna

    seed = None if cfg.seed is None else cfg.seed + n_done
    if seed is not None and cfg.storage != default_storage(cfg.runs_root):
        where = f"{socket.gethostname()}:{Path(cfg.runs_root).resolve()}"
        seed = (seed + zlib.crc32(where.encode())) % 2**32  # NumPy's RandomState takes 32 bits
    if cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if cfg.sampler == "grid":
        return optuna.samplers.GridSampler(cfg.space.grid(), seed=seed)
    return optuna.samplers.TPESampler(seed=seed)


def open_study(cfg: SweepConfig):
    import optuna

    storage = open_storage(cfg.storage)
    direction = OBJECTIVES[cfg.objective][0]
    study = optuna.create_study(study_name=cfg.study, storage=storage, direction=direction, load_if_exists=True,
                                pruner=make_pruner(cfg.pruner))
    if study.direction.name.lower() != direction:
        raise ValueError(f"study {cfg.study} was made to {study.direction.name.lower()}; --objective {cfg.objective} "
                         f"needs {direction}")
    attrs = study.user_attrs
    if "objective" not in attrs:
        for k, v in (("objective", cfg.objective), ("pruner", cfg.pruner), ("sampler", cfg.sampler),
                     ("n_trials", cfg.n_trials), ("space", cfg.space.keys)):
            study.set_user_attr(k, v)
    elif attrs["objective"] != cfg.objective:
        raise ValueError(f"study {cfg.study} optimizes {attrs['objective']}, not {cfg.objective}")
    study.sampler = make_sampler(cfg, len(study.get_trials(deepcopy=False)))
    return study


def counted(trials) -> list:
    """The trials that make up the sweep: every trial but surplus ones and those Optuna holds WAITING."""
    from optuna.trial import TrialState

    return [t for t in trials if t.state != TrialState.WAITING and not t.user_attrs.get("surplus")]


def objective_value(run: RunDir, objective: str) -> float | None:
    """The run's best eval: highest val top-1 or lowest val loss (None without an eval)."""
    direction, attr = OBJECTIVES[objective]
    values = [getattr(e, attr) for e in ev.read_all(run.events_path) if isinstance(e, ev.Eval)]
    if not values:
        return None
    return max(values) if direction == "maximize" else min(values)


def drive(cfg: SweepConfig, say: Callable[[str], None] = print) -> SweepOutcome:
    """Run the sweep until the study holds `cfg.n_trials` trials and none of this driver's is running."""
    study = open_study(cfg)
    me = owner_id(cfg.runs_root)
    out = SweepOutcome()
    while True:
        trials = study.get_trials(deepcopy=False)
        _tell_ended(study, cfg, me, trials, out, say)
        trials = study.get_trials(deepcopy=False)
        mine = [t for t in trials if t.state.name == "RUNNING" and t.user_attrs.get("owner") == me]
        total = len(counted(trials))
        if total >= cfg.n_trials and not mine:
            break
        if total < cfg.n_trials and len(mine) < cfg.parallel:
            _start_trial(study, cfg, me, out, say)
            continue
        time.sleep(cfg.poll_s)
    return out


def _tell_ended(study, cfg: SweepConfig, me: str, trials, out: SweepOutcome, say) -> None:
    from optuna.trial import TrialState

    for t in trials:
        if t.state != TrialState.RUNNING:
            continue
        owner = t.user_attrs.get("owner")
        if owner is None:  # asked by a driver that died before claiming it
            if t.datetime_start is not None and _age_s(t.datetime_start) > ORPHAN_AFTER_S:
                _tell(study, t, TrialState.FAIL, None, "no driver claimed it", out, say)
            continue
        if owner != me:
            continue
        run = RunDir(cfg.runs_root / t.user_attrs.get("run", trial_run_name(cfg.study, t.number)))
        if not run.exists():  # the driver died between asking and enqueueing: nothing ran
            _tell(study, t, TrialState.FAIL, None, f"its run {run.name} was never made", out, say)
            continue
        state = run_state(run)
        if state == "queued" and cfg.executor == "local" and not _in_queue(run, cfg.runs_root):
            # the driver died after the run directory was made and before it joined the line
            _tell(study, t, TrialState.FAIL, None, f"{run.name} never joined the queue", out, say)
            continue
        if is_live(state) or state in WAITING_STATES:
            continue
        if state == "finished":
            value = objective_value(run, cfg.objective)
            if value is None:
                _tell(study, t, TrialState.FAIL, None, f"{run.name} finished without an eval", out, say)
            else:
                _tell(study, t, TrialState.COMPLETE, value, f"{run.name} {cfg.objective} {value:.4g}", out, say)
        elif state == "pruned":
            status = run.read_status()
            _tell(study, t, TrialState.PRUNED, None, f"{run.name} pruned at step {status.step if status else '?'}",
                  out, say)
        else:  # failed, lost (worker killed), stopped by a person
            _tell(study, t, TrialState.FAIL, None, f"{run.name} {state}", out, say)


def _in_queue(run: RunDir, runs_root: Path) -> bool:
    from vittui.runs.queue import queued

    return any(r.name == run.name for r in queued(runs_root))


def _age_s(start) -> float:
    import datetime

    now = datetime.datetime.now(start.tzinfo) if start.tzinfo else datetime.datetime.now()
    return (now - start).total_seconds()


def _tell(study, trial, state, value: float | None, why: str, out: SweepOutcome, say) -> None:
    """Tell Optuna how `trial` ended, with the reason in its `ended` user attribute (shown by status)."""
    try:
        study._storage.set_trial_user_attr(trial._trial_id, "ended", why)
    except Exception:  # noqa: BLE001 - already finished (another driver told it): the tell below is skipped too
        pass
    study.tell(trial.number, value, state=state, skip_if_finished=True)
    out.told[trial.number] = state.name
    say(f"trial {trial.number}: {state.name.lower()} ({why})")


def _start_trial(study, cfg: SweepConfig, me: str, out: SweepOutcome, say) -> None:
    from optuna.trial import TrialState

    from vittui.recipe import RecipeError

    trial = study.ask()
    if trial.number >= cfg.n_trials:  # another driver asked at the same time: never run, never counted
        trial.set_user_attr("surplus", True)
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        return
    trial.set_user_attr("owner", me)
    name = trial_run_name(cfg.study, trial.number)
    values = {p.key: p.suggest(trial) for p in cfg.space.params}
    try:  # the corners passed the validator; an inner combination can still clash
        recipe = cfg.recipe.with_overrides({**values, "run.name": name}, source=f"trial {trial.number}")
    except RecipeError as e:
        trial.set_user_attr("error", e.message)
        _tell(study, trial, TrialState.FAIL, None, e.message, out, say)
        return
    trial.set_user_attr("recipe", dumps(recipe))
    tags = TrialTags(study=cfg.study, trial=trial.number, trial_id=trial._trial_id, storage=cfg.storage,
                     objective=cfg.objective, pruner=cfg.pruner)
    try:
        run = enqueue_trial(recipe, cfg.runs_root, name, tags, executor=cfg.executor, slurm_config=cfg.slurm)
    except SlurmError as e:  # sbatch refused the job: this trial failed, the sweep goes on
        _tell(study, trial, TrialState.FAIL, None, f"{name}: {e}", out, say)
        return
    trial.set_user_attr("run", run.name)
    trial.set_user_attr("run_path", str(run.path.resolve()))
    out.started.append(trial.number)
    shown = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
    say(f"trial {trial.number}: {run.name} started ({shown})")


def enqueue_trial(recipe: Recipe, runs_root: Path, name: str, tags: TrialTags, *, executor: str = "local",
                  slurm_config=None) -> RunDir:
    """The trial's run directory, tagged before any worker can read it, in the run queue (#16): `local`
    starts when the box's scheduler has a slot, `slurm` is submitted at once as a job (Slurm decides when it
    runs; a job sbatch refuses leaves no run directory and raises SlurmError)."""
    if executor == "slurm":
        from vittui.runs import slurm

        return slurm.submit_new(recipe, runs_root, name, slurm_config or slurm.load_config(None),
                                tags=tags.as_tags())[0]
    from vittui.runs.queue import enqueue

    return enqueue(recipe, runs_root, name, tags=tags.as_tags())

"""A study read back: its trials, the best one, the best-so-far curve and Optuna's parameter importances.

`vittui sweep status STUDY [--json]` prints it, the dashboard's sweep screen draws it (from a thread
worker: importing Optuna and computing importances take a second), and `vittui sweep best` takes the best
trial's recipe from it. Surplus trials (two drivers asked at once; never run) are left out.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from vittui.sweep.storage import open_storage

MIN_FOR_IMPORTANCE = 2  # complete trials before importances are computed


@dataclass
class TrialRow:
    number: int
    run: str  # the run directory's name (on the box whose driver ran it)
    run_path: str
    state: str  # running | complete | pruned | fail
    params: dict[str, Any]
    value: float | None  # the objective told at COMPLETE, or the best reported one for a pruned trial
    pruned_at: int | None  # the step of the last report of a pruned trial
    steps_reported: int  # evals reported to the trial
    ended: str = ""  # the driver's reason (lost, failed, ...)


@dataclass
class StudyReport:
    study: str
    storage: str
    objective: str
    direction: str  # maximize | minimize
    n_trials: int | None  # what the sweep was asked for (None for a study made elsewhere)
    trials: list[TrialRow]
    best: TrialRow | None
    best_so_far: list[tuple[int, float]]  # (trial number, best value up to it) over complete trials
    importances: dict[str, float] = field(default_factory=dict)
    importance_note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def params(self) -> list[str]:
        keys: list[str] = []
        for t in self.trials:
            keys += [k for k in t.params if k not in keys]
        return keys


def load_study(study: str, storage: str):
    """The Optuna study; KeyError with one line when the storage has no study of that name."""
    import optuna

    try:
        return optuna.load_study(study_name=study, storage=open_storage(storage))
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(open_storage(storage))]
        raise KeyError(f"no study {study!r} in {storage} (studies: {', '.join(names) or 'none'})") from None


def study_report(study_name: str, storage: str, *, importances: bool = True) -> StudyReport:
    from optuna.trial import TrialState

    study = load_study(study_name, storage)
    attrs = study.user_attrs
    direction = study.direction.name.lower()
    rows: list[TrialRow] = []
    better = max if direction == "maximize" else min
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        steps = sorted(t.intermediate_values)
        # a pruned trial's value is its best report, as a complete trial is told its run's best eval (and as
        # `vittui runs` shows the run's best): not the report it was pruned at
        reported = [v for v in t.intermediate_values.values() if math.isfinite(v)]
        value = t.value if t.state == TrialState.COMPLETE else (
            better(reported) if reported and t.state == TrialState.PRUNED else None)
        rows.append(TrialRow(
            number=t.number, run=t.user_attrs.get("run", ""), run_path=t.user_attrs.get("run_path", ""),
            state=t.state.name.lower(), params=dict(t.params), value=_finite(value),
            pruned_at=steps[-1] if t.state == TrialState.PRUNED and steps else None,
            steps_reported=len(steps), ended=t.user_attrs.get("ended", "")))
    complete = [r for r in rows if r.state == "complete" and r.value is not None]
    best = better(complete, key=lambda r: r.value) if complete else None
    curve, so_far = [], None
    for r in sorted(complete, key=lambda r: r.number):
        so_far = r.value if so_far is None else better(so_far, r.value)
        curve.append((r.number, so_far))
    report = StudyReport(study_name, storage, attrs.get("objective", "value"), direction, attrs.get("n_trials"),
                         rows, best, curve)
    if importances:
        report.importances, report.importance_note = _importances(study, len(complete))
    return report


def _importances(study, n_complete: int) -> tuple[dict[str, float], str]:
    """Optuna's own evaluator (fANOVA by default) over the complete trials."""
    if n_complete < MIN_FOR_IMPORTANCE:
        return {}, f"importances need {MIN_FOR_IMPORTANCE} complete trials ({n_complete} so far)"
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():  # e.g. "importances will be equal": the numbers say so themselves
            warnings.simplefilter("ignore")
            found = optuna.importance.get_param_importances(study)
    except (RuntimeError, ValueError) as e:  # e.g. every complete trial sampled the same values
        return {}, f"no importances: {e}"
    return {k: float(v) for k, v in found.items()}, ""


def best_recipe_text(study: str, storage: str) -> tuple[TrialRow, str]:
    """The best trial and its full recipe as TOML (what its run trained), named `<study>-best`."""
    from vittui.recipe import loads

    report = study_report(study, storage, importances=False)
    if report.best is None:
        raise KeyError(f"study {study!r} has no complete trial yet")
    opt = load_study(study, storage)
    text = opt.trials[report.best.number].user_attrs.get("recipe")
    if not text:
        raise KeyError(f"trial {report.best.number} of study {study!r} carries no recipe")
    recipe = loads(text, source=f"trial {report.best.number}").with_overrides({"run.name": f"{study}-best"})
    return report.best, recipe.to_toml()


def _finite(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None

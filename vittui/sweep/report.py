"""The worker's side of a sweep: each eval reported to the run's Optuna trial, and the pruner asked.

The training loop's emitter feeds every Eval event here (train/events_out.py); when the pruner says stop,
`feed` returns the reason and the loop ends the run at once with state `pruned`. Optuna is imported only
for runs that carry trial tags. Reporting must never fail a run: a storage that cannot be reached is
logged once and the run trains on unpruned.
"""

from __future__ import annotations

from vittui.runs import events as ev
from vittui.runs.store import RunDir
from vittui.sweep.storage import (MEDIAN_WARMUP_FRACTION, OBJECTIVES, TrialTags, make_pruner, open_storage,
                                  read_trial_tags)


class TrialReporter:
    def __init__(self, tags: TrialTags, lr_warmup_epochs: float = 0.0):
        self.tags = tags
        self.lr_warmup_epochs = lr_warmup_epochs
        self._trial = None
        self.error: str | None = None  # why reporting stopped (shown once in the run's log)
        self.warmup_steps = 0  # no pruning before this step (set from the run's RunStarted: `started`)

    def started(self, e: ev.RunStarted) -> None:
        """The pruner's warm-up for this trial: a quarter of the run, and never before the trial's own lr
        warm-up plus one epoch — an objective read mid-warm-up ranks warm-up lengths, not recipes (the
        benchmark's best trial, 2 warm-up epochs of 8, was pruned right at the end of its warm-up)."""
        own = int((self.lr_warmup_epochs + 1) * e.steps_per_epoch)
        self.warmup_steps = min(e.total_steps, max(int(e.total_steps * MEDIAN_WARMUP_FRACTION), own))

    def _open(self):
        if self._trial is None:
            import optuna

            study = optuna.load_study(study_name=self.tags.study, storage=open_storage(self.tags.storage),
                                      pruner=make_pruner(self.tags.pruner, self.warmup_steps))
            self._trial = optuna.trial.Trial(study, self.tags.trial_id)
        return self._trial

    def feed(self, e: ev.Eval) -> str | None:
        """Report `e`'s objective at its step; the reason to stop when the pruner says so, else None."""
        if self.error is not None:
            return None
        value = getattr(e, OBJECTIVES[self.tags.objective][1])
        try:
            trial = self._open()
            trial.report(float(value), e.step)
            if trial.should_prune():
                return (f"pruned by the sweep's {self.tags.pruner} pruner at step {e.step}: "
                        f"{self.tags.objective} {value:.4g} (trial {self.tags.trial} of study {self.tags.study})")
        except Exception as exc:  # noqa: BLE001 - the run goes on; the driver still tells Optuna how it ended
            self.error = f"sweep trial reporting off: {type(exc).__name__}: {exc}"
        return None


def trial_reporter(run: RunDir) -> TrialReporter | None:
    tags = read_trial_tags(run)
    if tags is None:
        return None
    from vittui.recipe import load

    return TrialReporter(tags, lr_warmup_epochs=load(run.recipe_path).schedule.warmup_epochs)

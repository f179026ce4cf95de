"""The worker's side of a sweep: each eval reported to the run's Optuna trial, and the pruner asked.

The training loop's emitter feeds every Eval event here (train/events_out.py); when the pruner says stop,
`feed` returns the reason and the loop ends the run at once with state `pruned`. Optuna is imported only
for runs that carry trial tags. Reporting must never fail a run: a storage that cannot be reached is
logged once and the run trains on unpruned.
"""

from __future__ import annotations

from vittui.runs import events as ev
from vittui.runs.store import RunDir
from vittui.sweep.storage import OBJECTIVES, TrialTags, make_pruner, open_storage, read_trial_tags


class TrialReporter:
    def __init__(self, tags: TrialTags):
        self.tags = tags
        self._trial = None
        self.error: str | None = None  # why reporting stopped (shown once in the run's log)
        self.total_steps = 0  # the run's, from its RunStarted event: the median pruner's warm-up is a share of it

    def _open(self):
        if self._trial is None:
            import optuna

            study = optuna.load_study(study_name=self.tags.study, storage=open_storage(self.tags.storage),
                                      pruner=make_pruner(self.tags.pruner, self.total_steps))
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
    return TrialReporter(tags) if tags is not None else None

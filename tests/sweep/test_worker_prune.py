"""The worker's side, in process: a run tagged as a trial reports each eval to its Optuna trial, and when the
median pruner says stop the run ends at once — once past the pruner's warm-up (a quarter of the run, and the lr warm-up plus an epoch) — state `pruned`, one Status event with the step and the
reason, no step after it, exit code 0. The study is set up so the pruner must prune: two finished
trials reported 99% at every step, far above anything a tiny model reaches."""

from __future__ import annotations

import optuna
from sweep_helpers import trial_that_must_be_pruned
from tiny import events, status, tiny_recipe

from vittui.recipe import load
from vittui.runs import events as ev
from vittui.runs.registry import run_state
from vittui.sweep.storage import MEDIAN_WARMUP_FRACTION
from vittui.train.worker import run_worker


def test_a_trial_below_the_median_is_pruned_at_its_first_eval_past_the_warm_up(tmp_path):
    storage, run = trial_that_must_be_pruned(tmp_path / "runs", tiny_recipe("run.eval_every=3", "run.probe_every=0"))
    assert run_worker(run.path) == 0
    started = next(e for e in events(run.path) if isinstance(e, ev.RunStarted))
    total, spe = started.total_steps, started.steps_per_epoch
    # no pruning before a quarter of the run, nor before the recipe's lr warm-up plus one epoch
    own = int((load(run.recipe_path).schedule.warmup_epochs + 1) * spe)
    warm = min(total, max(int(total * MEDIAN_WARMUP_FRACTION), own))  # Optuna: no pruning at step < n_warmup_steps
    assert own > int(total * MEDIAN_WARMUP_FRACTION)  # the lr warm-up rule decides here (TINY warms up 0.5 epoch)
    at = next(s for s in range(3, total + 1, 3) if s >= warm)  # evals every 3 steps: the first past the warm-up
    assert warm > 3  # the test means something: the first eval (step 3) is inside the warm-up and is not pruned
    st = status(run.path)
    assert st["state"] == "pruned" == run_state(run) and st["step"] == at
    said = [e for e in events(run.path) if isinstance(e, ev.Status) and e.state == "pruned"]
    assert len(said) == 1 and said[0].step == at and f"median pruner at step {at}" in said[0].reason
    assert max(e.step for e in events(run.path) if isinstance(e, ev.Step)) == at  # stopped at once
    evals = {e.step: e.top1 for e in events(run.path) if isinstance(e, ev.Eval)}
    assert optuna.load_study(study_name="p", storage=storage).trials[2].intermediate_values == evals


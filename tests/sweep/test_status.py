"""`vittui sweep status STUDY --json` and `vittui sweep best` on a study written straight into an SQLite
storage (no training): the JSON shape of the README, pruned-at steps, the best trial, its recipe as a
preset; an unknown study is one line and exit 2."""

from __future__ import annotations

import json

import optuna
import pytest

from vittui.cli import main
from vittui.recipe import dumps, load, load_preset
from vittui.sweep.storage import default_storage

REPORT_KEYS = {"study", "storage", "objective", "direction", "n_trials", "trials", "best", "best_so_far",
               "importances", "importance_note"}
TRIAL_KEYS = {"number", "run", "run_path", "state", "params", "value", "pruned_at", "steps_reported", "ended"}


@pytest.fixture
def study(tmp_path):
    storage = default_storage(tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    s = optuna.create_study(study_name="s", storage=storage, direction="minimize")
    s.set_user_attr("objective", "val_loss")
    dist = {"optim.lr": optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True)}
    base = load_preset("demo-digits")
    for state, lr, value, inter in (("COMPLETE", 1e-3, 0.9, {5: 1.5, 10: 0.9}), ("PRUNED", 1e-5, None, {5: 2.1, 8: 2.3}),
                                    ("COMPLETE", 3e-3, 0.7, {5: 1.2, 10: 0.7}), ("FAIL", 1e-2, None, {})):
        recipe = base.with_overrides({"optim.lr": lr})
        s.add_trial(optuna.trial.create_trial(
            state=getattr(optuna.trial.TrialState, state), value=value, params={"optim.lr": lr}, distributions=dist,
            intermediate_values=inter, user_attrs={"run": f"s-t{len(s.trials):04d}", "recipe": dumps(recipe)}))
    return tmp_path


def test_status_json_shape_and_values(study, capsys):
    assert main(["--runs-dir", str(study / "runs"), "sweep", "status", "s", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert set(d) == REPORT_KEYS and all(set(t) == TRIAL_KEYS for t in d["trials"])
    assert [(t["state"], t["value"], t["pruned_at"]) for t in d["trials"]] == [
        ("complete", 0.9, None), ("pruned", 2.1, 8), ("complete", 0.7, None), ("fail", None, None)]
    # a pruned trial's value is its best report (the lowest loss here), as complete trials are told their best
    assert (d["direction"], d["objective"], d["best"]["number"]) == ("minimize", "val_loss", 2)
    assert d["best_so_far"] == [[0, 0.9], [2, 0.7]]  # the lowest loss so far, over complete trials


def test_best_writes_the_best_trials_recipe(study, capsys):
    out = study / "best.toml"
    assert main(["--runs-dir", str(study / "runs"), "sweep", "best", "s", "-o", str(out)]) == 0
    best = load(out)
    assert best.optim.lr == 3e-3 and best.run.name == "s-best"
    assert best.model == load_preset("demo-digits").model


def test_unknown_study_is_one_line(study, capsys):
    assert main(["--runs-dir", str(study / "runs"), "sweep", "status", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no study 'nope'" in err and "studies: s" in err


def test_the_sweep_screen_and_the_worker_side_import_no_optuna():
    """Optuna (and its importance evaluator) is imported in the screen's thread worker or the run's trial
    reporter when first used, never when the dashboard or a plain run's worker starts."""
    import subprocess
    import sys

    def loaded(modules: str) -> str:
        code = (f"import sys, {modules}; "
                "print([m for m in ('optuna', 'sqlalchemy', 'torch') if m in sys.modules])")
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                              check=True).stdout.strip()

    assert loaded("vittui.ui.screens.sweep, vittui.ui.screens.runs, vittui.commands.sweep") == "[]"
    assert "optuna" not in loaded("vittui.train.events_out, vittui.train.loop")

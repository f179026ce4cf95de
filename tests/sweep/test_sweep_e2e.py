"""End to end on the CPU: a 6-trial sweep over lr and warmup on the tiny digits recipe, through the
installed command. The space reaches hopeless learning rates (1e-6 stays at chance for the whole run) and
the median pruner starts pruning after 2 finished trials; with the random sampler's seed 8 the first two
trials draw good rates (1.3e-3, 7.2e-4) and later ones hopeless ones, so pruning certainly happens.
Then the best trial's recipe is written and taken by `vittui export`, and the sweep screen is drawn on
the real study."""

from __future__ import annotations

import subprocess

import pytest
from sweep_helpers import run_sweep, sweep_env, sweep_status
from tiny import events, status, vittui_cmd

from vittui.recipe import load
from vittui.runs import events as ev
from vittui.runs.store import list_runs
from vittui.sweep.storage import default_storage

pytestmark = pytest.mark.slow
N = 6


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sweep")
    runs = tmp / "runs"
    out = run_sweep(tmp, runs, N, "--study", "e2e", "--sampler", "random", "--seed", "8", "--pruner", "median")
    return tmp, runs, out


def best_eval(run) -> float:
    return max(e.top1 for e in events(run) if isinstance(e, ev.Eval))


def test_six_trials_prune_the_hopeless_and_tell_the_best_eval(swept):
    tmp, runs, out = swept
    report = sweep_status(tmp, runs, "e2e")
    trials = report["trials"]
    assert [t["number"] for t in trials] == list(range(N))
    assert {t["state"] for t in trials} <= {"complete", "pruned"}, out
    pruned = [t for t in trials if t["state"] == "pruned"]
    complete = [t for t in trials if t["state"] == "complete"]
    assert pruned and len(complete) >= 2, out
    assert sorted(r.name for r in list_runs(runs)) == [f"e2e-t{i:04d}" for i in range(N)]  # none twice
    full_steps = {status(runs / t["run"])["step"] for t in complete}
    total = status(runs / complete[0]["run"])["total_steps"]
    assert full_steps == {total}
    for t in pruned:
        run = runs / t["run"]
        st = status(run)
        assert st["state"] == "pruned" and st["step"] < total and st["step"] == t["pruned_at"]
        said = [e for e in events(run) if isinstance(e, ev.Status) and e.state == "pruned"]
        assert len(said) == 1 and said[0].step == st["step"] and "median pruner" in said[0].reason
        assert max(e.step for e in events(run) if isinstance(e, ev.Step)) == st["step"]  # stopped at once
    for t in complete:  # the objective told is the run's best eval, read here from its events
        assert t["value"] == pytest.approx(best_eval(runs / t["run"]))
    best = max(complete, key=lambda t: t["value"])
    assert report["best"]["number"] == best["number"]
    assert set(report["importances"]) == {"optim.lr", "schedule.warmup_epochs"}


def test_best_recipe_is_a_preset_train_and_export_take(swept):
    tmp, runs, _ = swept
    report = sweep_status(tmp, runs, "e2e")
    env = sweep_env(runs)
    p = subprocess.run(vittui_cmd() + ["sweep", "best", "e2e", "-o", "best.toml"], cwd=tmp, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    best = load(tmp / "best.toml")
    trained = load(runs / report["best"]["run"] / "recipe.toml")
    assert best.optim.lr == report["best"]["params"]["optim.lr"] == trained.optim.lr
    assert best.schedule.warmup_epochs == report["best"]["params"]["schedule.warmup_epochs"]
    assert best.model == trained.model and best.data == trained.data and best.run.name == "e2e-best"
    p = subprocess.run(vittui_cmd() + ["export", "best.toml", "-o", "train_best.py"], cwd=tmp, env=env,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert (tmp / "train_best.py").exists()
    p = subprocess.run(vittui_cmd() + ["train", "best.toml", "--set", "schedule.max_steps=1", "--name", "again"],
                       cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr
    assert status(runs / "again")["state"] == "finished"


@pytest.mark.anyio
async def test_sweep_screen_on_the_real_study(swept):
    from ui_helpers import HOST, SIZE, wait_for

    from vittui.hardware import FakeSource
    from vittui.ui.app import create_app
    from vittui.ui.screens.sweep import SweepScreen
    from vittui.ui.widgets.importance_bars import ImportanceBars
    from vittui.ui.widgets.param_scatter import ParamScatter
    from vittui.ui.widgets.trials_table import TrialsTable

    tmp, runs, _ = swept
    app = create_app(runs, gpu_source=FakeSource([], HOST, reason="no GPU"), sweep=("e2e", default_storage(runs)))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen) and app.screen.reads > 0, what="study")
        screen = app.screen
        rows = screen.query_one(TrialsTable).rows_data
        assert len(rows) == N and any(r.state == "pruned" for r in rows)
        scatter = screen.query_one(ParamScatter)
        assert len(scatter.points["complete"]) + len(scatter.points.get("pruned", [])) == N
        assert set(screen.query_one(ImportanceBars).rows) == {"optim.lr", "schedule.warmup_epochs"}

"""The sweep screen on a study written straight into an SQLite storage (no training): the table lists every
trial with its state and values, the plots and importances are drawn from the study, Enter opens the
trial's monitor, and the runs screen's w opens the sweep of the run under the cursor."""

from __future__ import annotations

import pytest
from fakerun import FakeRun
from ui_helpers import SIZE, screen_text, wait_for

from vittui.runs.store import RunDir
from vittui.sweep.storage import TrialTags, default_storage
from vittui.ui.app import create_app
from vittui.ui.screens.monitor import MonitorScreen
from vittui.ui.screens.sweep import SweepScreen
from vittui.ui.widgets.importance_bars import ImportanceBars
from vittui.ui.widgets.metric_plot import MetricPlot
from vittui.ui.widgets.param_scatter import ParamScatter
from vittui.ui.widgets.trials_table import TrialsTable

pytestmark = pytest.mark.anyio

# (state, lr, warmup, value, intermediate values by step)
TRIALS = [
    ("COMPLETE", 1e-3, 0.2, 60.0, {4: 30.0, 8: 60.0}),
    ("COMPLETE", 3e-4, 0.8, 45.0, {4: 25.0, 8: 45.0}),
    ("PRUNED", 2e-6, 0.5, None, {4: 9.0}),
    ("COMPLETE", 2e-3, 0.1, 70.0, {4: 40.0, 8: 70.0}),
    ("FAIL", 5e-5, 0.3, None, {}),
]


def make_study(runs_root, name="s"):
    """A finished 5-trial study over optim.lr and schedule.warmup_epochs, each trial with a fake run."""
    import optuna

    storage = default_storage(runs_root)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    study.set_user_attr("objective", "val_top1")
    study.set_user_attr("n_trials", len(TRIALS))
    dists = {"optim.lr": optuna.distributions.FloatDistribution(1e-6, 3e-3, log=True),
             "schedule.warmup_epochs": optuna.distributions.FloatDistribution(0.0, 1.0)}
    for i, (state, lr, warm, value, inter) in enumerate(TRIALS):
        run = FakeRun(runs_root, name=f"{name}-t{i:04d}")
        run.started()
        run.close()
        study.add_trial(optuna.trial.create_trial(
            state=getattr(optuna.trial.TrialState, state), value=value, params={"optim.lr": lr,
            "schedule.warmup_epochs": warm}, distributions=dists, intermediate_values=inter,
            user_attrs={"run": run.run.name, "run_path": str(run.run.path)}))
        TrialTags(study=name, trial=i, trial_id=i + 1, storage=storage, objective="val_top1",
                  pruner="median").write(run.run)
    return storage


async def test_sweep_screen_draws_the_study_and_opens_a_trial(runs_root, no_gpu):
    storage = make_study(runs_root)
    app = create_app(runs_root, gpu_source=no_gpu, sweep=("s", storage))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen) and app.screen.reads > 0, what="study read")
        screen = app.screen
        table = screen.query_one(TrialsTable)
        assert [(t.number, t.state) for t in table.rows_data] == [(0, "complete"), (1, "complete"), (2, "pruned"),
                                                                  (3, "complete"), (4, "fail")]
        assert table.rows_data[2].pruned_at == 4 and table.rows_data[2].value == 9.0
        # the title names the best, the table marks it (drawn at the next refresh)
        await wait_for(pilot, lambda: "best val_top1 70 (trial 3)" in (t := screen_text(app)) and " 3* " in t,
                       what="best trial shown")
        # best so far over complete trials in order: 60, 60, 70 (trials 0, 1, 3)
        best = screen.query_one("#sweep-best", MetricPlot)
        assert list(best.series[0].xs) == [0, 1, 3] and list(best.series[0].ys) == [60.0, 60.0, 70.0]
        scatter = screen.query_one(ParamScatter)
        assert scatter.param == "optim.lr"
        assert sorted(scatter.points["complete"]) == [(3e-4, 45.0), (1e-3, 60.0), (2e-3, 70.0)]
        assert scatter.points["pruned"] == [(2e-6, 9.0)]
        await pilot.press("p")
        assert scatter.param == "schedule.warmup_epochs"
        assert set(screen.query_one(ImportanceBars).rows) == {"optim.lr", "schedule.warmup_epochs"}
        table.move_cursor(row=3)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        assert app.screen.run.name == "s-t0003"


async def test_runs_screen_w_opens_the_sweep_of_a_trial(runs_root, no_gpu):
    make_study(runs_root)
    plain = FakeRun(runs_root, name="plain")
    plain.started()
    plain.close()
    app = create_app(runs_root, gpu_source=no_gpu, attach="plain")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.replayed)
        await pilot.press("r")
        table = app.screen.query_one("#runs-table")
        await wait_for(pilot, lambda: len(table.rows_data) == 6, what="runs listed")
        names = [r.name for r in table.rows_data]
        table.move_cursor(row=names.index("plain"))
        await pilot.pause()
        assert app.screen.check_action("sweep", ()) is None  # not a trial
        table.move_cursor(row=names.index("s-t0001"))
        await pilot.pause()
        assert app.screen.check_action("sweep", ()) is True
        await pilot.press("w")
        await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen) and app.screen.reads > 0, what="sweep")
        assert app.screen.study == "s" and len(app.screen.query_one(TrialsTable).rows_data) == 5
        assert RunDir(runs_root / "s-t0001").exists()


async def test_a_trial_opens_from_a_runs_folder_that_moved(tmp_path, no_gpu):
    """The study records each trial's run path; the runs folder copied elsewhere (another mount, a backup),
    Enter still opens the trial from the folder the dashboard was given."""
    import shutil

    old = tmp_path / "old-runs"
    old.mkdir()
    make_study(old)
    moved = shutil.move(str(old), str(tmp_path / "moved-runs"))
    app = create_app(moved, gpu_source=no_gpu, sweep=("s", default_storage(moved)))
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SweepScreen) and app.screen.reads > 0, what="study read")
        table = app.screen.query_one(TrialsTable)
        assert table.rows_data[1].run_path.startswith(str(old))  # what the study says: gone
        table.move_cursor(row=1)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        assert app.screen.run.name == "s-t0001" and str(app.screen.run.path).startswith(str(moved))

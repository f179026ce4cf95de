"""Runs screen marks and the comparison screen: two fake runs that differ in optim.lr and data.batch_size."""

from __future__ import annotations

from contextlib import asynccontextmanager

import pytest
from ui_helpers import SIZE, runs_screen_from, screen_text, wait_for
from fakerun import FakeRun

from vittui import recipe as R
from vittui.ui.app import create_app
from vittui.ui.screens.compare import CompareScreen
from vittui.ui.screens.runs import RunsScreen
from vittui.ui.widgets.compare_table import CompareTable
from vittui.ui.widgets.metric_plot import MetricPlot

pytestmark = pytest.mark.anyio


def two_runs(runs_root):
    a = FakeRun(runs_root, name="run-a", state="finished")
    b = FakeRun(runs_root, name="run-b", state="finished")
    recipe = R.load(b.run.recipe_path).with_overrides({"optim.lr": 3e-3, "data.batch_size": 32})
    R.save(recipe, b.run.recipe_path)
    for fr, n in ((a, 30), (b, 20)):
        fr.started()
        fr.steps(n)
        fr.set_state("finished")
    return a, b


@asynccontextmanager
async def runs_screen_of_two(runs_root, gpu):
    """`two_runs`, the dashboard attached to run-a, then r: the runs screen once it lists both: (app, pilot)."""
    a, b = two_runs(runs_root)
    app = create_app(runs_root, gpu_source=gpu, attach="run-a")
    async with app.run_test(size=SIZE) as pilot:
        await runs_screen_from(app, pilot, 2)
        yield app, pilot
    a.close()
    b.close()


async def test_mark_two_runs_and_compare(runs_root, no_gpu):
    async with runs_screen_of_two(runs_root, no_gpu) as (app, pilot):
        assert app.screen.check_action("compare", ()) is None  # nothing marked: compare is off
        await pilot.press("m")
        assert len(app.screen.marked) == 1
        await pilot.press("space")  # space marks too; the cursor moved down after the first mark
        assert {p.name for p in app.screen.marked} == {"run-a", "run-b"}
        assert "[x]" in screen_text(app)
        await pilot.press("c")
        assert isinstance(app.screen, CompareScreen)
        screen = app.screen
        await wait_for(pilot, lambda: screen.comparison is not None and "2 recipe fields differ" in screen_text(app),
                       what="comparison drawn")
        ctable = screen.query_one(CompareTable)
        assert ctable.fields == ["data.batch_size", "optim.lr"] or ctable.fields == ["optim.lr", "data.batch_size"]
        labels = [row[0] for row in ctable.rows_text[1:] if len(row) > 1]
        recipe_rows = [label for label in labels if "." in label]
        assert sorted(recipe_rows) == ["data.batch_size", "optim.lr"]
        assert "best val top-1 % @step" in labels and "last val top-1 % @step" in labels
        text = screen_text(app)
        assert "optim.lr" in text and "data.batch_size" in text and "run.name" not in text
        assert "0.003" in text and "32" in text
        assert "2 recipe fields differ" in text

        # both runs on the same axes; x cycles step -> epoch -> time
        loss = screen.query_one("#compare-loss", MetricPlot)
        assert loss.series_lengths() == {"run-a": 30, "run-b": 20}

        def last_x() -> dict[str, float]:
            return {s.label: round(s.xs[-1], 6) for s in loss.series}

        assert last_x() == {"run-a": 30, "run-b": 20}
        await pilot.press("x")
        assert screen.axis == "epoch" and last_x() == {"run-a": 3.0, "run-b": 2.0}
        assert "x: epoch" in screen_text(app)
        await pilot.press("x")
        assert screen.axis == "time"
        # seconds since each run's first event: the fake clock puts step s at T0 + 0.1 s
        assert last_x() == {"run-a": 3.0, "run-b": 2.0}
        await pilot.press("x")
        assert screen.axis == "step"
        acc = screen.query_one("#compare-acc", MetricPlot)
        assert acc.series_lengths() == {"run-a": 3, "run-b": 2}
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_unmark_takes_a_run_out(runs_root, no_gpu):
    async with runs_screen_of_two(runs_root, no_gpu) as (app, pilot):
        await pilot.press("m", "up", "m")
        assert app.screen.marked == []
        await pilot.press("c")
        assert isinstance(app.screen, RunsScreen)

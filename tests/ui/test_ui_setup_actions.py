"""The setup screen's actions beyond start: queue (ctrl+t) writes a queued run and shows it in line;
pre-flight (`vittui check`, a real subprocess) shows its findings beside the recipe and ctrl+s refuses a
recipe with known problems; the LR range test (ctrl+l, a real `vittui lr-find`) draws its curve in a modal
and Apply sets optim.lr; a failing lr-find is a notification, not a crash."""

from __future__ import annotations

import importlib.util
import math
import os
import re

import psutil
import pytest
from tiny import status, tiny_recipe
from ui_helpers import SIZE, notifications, wait_for, was_said

from vittui import recipe as R
from vittui.ui.app import create_app
from vittui.ui.screens.lr_find import LrCurve, LrFindModal
from vittui.ui.screens.runs import RunsScreen
from vittui.ui.screens.setup import SetupScreen
from vittui.ui.widgets.preflight_pane import PreflightPane
from vittui.ui.widgets.recipe_editor import RecipeEditor
from vittui.ui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.anyio
needs_check = pytest.mark.skipif(importlib.util.find_spec("vittui.commands.check") is None,
                                 reason="`vittui check` (branch guard) is not merged yet")


async def test_queue_action_writes_a_queued_run_and_shows_it_in_line(runs_root, no_gpu, queue_held):
    recipe = tiny_recipe("run.name=waiting")
    app = create_app(runs_root, gpu_source=no_gpu, recipe=recipe)
    said = notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, SetupScreen)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="the runs screen")
        table = app.screen.query_one(RunsTable)
        await wait_for(pilot, lambda: len(table.rows_data) == 1, what="the run listed")
        run = runs_root / "waiting"
        await wait_for(pilot, lambda: table.get_row(str(run))[2] == "queued #1", what="queued #1 shown")
        assert was_said(said, "queued waiting (#1 in line)")
        assert status(run)["state"] == "queued" and R.load(run / "recipe.toml") == recipe
        assert [r.name for r in queue_held.queued(runs_root)] == ["waiting"]
        assert queue_held.read_entry(queue_held.RunDir(run)).estimate_bytes > 0  # the planner's peak, for admission


async def test_lr_find_draws_the_curve_and_apply_sets_the_lr(runs_root, no_gpu):
    app = create_app(runs_root, gpu_source=no_gpu, recipe=tiny_recipe())
    async with app.run_test(size=SIZE) as pilot:
        before = app.screen.recipe
        await pilot.press("ctrl+l")
        assert app.screen.check_action("lr_find", ()) is False  # one at a time: ctrl+l now stops it
        pane = app.screen.query_one(PreflightPane)
        assert "LR range test running" in pane.border_subtitle
        # the subprocess's progress as it comes: "LR range test: step 12/100  lr … loss …"
        seen = []

        def progress_shown() -> bool:
            m = re.match(r"LR range test: step (\d+)/100 +lr \S+ +loss \S+  \(ctrl\+l stops it\)$",
                         pane.border_subtitle or "")
            seen.extend([int(m.group(1))] if m else [])
            return bool(m)

        await wait_for(pilot, progress_shown, timeout=300, what="lr-find's progress under the editor")
        assert 1 <= seen[0] <= 100
        await wait_for(pilot, lambda: isinstance(app.screen, LrFindModal), timeout=300, what="the lr-find modal")
        modal = app.screen
        result = modal.result
        assert len(result.lrs) == len(result.smoothed) == result.steps > 10
        assert result.lrs == sorted(result.lrs) and min(result.lrs) <= result.suggested_lr <= max(result.lrs)
        curve = modal.query_one(LrCurve)
        await wait_for(pilot, lambda: curve.draws >= 1, what="the curve drawn")
        assert f"{result.suggested_lr:.3g}" in str(modal.query_one("#lr-suggested").render())
        await pilot.press("a")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen), what="back on setup")
        applied = float(f"{result.suggested_lr:.3g}")  # the 3 digits the modal shows
        assert math.isclose(applied, result.suggested_lr, rel_tol=5e-3)
        assert app.screen.recipe.optim.lr == applied
        assert R.to_dict(app.screen.recipe)["optim"] | {"lr": before.optim.lr} == R.to_dict(before)["optim"]
        editor = app.screen.query_one(RecipeEditor)
        await editor.show_section("optim")
        assert float(editor.field("optim.lr").control.value) == applied
        assert app.screen.check_action("lr_find", ()) is True


def lr_find_processes() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if "lr-find" in " ".join(p.cmdline())]


async def test_ctrl_l_again_stops_the_lr_range_test(runs_root, no_gpu):
    """The range test stopped from the screen at its first progress line: the process is killed, no modal comes, the lr
    stays, the footer says which ctrl+l it is, and a new test can start."""
    recipe = tiny_recipe()
    app = create_app(runs_root, gpu_source=no_gpu, recipe=recipe)
    said = notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+l")
        screen = app.screen
        assert screen.active_bindings["ctrl+l"].binding.description == "Stop LR find"
        pane = screen.query_one(PreflightPane)
        await wait_for(pilot, lambda: "LR range test: step" in (pane.border_subtitle or ""), timeout=300,
                       what="lr-find's progress")
        assert lr_find_processes(), "the range test runs as a subprocess"
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: was_said(said, "LR range test stopped"), what="the stop said")
        await wait_for(pilot, lambda: not lr_find_processes(), timeout=10, what="the lr-find process gone")
        assert pane.border_subtitle == "" and screen.active_bindings["ctrl+l"].binding.description == "LR find"
        await pilot.pause(2.0)  # nothing arrives late: no modal, no failure, the lr as it was
        assert app.screen is screen and not was_said(said, "LR range test failed")
        assert screen.recipe == recipe
        await pilot.press("ctrl+l")  # and it starts again
        assert screen.check_action("stop_lr_find", ()) is True
        await wait_for(pilot, lambda: bool(lr_find_processes()), timeout=30, what="a second range test")
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: not lr_find_processes(), timeout=10, what="the second one stopped too")


async def test_lr_find_failure_is_a_notification(runs_root, no_gpu, tmp_path):
    recipe = tiny_recipe("data.source=imagefolder", f"data.path={tmp_path / 'no-such-folder'}")
    app = create_app(runs_root, gpu_source=no_gpu, recipe=recipe)
    said = notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+l")
        await wait_for(pilot, lambda: was_said(said, "LR range test failed"), timeout=180, what="the failure said")
        said_line = next(m for m in said if "LR range test failed" in m)
        assert "no-such-folder" in said_line and "Traceback" not in said_line
        assert isinstance(app.screen, SetupScreen) and app.screen.check_action("lr_find", ()) is True
        assert os.listdir(runs_root) == []


@needs_check
async def test_preflight_pane_says_ok_for_the_default_and_names_a_real_problem(runs_root, no_gpu, tmp_path):
    app = create_app(runs_root, gpu_source=no_gpu)
    said = notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.screen.query_one(PreflightPane)
        await wait_for(pilot, lambda: pane.state == "ok", timeout=180, what="pre-flight ok for the default")
        assert "pre-flight ok" in str(pane.render())
        missing = tmp_path / "no-such-folder"
        editor = app.screen.query_one(RecipeEditor)
        await editor.show_section("data")
        for key, value in (("data.path", str(missing)), ("data.source", "imagefolder")):
            field = editor.field(key)
            if key == "data.source":
                field.control.value = value
            else:
                field.control.focus()
                field.control.value = value
                await pilot.press("enter")
            await pilot.pause()
        assert app.screen.recipe.data.source == "imagefolder"
        await wait_for(pilot, lambda: pane.state == "problems", timeout=180, what="the problem found")
        assert any("data.path" in p and "no-such-folder" in p for p in pane.problems), pane.problems
        assert "no-such-folder" in str(pane.render())
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: was_said(said, "not started: pre-flight found"), what="ctrl+s refused")
        assert isinstance(app.screen, SetupScreen) and os.listdir(runs_root) == []

"""Markers and the knobs form against a fake run (the test plays the worker): recorded pauses, knob
acks, faults and suspends drawn on the plots and listed in the log; the form sends only what changed;
the key is off when nothing listens; the compare screen lists knob changes."""

from __future__ import annotations

import json

import pytest
from fakerun import FakeRun
from ui_helpers import SIZE, screen_text, wait_for

from vittui.runs.events import ControlAck, Fault
from vittui.ui.app import create_app
from vittui.ui.screens.compare import CompareScreen
from vittui.ui.screens.knobs import KnobsModal
from vittui.ui.widgets.compare_table import CompareTable
from vittui.ui.widgets.metric_plot import MetricPlot

pytestmark = pytest.mark.anyio


def knob_ack(step: int, **changes) -> ControlAck:
    return ControlAck(command="set", id=f"k{step}", step=step, changes={k: list(v) for k, v in changes.items()})


def commands(fr: FakeRun) -> list[dict]:
    return fr.commands() if fr.run.commands_path.exists() else []


async def attached(app, pilot):
    await wait_for(pilot, lambda: app.screen.replayed and app.screen.recipe_knobs is not None, what="replayed")
    return app.screen


async def test_recorded_markers_are_drawn_on_both_plots_and_listed_in_the_log(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.steps(12)
    fake_run.set_state("paused", "paused by user")
    fake_run.set_state("running", "resumed")
    fake_run.emit(knob_ack(12, lr_multiplier=(1.0, 0.25)))
    fake_run.steps(10)
    fake_run.emit(Fault(fault="nan", step=23, message="loss is nan at step 23"))
    fake_run.set_state("paused", "non-finite loss at step 23")
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        monitor = await attached(app, pilot)
        loss, acc = monitor.query_one("#plot-loss", MetricPlot), monitor.query_one("#plot-acc", MetricPlot)
        want = [(12, "|| > lr x0.25"), (22, "||"), (23, "nan")]
        await wait_for(pilot, lambda: loss.drawn_markers == want, what=f"loss markers {want}")
        await wait_for(pilot, lambda: acc.drawn_markers == want, what="accuracy markers")
        assert "|| > lr x0.25" in screen_text(app)
        log = monitor.query_one("LogPane").lines_text
        marks = [line for line in log if line.startswith("MARK")]
        assert marks == ["MARK  [12] pause: paused by user", "MARK  [12] resume", "MARK  [12] lr_multiplier 1 -> 0.25",
                         "MARK  [23] nan: loss is nan at step 23", "MARK  [22] pause: non-finite loss at step 23"]
        assert any(line.startswith("ERROR [23] nan: loss is nan") for line in log)  # a fault keeps its own line

        # a marker that arrives live redraws the plot at once, and the form shows the value now in force
        fake_run.emit(knob_ack(22, lr_multiplier=(0.25, 0.1)))
        await wait_for(pilot, lambda: loss.drawn_markers[-2:] == [(22, "|| lr x0.1"), (23, "nan")], what="live marker")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, KnobsModal), what="form")
        assert app.screen.query_one("#knob-lr_multiplier").value == "0.1"


async def test_the_form_sends_only_what_changed(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.steps(3)
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        monitor = await attached(app, pilot)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, KnobsModal), what="form")
        assert app.screen.current == {"lr_multiplier": 1.0, "eval_every": 0, "probe_every": 50}  # demo-digits
        await pilot.press("enter")  # nothing changed: nothing sent
        await wait_for(pilot, lambda: app.screen is monitor, what="closed")
        assert commands(fake_run) == []

        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, KnobsModal), what="form again")
        field = app.screen.query_one("#knob-probe_every")
        field.focus()
        await pilot.pause()
        await pilot.press("end", "backspace", "backspace", "0", "enter")
        await wait_for(pilot, lambda: app.screen is monitor, what="sent")
        sent = commands(fake_run)
        assert [(c["command"], c["args"]) for c in sent] == [("set", {"probe_every": 0})]
        assert json.loads(fake_run.run.commands_path.read_text().splitlines()[-1])["args"]["probe_every"] == 0

        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, KnobsModal), what="form a third time")
        await pilot.press("escape")  # cancelled: nothing more sent
        await wait_for(pilot, lambda: app.screen is monitor, what="cancelled")
        assert len(commands(fake_run)) == 1


async def test_knobs_are_off_when_no_worker_listens(runs_root, no_gpu):
    fr = FakeRun(runs_root, name="done", state="finished")
    try:
        fr.started()
        fr.steps(3)
        fr.set_state("finished")
        app = create_app(runs_root, gpu_source=no_gpu, attach="done")
        async with app.run_test(size=SIZE) as pilot:
            monitor = await attached(app, pilot)
            assert monitor.check_action("knobs", ()) is None
            await pilot.press("k")
            assert app.screen is monitor and commands(fr) == []
    finally:
        fr.close()


async def test_compare_screen_lists_knob_changes(runs_root, no_gpu):
    a = FakeRun(runs_root, name="run-a", state="finished")
    b = FakeRun(runs_root, name="run-b", state="finished")
    try:
        for fr in (a, b):
            fr.started()
            fr.steps(5)
        a.emit(knob_ack(5, eval_every=(0, 20)))
        for fr in (a, b):
            fr.steps(5)
            fr.set_state("finished")
        app = create_app(runs_root, gpu_source=no_gpu, attach="run-a")
        async with app.run_test(size=SIZE) as pilot:
            await attached(app, pilot)
            app.push_screen(CompareScreen([a.path, b.path]))
            await wait_for(pilot, lambda: isinstance(app.screen, CompareScreen) and app.screen.comparison is not None,
                           what="comparison")
            rows = app.screen.query_one(CompareTable).rows_text
            assert ["knob changes", "1", "0"] in rows
            assert ["  change 1", "@5 eval_every 0 -> 20", "-"] in rows
            await wait_for(pilot, lambda: "@5 eval_every 0 -> 20" in screen_text(app), what="shown")
    finally:
        a.close()
        b.close()

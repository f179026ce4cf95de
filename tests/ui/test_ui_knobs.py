"""The live knobs form (`k`) against a real tiny worker: a bad value is refused in the form and nothing is
sent; lr multiplier 0.5 and an eval interval are acknowledged by the worker (old -> new), the next steps'
lr is half the schedule's (computed here from the recipe, not by the worker's scheduler), evaluations come
at the new interval, and the change is a marker drawn on the loss plot and listed in the log. Once the run
has ended the key is off."""

from __future__ import annotations

import math

import pytest
from tiny import TINY_PROCESS, stop_worker
from ui_helpers import SIZE, screen_text, start_from_setup, wait_for

import vittui.train.worker  # noqa: F401  (an ImportError here fails the test, never skips it)
from vittui import recipe as R
from vittui.runs import control
from vittui.runs.events import ControlAck, Eval, RunStarted, Step, read_all
from vittui.runs.history import Marker
from vittui.ui.app import create_app
from vittui.ui.screens.knobs import KnobsModal
from vittui.ui.widgets.metric_plot import MetricPlot

pytestmark = pytest.mark.anyio

EVAL_EVERY = 5


def tiny_recipe() -> R.Recipe:
    return R.load_preset("demo-digits").with_overrides([*TINY_PROCESS, "run.name=tiny-knobs"])


def scheduled_lr(recipe: R.Recipe, total_steps: int, step: int) -> float:
    """Cosine from optim.lr to schedule.min_lr over the run, no warmup (TINY_PROCESS sets none): the
    schedule's lr at `step`, by its formula."""
    assert recipe.schedule.kind == "cosine" and recipe.schedule.warmup_epochs == 0
    lr, low = recipe.optim.lr, recipe.schedule.min_lr
    return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * step / total_steps))


def set_ack(run) -> ControlAck | None:
    return next((e for e in read_all(run.events_path) if isinstance(e, ControlAck) and e.command == "set"), None)


def commands_text(run) -> str:
    return run.commands_path.read_text() if run.commands_path.exists() else ""


async def type_into(pilot, modal: KnobsModal, knob: str, text: str) -> None:
    """Focus the knob's field, delete what it holds, type `text`."""
    field = modal.query_one(f"#knob-{knob}")
    field.focus()
    await pilot.pause()
    await pilot.press("end", *["backspace"] * len(field.value), *text)


@pytest.mark.slow  # a real worker trained past two knob changes (50-130 s on the shared 2 cores)
async def test_knobs_form_sets_lr_multiplier_and_eval_interval_on_a_live_worker(runs_root, no_gpu):
    recipe = tiny_recipe()
    app = create_app(runs_root, gpu_source=no_gpu, recipe=recipe)
    run = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            monitor = await start_from_setup(app, pilot)
            run = monitor.run
            await wait_for(pilot, lambda: monitor.history.step > 0 and monitor.recipe_knobs is not None,
                           timeout=120, what="first steps")

            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, KnobsModal), what="knobs form")
            form = app.screen
            assert form.current == {"lr_multiplier": 1.0, "eval_every": recipe.run.eval_every,
                                    "probe_every": recipe.run.probe_every}
            assert form.query_one("#knob-lr_multiplier").value == "1"

            # a bad value: the form says so in one line, stays open, and nothing reaches the worker
            before = commands_text(run)
            await type_into(pilot, form, "lr_multiplier", "-0.5")
            await pilot.press("enter")
            assert app.screen is form
            error = str(form.query_one("#knobs-error").render())
            assert error == "! lr_multiplier must be > 0 (got -0.5); nothing sent"
            assert error in screen_text(app)
            await type_into(pilot, form, "eval_every", "2.5")
            await type_into(pilot, form, "lr_multiplier", "0.5")
            await pilot.press("enter")
            assert app.screen is form and "eval_every must be a whole number" in str(form.query_one("#knobs-error").render())
            assert commands_text(run) == before

            await type_into(pilot, form, "eval_every", str(EVAL_EVERY))
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.screen is monitor, what="form closed")
            ack = await _wait(pilot, lambda: set_ack(run), "the worker's ack")
            assert ack.ok and ack.changes == {"lr_multiplier": [1.0, 0.5], "eval_every": [recipe.run.eval_every,
                                                                                          EVAL_EVERY]}

            # the next steps train at half the scheduled lr; the ones before at the schedule's
            at = ack.step
            await wait_for(pilot, lambda: monitor.history.step >= at + 2 * EVAL_EVERY, timeout=120, what="more steps")
            evs = read_all(run.events_path)
            total = next(e.total_steps for e in evs if isinstance(e, RunStarted))
            steps = [e for e in evs if isinstance(e, Step)]
            assert [e.step for e in steps if e.step > at][:3] == [at + 1, at + 2, at + 3]
            for e in steps:
                want = scheduled_lr(recipe, total, e.step) * (0.5 if e.step > at else 1.0)
                assert e.lr == pytest.approx(want, rel=1e-6), (e.step, at, e.lr, want)
            # evaluations at the new interval (and at epoch ends, as before)
            spe = next(e.steps_per_epoch for e in evs if isinstance(e, RunStarted))
            # (before the last step read: its evaluation may still be running)
            due = [s for s in range(at + 1, steps[-1].step) if s % EVAL_EVERY == 0 and s % spe]
            assert due and set(due) <= {e.step for e in evs if isinstance(e, Eval)}

            # the change is a marker: in the fold, drawn on the loss plot, listed in the log
            mark = Marker(at, "knob", "lr_multiplier 1 -> 0.5", "lr x0.5")
            assert mark in monitor.history.markers
            assert monitor.knobs["lr_multiplier"] == 0.5 and monitor.knobs["eval_every"] == EVAL_EVERY
            plot = monitor.query_one("#plot-loss", MetricPlot)
            # both changes share the step's line and its tag
            await wait_for(pilot, lambda: (at, "lr x0.5 eval 5") in plot.drawn_markers, what="marker drawn")
            try:
                await wait_for(pilot, lambda: "lr x0.5 eval 5" in screen_text(app), what="marker on screen")
            except AssertionError as e:
                raise AssertionError(f"{e}; the screen:\n{screen_text(app)}") from None
            log = monitor.query_one("LogPane").lines_text
            assert f"MARK  [{at}] lr_multiplier 1 -> 0.5" in log

            # the form again: it opens at the values now in force
            await pilot.press("k")
            await wait_for(pilot, lambda: isinstance(app.screen, KnobsModal), what="knobs form again")
            assert app.screen.query_one("#knob-lr_multiplier").value == "0.5"
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.screen is monitor, what="form cancelled")

            control.send(run.path, "stop")
            await wait_for(pilot, lambda: monitor.state in ("stopped", "finished"), timeout=60, what="stopped")
            assert monitor.check_action("knobs", ()) is None  # nothing is listening any more
            await pilot.press("k")
            assert app.screen is monitor
    finally:
        stop_worker(run)


async def _wait(pilot, get, what: str, timeout: float = 60.0):
    box = []
    await wait_for(pilot, lambda: box.append(get()) or box[-1] is not None, timeout=timeout, what=what)
    return box[-1]

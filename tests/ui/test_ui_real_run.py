"""The dashboard against the real launcher and worker: start a tiny run from the setup screen, watch
steps arrive, pause (steps hold), resume, detach (the run goes on), re-attach from the runs screen with
the history rebuilt, stop."""

from __future__ import annotations

import json

import pytest
from tiny import TINY_PROCESS, stop_worker
from ui_helpers import SIZE, start_from_setup, wait_for

import vittui.train.worker  # noqa: F401  (an ImportError here fails the test, never skips it)
from vittui import recipe as R
from vittui.runs import registry
from vittui.runs.events import CheckpointSaved, ControlAck, Step, read_all
from vittui.ui.app import create_app
from vittui.ui.screens.monitor import MonitorScreen
from vittui.ui.screens.runs import RunsScreen
from vittui.ui.widgets.metric_plot import MetricPlot
from vittui.ui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.anyio


def tiny_recipe() -> R.Recipe:
    """The demo preset made tiny with the shared worker overrides (a run that never ends by itself)."""
    return R.load_preset("demo-digits").with_overrides([*TINY_PROCESS, "run.name=tiny-ui"])


def steps_on_disk(run) -> int:
    return sum(isinstance(e, Step) for e in read_all(run.events_path))


def last_command_id(run) -> str:
    return json.loads(run.commands_path.read_text().splitlines()[-1])["id"]


def ack_of(run, command_id: str) -> ControlAck | None:
    return next((e for e in read_all(run.events_path) if isinstance(e, ControlAck) and e.id == command_id), None)


async def test_start_pause_resume_detach_reattach_stop(runs_root, no_gpu):
    app = create_app(runs_root, gpu_source=no_gpu, recipe=tiny_recipe())
    run = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            monitor = await start_from_setup(app, pilot)
            run = monitor.run
            assert run.name == "tiny-ui"
            await wait_for(pilot, lambda: monitor.history.step > 0, timeout=120, what="first steps")

            await pilot.press("space")
            await wait_for(pilot, lambda: monitor.state == "paused", timeout=60, what="paused")
            held = run.read_status().step
            on_disk = steps_on_disk(run)
            # the pause holds: a checkpoint asked for while paused is done and acknowledged at the held step,
            # and no step arrived meanwhile (the worker answered, so it was reading commands, not training)
            await pilot.press("c")
            ckpt_id = last_command_id(run)
            await wait_for(pilot, lambda: ack_of(run, ckpt_id) is not None, timeout=60, what="checkpoint ack")
            assert ack_of(run, ckpt_id).step == held
            assert steps_on_disk(run) == on_disk and run.read_status().step == held
            assert any(isinstance(e, CheckpointSaved) and e.step == held for e in read_all(run.events_path))
            assert "PAUSED" in monitor.query_one("RunHeader").text

            await pilot.press("space")
            await wait_for(pilot, lambda: monitor.state != "paused", timeout=60, what="resumed")
            log = "\n".join(monitor.query_one("LogPane").lines_text)
            assert monitor.state == "running", f"after resume the run is {monitor.state}:\n{log}"
            await wait_for(pilot, lambda: monitor.history.step > held, timeout=60, what="steps after resume")

            await pilot.press("d")
            await wait_for(pilot, lambda: not app.is_running, what="detached")
        assert app.return_value == "detached"
        assert registry.run_state(run) == "running"  # detaching leaves the run going

        app2 = create_app(runs_root, gpu_source=no_gpu)
        async with app2.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+r")
            assert isinstance(app2.screen, RunsScreen)
            table = app2.screen.query_one(RunsTable)
            await wait_for(pilot, lambda: [r.name for r in table.rows_data] == ["tiny-ui"], what="runs listed")
            assert table.rows_data[0].state == "running"
            await pilot.press("enter")
            assert isinstance(app2.screen, MonitorScreen)
            monitor = app2.screen
            await wait_for(pilot, lambda: monitor.replayed and monitor.query_one("#plot-loss").draws > 1)
            n = monitor.query_one("#plot-loss", MetricPlot).series_lengths()["train (ema 0.6)"]
            assert n >= held  # the whole history is back in the plot

            await pilot.press("s", "y")
            await wait_for(pilot, lambda: monitor.state in ("stopped", "finished"), timeout=60, what="stopped")
            await pilot.press("q")
            await wait_for(pilot, lambda: not app2.is_running)
    finally:
        # never leave a worker training after a failed test: ask it to stop, and kill it if it does not end
        stop_worker(run)

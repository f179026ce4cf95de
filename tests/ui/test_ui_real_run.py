"""The dashboard against the real launcher and worker: start a tiny run from the setup screen, watch
steps arrive, pause (steps hold), resume, detach (the run goes on), re-attach from the runs screen with
the history rebuilt, stop."""

from __future__ import annotations

import time

import pytest
from ui_helpers import SIZE, wait_for

from vittui import recipe as R
from vittui.runs import control
from vittui.runs.events import Step, read_all
from vittui.runs import registry
from vittui.runs.lock import pid_alive
from vittui.ui.app import create_app
from vittui.ui.screens.monitor import MonitorScreen
from vittui.ui.screens.runs import RunsScreen
from vittui.ui.widgets.metric_plot import MetricPlot
from vittui.ui.widgets.runs_table import RunsTable

pytest.importorskip("vittui.train.worker")
pytestmark = pytest.mark.anyio

TINY = [
    ("model.num_heads", 2), ("model.embed_dim", 32), ("model.depth", 1), ("model.img_size", 16),
    ("data.limit", 256), ("data.batch_size", 16), ("schedule.epochs", 400), ("schedule.max_steps", 5000),
    ("schedule.warmup_epochs", 0.0), ("compute.threads", 1), ("run.name", "tiny-ui"),
]


def tiny_recipe() -> R.Recipe:
    r = R.load_preset("demo-digits")
    for key, value in TINY:  # the same validator the editor uses
        r = R.set_value(r, key, value)
    return r


def steps_on_disk(run) -> int:
    return sum(isinstance(e, Step) for e in read_all(run.events_path))


async def test_start_pause_resume_detach_reattach_stop(runs_root, no_gpu):
    app = create_app(runs_root, gpu_source=no_gpu, recipe=tiny_recipe())
    run = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), timeout=10, what="monitor")
            monitor = app.screen
            run = monitor.run
            assert run.name == "tiny-ui"
            await wait_for(pilot, lambda: monitor.history.step > 0, timeout=60, what="first steps")

            await pilot.press("space")
            await wait_for(pilot, lambda: monitor.state == "paused", timeout=15, what="paused")
            held = run.read_status().step
            on_disk = steps_on_disk(run)
            await pilot.pause(0.8)
            assert steps_on_disk(run) == on_disk and run.read_status().step == held  # pause holds
            assert "PAUSED" in monitor.query_one("RunHeader").text

            await pilot.press("space")
            await wait_for(pilot, lambda: monitor.state != "paused", timeout=15, what="resumed")
            log = "\n".join(monitor.query_one("LogPane").lines_text)
            assert monitor.state == "running", f"after resume the run is {monitor.state}:\n{log}"
            await wait_for(pilot, lambda: monitor.history.step > held, timeout=15, what="steps after resume")

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
            await wait_for(pilot, lambda: monitor.state in ("stopped", "finished"), timeout=20, what="stopped")
            await pilot.press("q")
            await wait_for(pilot, lambda: not app2.is_running)
    finally:
        if run is not None and registry.run_state(run) in ("starting", "running", "paused"):
            control.send(run.path, "stop")  # never leave a worker training after a failed test
            status = run.read_status()
            deadline = time.monotonic() + 10
            while status and pid_alive(status.pid) and time.monotonic() < deadline:
                time.sleep(0.1)

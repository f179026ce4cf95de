"""The dashboard attaches to a run a Slurm job trains: the app factory on the runs folder, the runs screen
lists it with its state and job, Enter opens the monitor and its steps arrive; pause and suspend from the
monitor reach the job's worker, and the runs screen's resume submits a new job that continues the run."""

from __future__ import annotations

import pytest
from slurm_helpers import job_ids
from tiny import TINY_PROCESS, tiny_toml, wait_for

from vittui.hardware import FakeSource, HostSnapshot
from vittui.runs import control
from vittui.ui.app import create_app
from vittui.ui.screens.monitor import MonitorScreen
from vittui.ui.screens.runs import RunsScreen
from vittui.ui.widgets.runs_table import RunsTable

pytestmark = [pytest.mark.slurm, pytest.mark.anyio]

SIZE = (120, 40)
HOST = HostSnapshot(cpu_percent=12.0, cpu_count=2, ram_used=2 << 30, ram_total=8 << 30, worker_rss=300 << 20,
                    worker_cpu_percent=95.0)


async def pilot_wait(pilot, cond, timeout: float = 120.0, what: str = "") -> None:
    """Let the app run until `cond()` holds."""
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await pilot.pause(0.05)


@pytest.mark.slow  # two job starts and a suspend: ~75 s on a busy 2-core box
async def test_dashboard_attaches_to_a_slurm_run(cli, tmp_path, slurm_cluster):
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS)  # never ends by itself: stopped below
    cli("train", str(toml), "--executor", "slurm", "--name", "d")
    run = cli.root / "d"
    slurm_cluster.extend(job_ids(run))
    try:
        app = create_app(cli.root, gpu_source=FakeSource([], HOST, reason="no GPU in this test"))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("ctrl+r")
            assert isinstance(app.screen, RunsScreen)
            table = app.screen.query_one(RunsTable)
            # the list is scanned in a thread worker (squeue never runs on the event loop)
            await pilot_wait(pilot, lambda: [(r.name, r.state) for r in table.rows_data] == [("d", "running")],
                             timeout=180, what="the slurm run listed as running")
            row = table.rows_data[0]
            assert (row.executor, row.job_id, row.job_state) == ("slurm", slurm_cluster[0], "RUNNING")
            assert table.get_row_at(0)[2] == f"running (slurm {row.job_id})"  # the state cell names the job
            await pilot.press("enter")
            assert isinstance(app.screen, MonitorScreen)
            monitor = app.screen
            await pilot_wait(pilot, lambda: monitor.replayed and monitor.history.step > 0, what="steps replayed")
            seen = monitor.history.step
            await pilot_wait(pilot, lambda: monitor.history.step > seen + 2, what="new steps arriving live")
            assert monitor.state == "running"
            await pilot.press("space")  # pause from the dashboard reaches the job's worker
            await pilot_wait(pilot, lambda: monitor.state == "paused", timeout=60, what="paused")
            await pilot.press("z")  # suspend: the worker checkpoints and exits, and so does its job
            await pilot_wait(pilot, lambda: monitor.state == "suspended", timeout=60, what="suspended")
            at = monitor.history.step

            # the runs screen resumes it as a new sbatch job (in a thread worker) and opens the monitor on it
            await pilot.press("r")
            runs = app.screen
            assert isinstance(runs, RunsScreen)
            table = runs.query_one(RunsTable)
            await pilot_wait(pilot, lambda: table.rows_data and table.rows_data[0].resumable, what="resumable")
            await pilot.press("u")
            await pilot_wait(pilot, lambda: len(job_ids(run)) == 2, what="a second job submitted")
            slurm_cluster.extend(job_ids(run)[1:])
            await pilot_wait(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen is not monitor,
                             what="the monitor on the resubmitted run")
            monitor = app.screen
            await pilot_wait(pilot, lambda: monitor.history.step > at + 2, timeout=180, what="steps after resubmit")
            assert monitor.state == "running"
    finally:
        control.send(run, "stop")
        wait_for(lambda: not [j for j in slurm_cluster if _running(j)], timeout=120, what="the job to end")


def _running(job: str) -> bool:
    from slurm_helpers import squeue_state

    return squeue_state(job) in ("RUNNING", "PENDING", "COMPLETING")

"""The runs screen's resume key: offered only for a run no worker is behind that has a checkpoint; it
relaunches through the launcher (recorded here; tests/e2e/test_suspend.py relaunches for real) and attaches."""

from __future__ import annotations

import pytest
from fakerun import FakeRun
from ui_helpers import SIZE, runs_screen_from, screen_text, wait_for

from vittui.runs import launcher
from vittui.ui.app import create_app
from vittui.ui.screens.monitor import MonitorScreen

pytestmark = pytest.mark.anyio


def finished_and_suspended(runs_root):
    done = FakeRun(runs_root, name="done")
    done.started()
    done.steps(10)
    done.set_state("finished")
    sus = FakeRun(runs_root, name="sus")
    sus.started()
    sus.steps(6)
    step = sus.run.checkpoints / "step-00000006"
    step.mkdir(parents=True)
    (step / "state.pt").write_bytes(b"")
    sus.set_state("suspended", "suspended by user: checkpoint at step 6, worker exited")
    return done, sus


async def test_resume_key_relaunches_a_suspended_run_and_attaches(runs_root, no_gpu, monkeypatch):
    done, sus = finished_and_suspended(runs_root)
    launched = []
    monkeypatch.setattr(launcher, "resume", lambda run, **kw: launched.append(run.name))
    app = create_app(runs_root, gpu_source=no_gpu, attach="done")
    async with app.run_test(size=SIZE) as pilot:
        table = await runs_screen_from(app, pilot, 2)
        assert "suspended" in screen_text(app)
        names = [r.name for r in table.rows_data]
        table.move_cursor(row=names.index("done"))
        await pilot.pause()
        assert app.screen.check_action("resume_run", ()) is None  # a finished run does not resume
        await pilot.press("u")
        assert launched == []
        table.move_cursor(row=names.index("sus"))
        await pilot.pause()
        assert app.screen.check_action("resume_run", ()) is True
        await wait_for(pilot, lambda: "u Resume" in screen_text(app).rstrip().splitlines()[-1], what="footer")
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="the monitor attached")
        assert launched == ["sus"]
        assert app.screen.run.name == "sus"
    done.close()
    sus.close()


async def test_resume_key_is_off_for_a_stopped_run_without_a_checkpoint(runs_root, no_gpu):
    stopped = FakeRun(runs_root, name="stopped")
    stopped.started()
    stopped.set_state("stopped")
    app = create_app(runs_root, gpu_source=no_gpu, attach="stopped")
    async with app.run_test(size=SIZE) as pilot:
        await runs_screen_from(app, pilot, 1)
        assert app.screen.check_action("resume_run", ()) is None
    stopped.close()

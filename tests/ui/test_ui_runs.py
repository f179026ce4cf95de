"""The runs screen's keys: u resumes a real suspended worker (off the event loop; the row's state changes
and a notification says so), k clones a run's recipe into the setup screen, x deletes a finished run after
a confirmation and is never offered for a live one, queued runs show their place in line."""

from __future__ import annotations

import os

import pytest
from fakerun import FakeRun
from tiny import TINY_PROCESS, events, kill_if_alive, status, step_numbers
from tiny import wait_for as wait_sync
from ui_helpers import SIZE, footer_enabled, notifications, runs_screen_from, wait_for, was_said

from vittui import recipe as R
from vittui.runs import control, launcher
from vittui.runs.lock import pid_alive
from vittui.ui.app import create_app
from vittui.ui.screens.modals import ConfirmModal
from vittui.ui.screens.runs import RunsScreen
from vittui.ui.screens.setup import SetupScreen
from vittui.ui.widgets.recipe_editor import RecipeEditor
from vittui.ui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.anyio


def row_of(table: RunsTable, name: str) -> int:
    return [r.name for r in table.rows_data].index(name)


async def cursor_on(pilot, table: RunsTable, name: str) -> None:
    table.move_cursor(row=row_of(table, name))
    await pilot.pause()


def ended(runs_root, name: str, state: str = "finished", steps: int = 10) -> FakeRun:
    """A run its (fake) worker has left in `state` after `steps` steps."""
    fr = FakeRun(runs_root, name=name)
    fr.started(); fr.steps(steps); fr.set_state(state); fr.close()
    return fr


async def open_runs(app, pilot, runs: int) -> RunsTable:
    """From the setup screen: ctrl+r, then the table once it lists `runs` runs."""
    await pilot.press("ctrl+r")
    assert isinstance(app.screen, RunsScreen)
    table = app.screen.query_one(RunsTable)
    await wait_for(pilot, lambda: len(table.rows_data) == runs, what="runs listed")
    return table


def suspended_worker(runs_root):
    """A real tiny detached worker, suspended (checkpoint, exit) after a few steps: (run dir, the step it
    stopped at). The caller kills whatever pid status.json names afterwards."""
    recipe = R.Recipe().with_overrides(TINY_PROCESS + ["run.name=sus"])
    run = launcher.launch(recipe, runs_root)
    pid = status(run.path).get("pid")
    try:
        wait_sync(lambda: len(step_numbers(events(run.path))) >= 3, timeout=180, what="three steps")
        control.send(run.path, "suspend")
        wait_sync(lambda: status(run.path).get("state") == "suspended", timeout=120, what="suspended")
        wait_sync(lambda: not pid_alive(pid), timeout=60, what="the suspended worker to exit")
    except BaseException:
        kill_if_alive(pid)
        raise
    return run, status(run.path)["step"]


@pytest.mark.slow  # ~13 s: a real worker suspended and resumed; the default tier stays under 10 minutes
async def test_resume_key_resumes_a_real_suspended_worker(runs_root, no_gpu):
    ended(runs_root, "done")
    run, at = suspended_worker(runs_root)
    assert status(run.path)["last_checkpoint_step"] == at
    app = create_app(runs_root, gpu_source=no_gpu)
    said = notifications(app)
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = await open_runs(app, pilot, 2)
            await cursor_on(pilot, table, "done")
            assert app.screen.check_action("resume_run", ()) is None  # a finished run does not resume
            await wait_for(pilot, lambda: "Resume" not in footer_enabled(app) and "Delete" in footer_enabled(app),
                           what="the footer without resume")
            why = str(app.screen.query_one("#runs-why").render())
            assert "run done is finished; only suspended, stopped, failed or lost runs resume" in why
            await pilot.press("u")
            table.move_cursor(row=row_of(table, "sus"))
            await wait_for(pilot, lambda: "Resume" in footer_enabled(app), what="resume offered in the footer")
            assert str(app.screen.query_one("#runs-why").render()) == ""
            assert table.rows_data[row_of(table, "sus")].state == "suspended"
            await pilot.press("u")
            await wait_for(pilot, lambda: was_said(said, f"resuming sus from step {at}"), what="the notification")
            assert isinstance(app.screen, RunsScreen)  # stays on the list
            await wait_for(pilot, lambda: table.rows_data[row_of(table, "sus")].state in ("starting", "running"),
                           timeout=60, what="the row's state to change")
            await wait_for(pilot, lambda: any(s > at for s in step_numbers(events(run.path))), timeout=180,
                           what="the resumed worker's steps")
            steps = step_numbers(events(run.path))
            assert steps[: at + 1] == list(range(1, at + 2))  # it continued from the checkpoint, no gap
            assert app.screen.check_action("resume_run", ()) is None  # a worker is behind it now
            assert not was_said(said, "could not resume")
    finally:
        kill_if_alive(status(run.path).get("pid"))


async def test_resume_key_is_off_for_a_stopped_run_without_a_checkpoint(runs_root, no_gpu):
    stopped = FakeRun(runs_root, name="stopped")
    stopped.started()
    stopped.set_state("stopped")
    app = create_app(runs_root, gpu_source=no_gpu, attach="stopped")
    async with app.run_test(size=SIZE) as pilot:
        await runs_screen_from(app, pilot, 1)
        assert app.screen.check_action("resume_run", ()) is None
        await wait_for(pilot, lambda: "has no checkpoint to resume from" in str(app.screen.query_one("#runs-why").render()),
                       what="why not, under the table")
    stopped.close()


async def test_clone_opens_the_setup_screen_with_the_runs_recipe(runs_root, no_gpu):
    fr = ended(runs_root, "tuned", "stopped", steps=3)
    recipe = R.load(fr.run.recipe_path).with_overrides(["data.batch_size=48", "optim.lr=3e-4", "model.depth=3"])
    R.save(recipe, fr.run.recipe_path)
    assert recipe != R.load_preset("demo-digits")
    app = create_app(runs_root, gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(app, pilot, 1)
        await wait_for(pilot, lambda: "Clone" in footer_enabled(app), what="clone offered")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen), what="the setup screen")
        assert app.screen.recipe == R.load(fr.run.recipe_path)
        editor = app.screen.query_one(RecipeEditor)
        assert editor.recipe == R.load(fr.run.recipe_path)
        for key, shown in (("data.batch_size", "48"), ("optim.lr", "0.0003"), ("model.depth", "3")):
            await editor.show_section(key.split(".")[0])
            assert editor.field(key).control.value == shown, key
        assert app.screen.query_one("#preset").value is app.screen.query_one("#preset").NULL
        assert len(app.screen_stack) == 2
        del table


async def test_delete_asks_and_never_touches_a_live_run(runs_root, no_gpu):
    old = ended(runs_root, "old")
    live = FakeRun(runs_root, name="live")  # this test process plays its worker: alive
    live.started(); live.steps(2)
    app = create_app(runs_root, gpu_source=no_gpu)
    said = notifications(app)
    try:
        async with app.run_test(size=SIZE) as pilot:
            table = await open_runs(app, pilot, 2)
            await cursor_on(pilot, table, "live")
            assert app.screen.check_action("delete_run", ()) is None
            await wait_for(pilot, lambda: "Delete" not in footer_enabled(app) and "Clone" in footer_enabled(app),
                           what="the footer without delete")
            await pilot.press("x")
            await pilot.pause()
            assert isinstance(app.screen, RunsScreen) and live.path.exists()

            table.move_cursor(row=row_of(table, "old"))
            await wait_for(pilot, lambda: "Delete" in footer_enabled(app), what="delete offered")
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the question")
            await pilot.press("n")
            await wait_for(pilot, lambda: isinstance(app.screen, RunsScreen), what="back on the list")
            assert old.path.exists() and len(table.rows_data) == 2

            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="the question again")
            await pilot.press("y")
            await wait_for(pilot, lambda: not old.path.exists(), what="the folder removed")
            await wait_for(pilot, lambda: [r.name for r in table.rows_data] == ["live"], what="the table updated")
            assert was_said(said, "deleted old")
            assert live.path.exists() and sorted(os.listdir(runs_root)) == ["live"]
    finally:
        live.close()


def with_checkpoint(fr: FakeRun, step: int) -> None:
    """A complete checkpoint folder as the worker leaves it (registry.has_checkpoint looks for state.pt)."""
    folder = fr.run.checkpoints / f"step-{step:08d}"
    folder.mkdir(parents=True)
    (folder / "state.pt").write_bytes(b"")


async def test_queued_runs_show_their_place_in_line_and_resume_goes_through_the_queue(runs_root, no_gpu, queue_held):
    q = queue_held
    recipe = R.Recipe().with_overrides(TINY_PROCESS)
    first, second, third = (q.enqueue(recipe, runs_root, name) for name in ("first", "second", "third"))
    sus = FakeRun(runs_root, name="sus")
    sus.started(); sus.steps(4); sus.status.last_checkpoint_step = 4; sus.set_state("suspended"); sus.close()
    with_checkpoint(sus, 4)
    app = create_app(runs_root, gpu_source=no_gpu)
    said = notifications(app)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(app, pilot, 4)

        def states() -> dict[str, str]:
            return {name: table.get_row(str(runs_root / name))[2] for name in ("first", "second", "third", "sus")}

        await wait_for(pilot, lambda: states()["third"] == "queued #3", what="positions")
        assert states() == {"first": "queued #1", "second": "queued #2", "third": "queued #3", "sus": "suspended"}
        q.top(third)  # the line changes behind the screen's back: the next scan shows it
        await wait_for(pilot, lambda: states()["third"] == "queued #1", what="the new order")
        assert [states()[n] for n in ("first", "second")] == ["queued #2", "queued #3"]

        table.move_cursor(row=row_of(table, "sus"))
        await wait_for(pilot, lambda: "Resume" in footer_enabled(app), what="resume offered")
        await pilot.press("u")
        await wait_for(pilot, lambda: was_said(said, "sus queued to resume from step 4 (#4 in line)"),
                       what="the notification")
        await wait_for(pilot, lambda: states()["sus"] == "queued #4", what="the row queued")
        assert q.read_entry(sus.run).resume is True
        assert not sus.run.lock_path.exists() and status(sus.path)["pid"] == 0  # no worker started here
    del first, second


async def test_many_runs_fill_the_table_newest_first_and_rows_keep_updating(runs_root, no_gpu, monkeypatch):
    """More runs than one batch of rows: every run ends up in the table from one scan (the batches follow
    frame by frame, not rescans: the periodic rescan is off here), newest first, and a run whose state
    changes on disk shows on the next rescan (in place; final-state runs come from the summary cache until
    their files change)."""
    import vittui.ui.screens.runs as runs_screen
    from vittui.ui.widgets.runs_table import BATCH

    monkeypatch.setattr(runs_screen, "REFRESH_S", 3600.0)

    n = BATCH * 2 + 7
    fakes = []
    for i in range(n):
        fr = FakeRun(runs_root, name=f"r{i:03d}")
        fr.set_state("finished")
        fr.close()
        os.utime(fr.run.recipe_path, (1_700_000_000 + i, 1_700_000_000 + i))  # r000 oldest
        fakes.append(fr)
    app = create_app(runs_root, gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        table = await open_runs(app, pilot, n)
        await wait_for(pilot, lambda: table.complete and table.row_count == n, what="every row in the table")
        expected = [f"r{i:03d}" for i in reversed(range(n))]
        assert [str(table.get_row_at(i)[1]) for i in range(n)] == expected
        middle = fakes[BATCH + 3]
        middle.status.best_top1, middle.status.state = 0.9, "stopped"
        middle.run.write_status(middle.status)
        key = str(middle.path)
        app.screen.rescan()  # as a resume or a delete asks for one
        await wait_for(pilot, lambda: table.get_row(key)[2] == "stopped" and table.get_row(key)[4] == "90.0%",
                       what="the changed run's row")
        assert table.row_count == n and [str(table.get_row_at(i)[1]) for i in range(n)] == expected

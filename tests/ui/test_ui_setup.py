"""Setup screen: model table filter, recipe editor validation, presets, runs screen, first frame without torch."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from ui_helpers import SIZE, wait_for
from fakerun import FakeRun

from vittui import recipe as R
from vittui.ui.app import create_app
from vittui.ui.screens.modals import SavePresetModal
from vittui.ui.screens.monitor import MonitorScreen
from vittui.ui.screens.runs import RunsScreen
from vittui.ui.screens.setup import SetupScreen
from vittui.ui.widgets.metric_plot import MetricPlot
from vittui.ui.widgets.model_table import ModelTable
from vittui.ui.widgets.recipe_editor import RecipeEditor
from vittui.ui.widgets.runs_table import RunsTable

pytestmark = pytest.mark.anyio


async def type_into(pilot, app, key: str, text: str, keys: bool = False) -> None:
    """Focus a recipe field, put `text` in it (typed with real keys when `keys`), then press enter."""
    editor = app.screen.query_one(RecipeEditor)
    if editor.section != key.split(".")[0]:
        await editor.show_section(key.split(".")[0])
    field = editor.field(key)
    control = field.control
    control.focus()
    await pilot.pause()
    if keys:
        control.value = ""
        await pilot.press(*text, "enter")
    else:
        control.value = text
        await pilot.press("enter")


async def test_default_recipe_is_demo_digits_and_editor_validates(runs_root, no_gpu, tmp_path):
    app = create_app(runs_root, gpu_source=no_gpu, user_presets=tmp_path / "presets-user")
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, SetupScreen)
        assert app.screen.recipe == R.load_preset("demo-digits")
        editor = app.screen.query_one(RecipeEditor)
        assert editor.field("model.embed_dim").control.value == "96"
        await editor.show_section("optim")
        lr = editor.field("optim.lr")
        assert lr.control.value == "0.001"

        # a bad value: message inline, old value kept (in the field and in the recipe)
        await type_into(pilot, app, "optim.lr", "-1", keys=True)
        assert "optim.lr must be > 0" in lr.error
        assert lr.control.value == "0.001"
        assert app.screen.recipe.optim.lr == 1e-3
        assert lr.has_class("-invalid")

        # a good value is accepted and clears the message
        await type_into(pilot, app, "optim.lr", "3e-4")
        assert app.screen.recipe.optim.lr == 3e-4 and lr.error == ""

        # a value that is fine alone but breaks a cross-field rule is refused too
        await type_into(pilot, app, "model.embed_dim", "100")
        assert "divisible by model.num_heads" in editor.field("model.embed_dim").error
        assert app.screen.recipe.model.embed_dim == 96

        # text that is not a number
        await type_into(pilot, app, "data.batch_size", "lots")
        assert "must be an integer" in editor.field("data.batch_size").error
        assert app.screen.recipe.data.batch_size == 64

        # tuples and optional fields
        await type_into(pilot, app, "augment.crop_scale", "0.5, 1.0")
        assert app.screen.recipe.augment.crop_scale == (0.5, 1.0)
        await type_into(pilot, app, "model.mlp_ratio", "2")
        assert app.screen.recipe.model.mlp_ratio == 2.0
        await type_into(pilot, app, "model.mlp_ratio", "")
        assert app.screen.recipe.model.mlp_ratio is None

        # a Switch and a Select
        await editor.show_section("regularize")
        ema = editor.field("regularize.ema")
        ema.control.focus()
        await pilot.press("enter")
        assert app.screen.recipe.regularize.ema is True
        await editor.show_section("schedule")
        editor.field("schedule.kind").control.value = "constant"
        await pilot.pause()
        assert app.screen.recipe.schedule.kind == "constant"

        # save as preset, to a path the user types; the file loads back to the same recipe
        target = tmp_path / "mine" / "tuned.toml"
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, SavePresetModal)
        assert app.screen.query_one("#preset-path").value.endswith("presets-user/demo-digits.toml")
        app.screen.query_one("#preset-path").value = str(target)
        await pilot.press("enter")
        await wait_for(pilot, lambda: target.exists())
        assert R.load(target) == app.screen.recipe

        # load a preset: the editor shows its values
        app.screen.query_one("#preset").value = "deit-tiny-scratch"
        await pilot.pause()
        expected = R.load_preset("deit-tiny-scratch")
        assert app.screen.recipe == expected
        await editor.show_section("optim")
        assert editor.field("optim.lr").control.value == f"{expected.optim.lr:g}"


async def test_model_table_filters_as_you_type_and_enter_picks(runs_root, no_gpu, monkeypatch):
    from types import SimpleNamespace

    import vittui.ui.widgets.model_table as mt

    models = [
        SimpleNamespace(key="deit-s", family="deit", source="timm", id="deit_small_patch16_224", params=22_050_664,
                        gflops=4.6, patch=16, resolution=224, imagenet_top1=79.9),
        SimpleNamespace(key="hf-vit-b16", family="vit", source="hf", id="google/vit-base-patch16-224",
                        params=86_567_656, gflops=17.6, patch=16, resolution=224, imagenet_top1=81.1),
        SimpleNamespace(key="vit-s16-384", family="vit", source="timm", id="vit_small_patch16_384",
                        params=22_196_584, gflops=15.5, patch=16, resolution=384, imagenet_top1=83.8),
    ]
    monkeypatch.setattr(mt, "load_models", lambda: (models, ""))
    app = create_app(runs_root, gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ModelTable)
        grid = table.query_one("#model-grid")
        assert grid.option_count == 3
        assert app.focused.id == "model-filter"
        await pilot.press(*"vit sm")
        assert [m.key for m in table.shown] == ["vit-s16-384"]
        await pilot.press("backspace", "backspace", "backspace")
        assert [m.key for m in table.shown] == ["hf-vit-b16", "vit-s16-384"]
        await pilot.press("enter", "down", "enter")  # to the table, second row, pick
        r = app.screen.recipe
        assert (r.model.name, r.model.source, r.model.img_size) == ("vit_small_patch16_384", "timm", 384)
        assert r.model.depth is None and r.model.patch_size is None  # the demo's size overrides are cleared
        editor = app.screen.query_one(RecipeEditor)
        await editor.show_section("model")
        assert editor.field("model.img_size").control.value == "384"


async def test_missing_catalogue_degrades_to_a_note(runs_root, no_gpu, monkeypatch):
    monkeypatch.setitem(sys.modules, "vittui.models.catalog", None)  # import fails
    app = create_app(runs_root, gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        table = app.screen.query_one(ModelTable)
        assert table.models == [] and "not available" in table.note


async def test_runs_screen_lists_runs_and_enter_reattaches_with_history(runs_root, no_gpu):
    a = FakeRun(runs_root, name="alpha", total_steps=200)
    a.started(); a.steps(40); a.set_state("finished"); a.close()
    b = FakeRun(runs_root, name="beta")
    b.started(); b.steps(3)
    app = create_app(runs_root, gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")
        assert isinstance(app.screen, RunsScreen)
        table = app.screen.query_one(RunsTable)
        await wait_for(pilot, lambda: len(table.rows_data) == 2, what="runs listed")
        rows = {r.name: r for r in table.rows_data}
        assert rows["alpha"].state == "finished" and rows["beta"].state == "running"
        assert rows["alpha"].best_top1 == pytest.approx(0.58)
        assert rows["alpha"].model == "vit_tiny_patch16_224"
        table.move_cursor(row=[r.name for r in table.rows_data].index("alpha"))
        await pilot.press("enter")
        assert isinstance(app.screen, MonitorScreen) and app.screen.run.name == "alpha"
        await wait_for(pilot, lambda: app.screen.replayed and app.screen.query_one("#plot-loss").draws > 1)
        loss = app.screen.query_one("#plot-loss", MetricPlot)
        acc = app.screen.query_one("#plot-acc", MetricPlot)
        lr = app.screen.query_one("#plot-lr", MetricPlot)
        assert loss.series_lengths() == {"train (ema 0.6)": 40, "val": 4}
        assert acc.series_lengths() == {"top-1": 4, "top-5": 4}
        assert lr.series_lengths() == {"lr": 40}
        assert 0 < loss.plotted["train (ema 0.6)"] <= 40
        # back to the runs list and on to the other run
        await pilot.press("r")
        assert isinstance(app.screen, RunsScreen)
        table = app.screen.query_one(RunsTable)
        await wait_for(pilot, lambda: len(table.rows_data) == 2)
        table.move_cursor(row=[r.name for r in table.rows_data].index("beta"))
        await pilot.press("enter")
        assert app.screen.run.name == "beta"
        await wait_for(pilot, lambda: app.screen.query_one("#plot-loss").series_lengths().get("train (ema 0.6)") == 3)
        assert len(app.screen_stack) == 2  # runs screen popped, monitor replaced: no pile-up
    b.close()


async def test_start_in_an_unusable_runs_folder_reports_instead_of_crashing(tmp_path, no_gpu):
    """The launcher cannot make the run directory (a file stands where the runs folder should be): ctrl+s
    says why, the setup screen stays, and ctrl+s is offered again."""
    blocked = tmp_path / "runs-is-a-file"
    blocked.write_text("not a folder")
    app = create_app(blocked, gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: any("could not start" in n.message for n in app._notifications),
                       what="the failure said")
        assert isinstance(app.screen, SetupScreen) and not app.screen.starting
        assert app.screen.check_action("start", ()) is True
        assert blocked.read_text() == "not a folder"


async def test_the_next_setup_screen_starts_from_the_recipe_chosen(runs_root, fake_run, no_gpu):
    """The setup screen tells the app its recipe (a message up); a later setup screen starts from it."""
    app = create_app(runs_root, gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        await type_into(pilot, app, "data.batch_size", "48")
        assert app.screen.recipe.data.batch_size == 48
        first = app.screen
        app.attach(fake_run.path)
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup again")
        assert app.screen is not first and app.screen.recipe.data.batch_size == 48
        editor = app.screen.query_one(RecipeEditor)
        await editor.show_section("data")
        assert editor.field("data.batch_size").control.value == "48"


def test_first_frame_without_torch(tmp_path):
    """The dashboard (setup screen with the model catalogue, and the monitor) never imports torch."""
    script = textwrap.dedent(f"""
        import asyncio, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from fakerun import FakeRun
        from pathlib import Path
        from vittui.hardware import NvmlSource
        from vittui.ui.app import create_app
        from ui_helpers import wait_for

        async def main():
            root = Path({str(tmp_path)!r})
            fr = FakeRun(root); fr.started(); fr.steps(12)
            app = create_app(root, gpu_source=NvmlSource())
            async with app.run_test(size=(120, 40)) as pilot:
                await wait_for(pilot, lambda: type(app.screen).__name__ == "SetupScreen", what="setup screen")
                app.attach(fr.path)
                await wait_for(pilot, lambda: type(app.screen).__name__ == "MonitorScreen"
                               and app.screen.replayed, what="monitor replayed")
            bad = sorted(m for m in ("torch", "timm", "transformers", "vittui.train", "vittui.data",
                                     "vittui.models.build") if m in sys.modules)
            print("IMPORTED", bad)

        asyncio.run(main())
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=180)
    assert "IMPORTED []" in out.stdout, out.stdout + out.stderr


async def test_cyclic_gc_is_back_on_after_the_first_frame(runs_root, no_gpu, monkeypatch):
    """The CLI starts the dashboard with the collector off (vittui.commands.dashboard); the app must turn it back on."""
    import gc

    import vittui.ui.app as ui_app

    monkeypatch.setattr(ui_app, "GC_SETTLE_S", 0.05)
    gc.disable()
    try:
        app = create_app(runs_root, gpu_source=no_gpu)
        async with app.run_test(size=SIZE) as pilot:
            await wait_for(pilot, gc.isenabled, what="gc enabled again")
            assert gc.get_freeze_count() > 0  # startup's objects frozen, so later full collections skip them
    finally:
        gc.enable()
        gc.unfreeze()

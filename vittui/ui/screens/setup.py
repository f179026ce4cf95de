"""Setup: pick a model from the catalogue, edit the recipe (validated field by field), load or save a
preset, read the memory estimator's verdict, start the run."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import var
from textual.widgets import Button, Footer, Label, Select, Static

from vittui import recipe as R
from vittui.ui.messages import LaunchFailed, MemoryEstimated, RecipeChosen, RunLaunched
from vittui.ui.screens.base import VittuiScreen
from vittui.ui.screens.modals import HelpModal, SavePresetModal, key_rows
from vittui.ui.widgets.model_table import ModelTable
from vittui.ui.widgets.recipe_editor import RecipeEditor

if TYPE_CHECKING:
    from vittui.models.catalog import ModelInfo
    from vittui.planning.memory import MemoryEstimate


def with_model(recipe: R.Recipe, info: ModelInfo) -> R.Recipe:
    """The recipe with a catalogue model: its id, source and resolution; size overrides cleared."""
    data = R.to_dict(recipe)
    m = data["model"]
    m.update(name=info.id, source=info.source, img_size=info.resolution)
    for k in ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio"):
        m.pop(k, None)
    return R.from_dict(data)


def verdict_text(est: MemoryEstimate) -> str:
    """The planner's estimate as one line: peak, parameters, step cost, fits or not."""
    from vittui.hardware import fmt_bytes

    parts = [f"peak ≈ {fmt_bytes(est.peak)} (activations {fmt_bytes(est.activations)}, "
             f"weights {fmt_bytes(est.weights)})"]
    total, trainable = est.total_params, est.trainable_params
    parts.append(f"{total / 1e6:.2f} M params" + ("" if trainable == total else f" ({trainable / 1e6:.2f} M trainable)"))
    parts.append(f"{est.step_flops / 1e9:.1f} GFLOP/step")
    if est.fits is not None and est.gpu_free_bytes is not None:
        parts.append(("fits in " if est.fits else "does NOT fit in ") + f"{fmt_bytes(est.gpu_free_bytes)} free GPU memory")
    return " · ".join(parts)


class SetupScreen(VittuiScreen):
    BINDINGS = [
        Binding("ctrl+s", "start", "Start run"),
        Binding("ctrl+o", "save_preset", "Save preset"),
        Binding("ctrl+r", "app.runs", "Runs"),
        Binding("tab", "app.focus_next", "Next", show=False),
        Binding("shift+tab", "app.focus_previous", "Prev", show=False),
        Binding("f1", "help", "Help"),
    ]
    PALETTE = [
        ("start", "Start run", "Launch the worker with this recipe and watch it"),
        ("save_preset", "Save preset", "Write the recipe to a TOML file"),
        ("app.runs", "Runs", "Every run in the runs folder"),
        ("help", "Help", "Keys of this screen"),
    ]
    HELP_NOTES = ("Edit a field and press enter (or leave it): the value is checked like the CLI checks it;\n"
                  "a bad value shows why and the old one stays. Enter on a model row picks it.")

    starting: var[bool] = var(False, bindings=True)
    """A launch is under way: ctrl+s is off until it lands or fails."""

    def __init__(self, recipe: R.Recipe, preset: str | None = None) -> None:
        super().__init__(classes="setup")
        self.recipe = recipe
        self.preset = preset

    def compose(self) -> ComposeResult:
        with Horizontal(id="preset-bar"):
            yield Label("preset ")
            options = [(p, p) for p in R.list_presets()]
            options += [(f"{p}", f"{p}") for p in self._user_presets()]
            value = self.preset if self.preset in [v for _, v in options] else Select.NULL
            yield Select(options, value=value, prompt="(custom)", id="preset", compact=True)
            yield Button("Save as…", id="save-preset", compact=True)
            yield Button("Start ▶", id="start", variant="success", compact=True)
        with Horizontal(id="setup-main"):
            yield ModelTable(id="models")
            yield RecipeEditor(self.recipe, id="editor")
        yield Static("", id="verdict")
        yield Footer()

    def _user_presets(self) -> list[str]:
        folder = self.vittui_app.user_presets
        try:
            return sorted(str(p) for p in folder.glob("*.toml"))
        except OSError:
            return []

    def on_mount(self) -> None:
        # after the first frame: the estimate's thread would share the GIL with the first paint
        self.call_after_refresh(lambda: self.estimate_memory(self.recipe, with_free_gpu=True))
        self.query_one("#model-filter").focus()

    # --- recipe changes --------------------------------------------------------------------------
    def set_recipe(self, recipe: R.Recipe, from_editor: bool = False) -> None:
        self.recipe = recipe
        self.post_message(RecipeChosen(recipe))  # up to the app: a later setup screen starts from it
        if not from_editor:
            self.query_one(RecipeEditor).set_recipe(recipe)
        self.estimate_memory(recipe, with_free_gpu=True)

    def on_recipe_editor_changed(self, message: RecipeEditor.Changed) -> None:
        self.set_recipe(message.recipe, from_editor=True)

    def on_model_table_picked(self, message: ModelTable.Picked) -> None:
        try:
            recipe = with_model(self.recipe, message.model)
        except R.RecipeError as e:
            self.notify(f"cannot use {message.model.key}: {e.message}", severity="error")
            return
        self.set_recipe(recipe)
        self.notify(f"model: {recipe.model.name} ({recipe.model.source}, {recipe.model.img_size}px)")

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id != "preset" or event.value is Select.NULL:
            return
        event.stop()
        if str(event.value) == self.preset:
            return  # the Select announcing its initial value: that preset is what is shown already
        try:
            recipe = R.load_preset(str(event.value))
        except R.RecipeError as e:
            self.notify(str(e), severity="error")
            return
        self.preset = str(event.value)
        self.set_recipe(recipe)
        self.notify(f"loaded preset {event.value}")

    @on(Button.Pressed, "#save-preset")
    def _save_pressed(self) -> None:
        self.action_save_preset()

    @on(Button.Pressed, "#start")
    def _start_pressed(self) -> None:
        self.action_start()

    # --- the estimate (a thread worker: see VittuiScreen.estimate_memory) -----------------------------
    def on_memory_estimated(self, message: MemoryEstimated) -> None:
        text = verdict_text(message.estimate) if message.estimate is not None else f"failed: {message.error}"
        self.query_one("#verdict", Static).update("estimate: " + text)

    # --- actions ---------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return None if self.starting else True
        return True

    def action_save_preset(self) -> None:
        name = self.recipe.run.name or (self.preset and Path(self.preset).stem) or "my-recipe"
        default = self.vittui_app.user_presets / f"{name}.toml"

        def done(path: Path | None) -> None:
            if path is None:
                return
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                R.save(self.recipe, path)
            except OSError as e:
                self.notify(f"could not save {path}: {e}", severity="error")
                return
            self.notify(f"saved {path}")

        self.app.push_screen(SavePresetModal(default), done)

    def action_start(self) -> None:
        if self.starting:
            return
        self.starting = True
        self.notify("starting the worker…")
        self.launch(self.recipe)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch", name="launch")
    def launch(self, recipe: R.Recipe) -> None:
        from vittui.runs.launcher import launch

        try:
            run = launch(recipe, self.vittui_app.runs_root)
        except Exception as e:  # noqa: BLE001 - the user is told why, the setup screen stays
            self.post_message(LaunchFailed(str(e)))
            return
        self.post_message(RunLaunched(run))

    def on_launch_failed(self, message: LaunchFailed) -> None:
        self.starting = False
        self.notify(f"could not start: {message.error}", severity="error", timeout=8)

    def on_run_launched(self, message: RunLaunched) -> None:
        self.starting = False
        self.vittui_app.attach(message.run.path)

    def action_help(self) -> None:
        self.app.push_screen(HelpModal("Setup", key_rows(self), self.HELP_NOTES))

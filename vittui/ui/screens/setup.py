"""Setup: pick a model from the catalogue, edit the recipe (validated field by field), load or save a
preset, read the memory estimator's verdict, start the run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Button, Footer, Label, Select, Static

from vittui import recipe as R
from vittui.runs.store import RunDir
from vittui.ui.screens.modals import HelpModal, SavePresetModal, key_rows
from vittui.ui.widgets.model_table import ModelTable
from vittui.ui.widgets.recipe_editor import RecipeEditor


def with_model(recipe: R.Recipe, info: Any) -> R.Recipe:
    """The recipe with a catalogue model: its id, source and resolution; size overrides cleared."""
    data = R.to_dict(recipe)
    m = data["model"]
    m["name"] = str(getattr(info, "id", None) or getattr(info, "key"))
    source = getattr(info, "source", None)
    if source in R.CHOICES["model.source"]:
        m["source"] = source
    resolution = getattr(info, "resolution", None)
    if isinstance(resolution, int) and resolution > 0:
        m["img_size"] = resolution
    for k in ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio"):
        m.pop(k, None)
    return R.from_dict(data)


def verdict_text(result: Any) -> str:
    """What planning.memory.estimate returns, as one line: peak, parameters, step cost, fits or not."""
    from vittui.hardware import fmt_bytes

    peak = getattr(result, "peak", None)
    if isinstance(peak, (int, float)):
        parts = [f"peak ≈ {fmt_bytes(peak)}"]
        acts, weights = getattr(result, "activations", None), getattr(result, "weights", None)
        if isinstance(acts, (int, float)) and isinstance(weights, (int, float)):
            parts[0] += f" (activations {fmt_bytes(acts)}, weights {fmt_bytes(weights)})"
        total, trainable = getattr(result, "total_params", None), getattr(result, "trainable_params", None)
        if isinstance(total, int) and isinstance(trainable, int):
            parts.append(f"{total / 1e6:.2f} M params" + ("" if trainable == total else f" ({trainable / 1e6:.2f} M trainable)"))
        flops = getattr(result, "step_flops", None)
        if isinstance(flops, (int, float)):
            parts.append(f"{flops / 1e9:.1f} GFLOP/step")
        fits, free = getattr(result, "fits", None), getattr(result, "gpu_free_bytes", None)
        if fits is not None and free is not None:
            parts.append(("fits in " if fits else "does NOT fit in ") + f"{fmt_bytes(free)} free GPU memory")
        return " · ".join(parts)
    for attr in ("verdict", "summary", "message"):
        v = getattr(result, attr, None)
        if isinstance(v, str) and v:
            return v
    return str(result)


class SetupScreen(Screen):
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

    def __init__(self, recipe: R.Recipe, preset: str | None = None) -> None:
        super().__init__(classes="setup")
        self.recipe = recipe
        self.preset = preset
        self.starting = False

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
        folder: Path = self.app.user_presets  # type: ignore[attr-defined]
        try:
            return sorted(str(p) for p in folder.glob("*.toml"))
        except OSError:
            return []

    def on_mount(self) -> None:
        # after the first frame: the estimate's thread would share the GIL with the first paint
        self.call_after_refresh(lambda: self.estimate(self.recipe))
        self.query_one("#model-filter").focus()

    # --- recipe changes --------------------------------------------------------------------------
    def set_recipe(self, recipe: R.Recipe, from_editor: bool = False) -> None:
        self.recipe = recipe
        self.app.recipe = recipe  # type: ignore[attr-defined]
        if not from_editor:
            self.query_one(RecipeEditor).set_recipe(recipe)
        self.estimate(recipe)

    def on_recipe_editor_changed(self, message: RecipeEditor.Changed) -> None:
        self.set_recipe(message.recipe, from_editor=True)

    def on_model_table_picked(self, message: ModelTable.Picked) -> None:
        try:
            recipe = with_model(self.recipe, message.model)
        except R.RecipeError as e:
            self.notify(f"cannot use {getattr(message.model, 'key', '?')}: {e.message}", severity="error")
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

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save-preset":
            self.action_save_preset()
        elif event.button.id == "start":
            self.action_start()

    # --- estimator (thread: planning may be slow; never torch) ------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="estimate")
    def estimate(self, recipe: R.Recipe) -> None:
        try:
            from vittui.planning.memory import estimate
        except Exception:
            text = "memory estimate: not available in this install"
        else:
            free = None
            source = self.app.gpu_source  # type: ignore[attr-defined]
            gpus = source.gpus()
            if gpus and gpus[0].memory_total is not None and gpus[0].memory_used is not None:
                free = gpus[0].memory_total - gpus[0].memory_used
            try:
                result = estimate(recipe, gpu_free_bytes=free) if free is not None else estimate(recipe)
            except TypeError:  # an estimator with another signature (or a placeholder)
                result = None
            except Exception as e:
                result = f"failed: {e}"
            text = "estimate: " + ("not available yet" if result is None else verdict_text(result))
        self.app.call_from_thread(self._show_verdict, text)

    def _show_verdict(self, text: str) -> None:
        self.query_one("#verdict", Static).update(text)

    # --- actions ---------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "start":
            return None if self.starting else True
        return True

    def action_save_preset(self) -> None:
        name = self.recipe.run.name or (self.preset and Path(self.preset).stem) or "my-recipe"
        default = self.app.user_presets / f"{name}.toml"  # type: ignore[attr-defined]

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
        self.refresh_bindings()
        self.notify("starting the worker…")
        self.launch(self.recipe)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch")
    def launch(self, recipe: R.Recipe) -> None:
        app = self.app
        try:
            from vittui.runs.launcher import launch

            run = launch(recipe, app.runs_root)  # type: ignore[attr-defined]
        except ImportError:
            app.call_from_thread(self._launch_failed, "the launcher is not installed (vittui.runs.launcher)")
            return
        except Exception as e:
            app.call_from_thread(self._launch_failed, str(e))
            return
        app.call_from_thread(self._launched, run)

    def _launch_failed(self, why: str) -> None:
        self.starting = False
        self.refresh_bindings()
        self.notify(f"could not start: {why}", severity="error", timeout=8)

    def _launched(self, run: RunDir) -> None:
        self.starting = False
        self.app.attach(run.path)  # type: ignore[attr-defined]

    def action_help(self) -> None:
        self.app.push_screen(HelpModal("Setup", key_rows(self), self.HELP_NOTES))

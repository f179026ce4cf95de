"""Setup: pick a model from the catalogue, edit the recipe (validated field by field), load or save a
preset, read the memory estimator's verdict and the pre-flight findings, start the run or queue it, run the
LR range test and apply its suggestion.

Pre-flight and the LR range test need torch, so they are `vittui check` / `vittui lr-find` subprocesses
(`vittui.ui.cli_json`) in thread workers; pre-flight reruns once edits have settled for a moment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual import on, work
from textual.worker import get_current_worker
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.reactive import var
from textual.widgets import Button, Footer, Label, Select, Static

from vittui import recipe as R
from vittui.ui.messages import (LaunchFailed, LrFound, LrProgress, MemoryEstimated, PreflightChecked, RecipeChosen,
                                RunLaunched)
from vittui.ui.screens.base import VittuiScreen
from vittui.ui.screens.modals import HelpModal, SavePresetModal, key_rows
from vittui.ui.widgets.model_table import ModelTable
from vittui.ui.widgets.preflight_pane import PreflightPane
from vittui.ui.widgets.recipe_editor import RecipeEditor

LR_FIND_PROGRESS = "lr-find: step "  # the prefix of `vittui lr-find`'s progress lines (commands/lr_find.py)

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
        Binding("ctrl+t", "queue", "Queue"),
        Binding("ctrl+l", "lr_find", "LR find"),
        Binding("ctrl+l", "stop_lr_find", "Stop LR find"),  # the same key while the range test runs
        Binding("ctrl+o", "save_preset", "Save preset"),
        Binding("ctrl+r", "app.runs", "Runs"),
        Binding("tab", "app.focus_next", "Next", show=False),
        Binding("shift+tab", "app.focus_previous", "Prev", show=False),
        Binding("f1", "help", "Help"),
    ]
    PALETTE = [
        ("start", "Start run", "Launch the worker with this recipe and watch it"),
        ("queue", "Queue run", "Put the run in the queue; the scheduler starts it when a slot is free"),
        ("lr_find", "LR range test", "Run `vittui lr-find` on this recipe and offer its suggested lr"),
        ("stop_lr_find", "Stop the LR range test", "Kill the running `vittui lr-find`; the recipe stays as it is"),
        ("save_preset", "Save preset", "Write the recipe to a TOML file"),
        ("app.runs", "Runs", "Every run in the runs folder"),
        ("help", "Help", "Keys of this screen"),
    ]
    HELP_NOTES = ("Edit a field and press enter (or leave it): the value is checked like the CLI checks it;\n"
                  "a bad value shows why and the old one stays. Enter on a model row picks it.\n"
                  "Pre-flight (`vittui check`) reruns a moment after the last edit; ctrl+s and ctrl+t\n"
                  "refuse a recipe with known problems. ctrl+l runs the LR range test in the background;\n"
                  "ctrl+l again while it runs stops it.")
    PREFLIGHT_SETTLE_S = 1.0  # edits settle this long before pre-flight runs (each one spawns torch)
    PREFLIGHT_TIMEOUT_S = 180.0
    LR_FIND_TIMEOUT_S = 900.0

    starting: var[bool] = var(False, bindings=True)
    """A launch (or an enqueue) is under way: ctrl+s and ctrl+t are off until it lands or fails."""
    finding_lr: var[bool] = var(False, bindings=True)
    """The LR range test runs: ctrl+l stops it instead of starting another."""

    def __init__(self, recipe: R.Recipe, preset: str | None = None) -> None:
        super().__init__(classes="setup")
        self.recipe = recipe
        self.preset = preset
        self.preflight: tuple[R.Recipe, list[str]] | None = None  # the last recipe checked and its problems
        self._preflight_timer = None

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
            with Vertical(id="recipe-col"):
                yield RecipeEditor(self.recipe, id="editor")
                yield PreflightPane(id="preflight")
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
        self.schedule_preflight()
        self.query_one("#model-filter").focus()

    # --- recipe changes --------------------------------------------------------------------------
    def set_recipe(self, recipe: R.Recipe, from_editor: bool = False) -> None:
        self.recipe = recipe
        self.post_message(RecipeChosen(recipe))  # up to the app: a later setup screen starts from it
        if not from_editor:
            self.query_one(RecipeEditor).set_recipe(recipe)
        self.estimate_memory(recipe, with_free_gpu=True)
        self.schedule_preflight()

    def show_recipe(self, recipe: R.Recipe) -> None:
        """A recipe from elsewhere that is no preset (a run's, cloned from the runs screen)."""
        self.preset = None
        select = self.query_one("#preset", Select)
        with select.prevent(Select.Changed):
            select.value = Select.NULL
        self.set_recipe(recipe)

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
    # --- pre-flight (vittui check in a subprocess, once edits settle) ------------------------------
    def schedule_preflight(self) -> None:
        if self._preflight_timer is not None:
            self._preflight_timer.stop()
        self._preflight_timer = self.set_timer(self.PREFLIGHT_SETTLE_S, self._start_preflight)

    def _start_preflight(self) -> None:
        self._preflight_timer = None
        self.query_one(PreflightPane).show_checking()
        self.run_preflight(self.recipe)

    def _ask_cli(self, command: str, recipe: R.Recipe, timeout: float, on_line=None):
        """`vittui COMMAND RECIPE --json` from the calling thread worker; None when the worker was cancelled
        (the screen went away, or a newer request replaced it): the process is killed, nothing is posted.
        `on_line` gets the command's stderr lines as they come (from a reader thread)."""
        from vittui.ui.cli_json import run_on_recipe

        worker = get_current_worker()
        res = run_on_recipe(command, recipe, self.vittui_app.runs_root, timeout=timeout,
                            cancelled=lambda: worker.is_cancelled, on_line=on_line)
        return None if worker.is_cancelled else res

    @work(thread=True, exclusive=True, exit_on_error=False, group="preflight", name="pre-flight")
    def run_preflight(self, recipe: R.Recipe) -> None:
        if (res := self._ask_cli("check", recipe, self.PREFLIGHT_TIMEOUT_S)) is None:
            return
        data = res.data if isinstance(res.data, dict) else {}
        if "ok" in data and isinstance(data.get("problems"), list):
            self.post_message(PreflightChecked(recipe, [str(p) for p in data["problems"]]))
        else:
            self.post_message(PreflightChecked(recipe, [], error=res.error or "no answer from vittui check"))

    def on_preflight_checked(self, message: PreflightChecked) -> None:
        if message.recipe != self.recipe:
            return  # checked a recipe that has been edited since: the next check is on its way
        pane = self.query_one(PreflightPane)
        if message.error:
            self.preflight = None
            pane.show_unavailable(message.error)
        else:
            self.preflight = (message.recipe, message.problems)
            pane.show_result(message.problems)

    def known_problems(self) -> list[str]:
        """Pre-flight's problems with the recipe as it is now (none known when it has not been checked)."""
        if self.preflight is None or self.preflight[0] != self.recipe:
            return []
        return self.preflight[1]

    def _refuse_known_problems(self, what: str) -> bool:
        problems = self.known_problems()
        if problems:
            self.notify(f"not {what}: pre-flight found " + "; ".join(problems), severity="error", timeout=10)
        return bool(problems)

    # --- actions ---------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("start", "queue"):
            return None if self.starting else True
        if action == "lr_find":
            return not self.finding_lr
        if action == "stop_lr_find":
            return self.finding_lr
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
        if self.starting or self._refuse_known_problems("started"):
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
        self.notify(f"could not {'queue' if message.queued else 'start'}: {message.error}", severity="error",
                    timeout=8)

    def on_run_launched(self, message: RunLaunched) -> None:
        self.starting = False
        if message.queued:
            self.notify(f"queued {message.run.name}" + (f" (#{message.position} in line)" if message.position else ""))
            self.vittui_app.action_runs()
            return
        self.vittui_app.attach(message.run.path)

    # --- queue -----------------------------------------------------------------------------------
    def action_queue(self) -> None:
        if self.starting or self._refuse_known_problems("queued"):
            return
        self.starting = True
        self.enqueue(self.recipe)

    @work(thread=True, exclusive=True, exit_on_error=False, group="launch", name="enqueue")
    def enqueue(self, recipe: R.Recipe) -> None:
        """The run directory in state `queued` with the planner's peak for admission (none for a model the
        planner cannot size: admitted on slots alone), as `vittui train --queue` writes it; `enqueue` starts
        a scheduler when none is alive."""
        from vittui.planning.memory import estimate
        from vittui.ui.screens.runs import queue_module

        q = queue_module()
        if q is None:
            self.post_message(LaunchFailed("this install has no run queue (vittui.runs.queue)", queued=True))
            return
        root = self.vittui_app.runs_root
        try:
            estimate_bytes = estimate(recipe).peak
        except Exception:  # noqa: BLE001 - as train --queue: it still queues
            estimate_bytes = None
        try:
            run = q.enqueue(recipe, root, estimate_bytes=estimate_bytes)
            position = q.position(run)
        except Exception as e:  # noqa: BLE001 - the user is told why, the setup screen stays
            self.post_message(LaunchFailed(str(e), queued=True))
            return
        self.post_message(RunLaunched(run, queued=True, position=position))

    # --- LR range test ---------------------------------------------------------------------------
    def action_lr_find(self) -> None:
        if self.finding_lr:
            return
        self.finding_lr = True
        self.notify("LR range test running… (vittui lr-find, a subprocess)")
        self.run_lr_find(self.recipe)

    def action_stop_lr_find(self) -> None:
        """Cancelling the worker kills the `vittui lr-find` process (cli_json polls it) and posts nothing."""
        if not self.finding_lr:
            return
        self.workers.cancel_group(self, "lr-find")
        self.finding_lr = False
        self.notify("LR range test stopped; optim.lr unchanged")

    def watch_finding_lr(self, running: bool) -> None:
        """Said under the editor for as long as it runs (the notification fades)."""
        for pane in self.query(PreflightPane):
            pane.border_subtitle = "LR range test running… (ctrl+l stops it)" if running else ""

    @work(thread=True, exclusive=True, exit_on_error=False, group="lr-find", name="lr-find")
    def run_lr_find(self, recipe: R.Recipe) -> None:
        from vittui.ui.screens.lr_find import LrFindResult

        def progress(line: str) -> None:  # "lr-find: step 40/100 …" (commands/lr_find.py prints it)
            if line.startswith(LR_FIND_PROGRESS):
                self.post_message(LrProgress(line.removeprefix(LR_FIND_PROGRESS)))

        if (res := self._ask_cli("lr-find", recipe, self.LR_FIND_TIMEOUT_S, on_line=progress)) is None:
            return
        if res.rc != 0:
            self.post_message(LrFound(None, error=res.error))
            return
        if isinstance(res.data, dict) and res.data.get("suggested_lr") is None:
            self.post_message(LrFound(None, error="no step gave a finite loss, so no suggestion"))
            return
        try:
            self.post_message(LrFound(LrFindResult.from_json(res.data)))
        except (KeyError, TypeError, ValueError) as e:
            self.post_message(LrFound(None, error=f"vittui lr-find answered something unexpected ({e!r})"))

    def on_lr_progress(self, message: LrProgress) -> None:
        if self.finding_lr:
            for pane in self.query(PreflightPane):
                pane.border_subtitle = f"LR range test: step {message.text}  (ctrl+l stops it)"

    def on_lr_found(self, message: LrFound) -> None:
        from vittui.ui.screens.lr_find import LrFindModal

        self.finding_lr = False
        if message.result is None:
            self.notify(f"LR range test failed: {message.error}", severity="error", timeout=10)
            return

        def applied(lr: float | None) -> None:
            if lr is None:
                return
            try:
                recipe = R.set_value(self.recipe, "optim.lr", lr)
            except R.RecipeError as e:
                self.notify(f"cannot apply lr {lr:.3g}: {e.message}", severity="error")
                return
            self.set_recipe(recipe)
            self.notify(f"optim.lr = {lr:.3g}")

        self.app.push_screen(LrFindModal(message.result), applied)

    def action_help(self) -> None:
        self.app.push_screen(HelpModal("Setup", key_rows(self), self.HELP_NOTES))

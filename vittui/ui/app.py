"""The dashboard app and the one factory that the CLI and the tests share.

    create_app(runs_root, gpu_source=FakeSource(...), attach="demo-digits").run()

No torch in this process: the app stands on `recipe`, `runs`, `hardware`, the model catalogue and the
planner; training runs in the worker process the launcher spawns."""

from __future__ import annotations

import gc
from functools import partial
from pathlib import Path
from typing import Iterable

from textual import on
from textual.actions import parse as parse_action
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from vittui import recipe as R
from vittui.hardware import GpuSource, NvmlSource
from vittui.runs.registry import is_live, resolve_run
from vittui.runs.store import RunDir
from vittui.ui.messages import RecipeChosen
from vittui.ui.screens.setup import SetupScreen


# The monitor and runs screens bring plotext and numpy; the first frame (setup) needs neither, so they
# are imported when first shown.
def _monitor_screen():
    from vittui.ui.screens.monitor import MonitorScreen

    return MonitorScreen


def _runs_screen():
    from vittui.ui.screens.runs import RunsScreen

    return RunsScreen

DEFAULT_PRESET = "demo-digits"
GC_SETTLE_S = 1.0  # after the first frame: the setup screen's fields and estimate land first


class VittuiApp(App[str]):
    CSS_PATH = "app.tcss"
    TITLE = "vittui"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (100, "-wide")]
    BINDINGS = [Binding("ctrl+q", "quit", "Quit", priority=True, show=False)]

    def __init__(
        self,
        runs_root: Path,
        *,
        gpu_source: GpuSource | None = None,
        attach: str | Path | None = None,
        recipe: R.Recipe | None = None,
        preset: str | None = None,
        user_presets: Path | None = None,
        sweep: tuple[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.sweep = sweep  # (study, storage URL): open on the sweep screen (`vittui sweep status S --tui`)
        self.runs_root = Path(runs_root)
        self.gpu_source: GpuSource = gpu_source if gpu_source is not None else NvmlSource()
        self.attach_to = attach
        self.preset = preset
        self.recipe = recipe
        self.user_presets = Path(user_presets) if user_presets is not None else Path("presets-user")

    def on_mount(self) -> None:
        self.call_after_refresh(self.set_timer, GC_SETTLE_S, self.settle_gc)
        if self.sweep is not None:
            self.push_screen(self._setup_screen())  # under it: escape leads back to setup
            self.open_sweep(*self.sweep)
            return
        if self.attach_to is not None:
            run = self.resolve_run(self.attach_to)
            if run is not None:
                self.push_screen(_monitor_screen()(run))
                return
            self.notify(f"no run {self.attach_to} in {self.runs_root}", severity="error")
        self.push_screen(self._setup_screen())

    @staticmethod
    def settle_gc() -> None:
        """The CLI starts the dashboard with the cyclic GC off (see vittui.commands.dashboard). Turn it back on
        with what startup built (Textual, the widgets, the stylesheet) collected once and then frozen, so
        the collections that follow, which run between frames, do not walk it again."""
        if gc.isenabled():
            return
        gc.collect()
        gc.freeze()
        gc.enable()

    def _setup_screen(self) -> SetupScreen:
        if self.recipe is None:
            try:
                self.recipe = R.load_preset(DEFAULT_PRESET)
                self.preset = self.preset or DEFAULT_PRESET
            except R.RecipeError:
                self.recipe = R.Recipe()
        return SetupScreen(self.recipe, self.preset)

    @on(RecipeChosen)
    def remember_recipe(self, message: RecipeChosen) -> None:
        """The setup screen's latest recipe: the next setup screen starts from it."""
        self.recipe = message.recipe

    def resolve_run(self, name_or_path: str | Path) -> RunDir | None:
        try:
            return resolve_run(name_or_path, self.runs_root)
        except FileNotFoundError:
            return None

    # --- navigation ------------------------------------------------------------------------------
    def attach(self, path: str | Path) -> None:
        """Monitor a run (history rebuilt from its events); replaces whatever main screen is showing."""
        run = self.resolve_run(path)
        if run is None:
            self.notify(f"not a run: {path}", severity="error")
            return
        while len(self.screen_stack) > 2:
            self.pop_screen()
        self.switch_screen(_monitor_screen()(run))

    def open_sweep(self, study: str, storage: str) -> None:
        from vittui.ui.screens.sweep import SweepScreen

        self.push_screen(SweepScreen(study, storage))

    def action_runs(self) -> None:
        if isinstance(self.screen, _runs_screen()):
            return
        self.push_screen(_runs_screen()(self.runs_root))

    def action_setup(self) -> None:
        while len(self.screen_stack) > 2:
            self.pop_screen()
        if not isinstance(self.screen, SetupScreen):
            self.switch_screen(self._setup_screen())

    def setup_with(self, recipe: R.Recipe, note: str = "") -> None:
        """The setup screen showing `recipe` (no preset): the runs screen's clone."""
        self.recipe, self.preset = recipe, None
        while len(self.screen_stack) > 2:
            self.pop_screen()
        if isinstance(self.screen, SetupScreen):
            self.screen.show_recipe(recipe)
        else:
            self.switch_screen(self._setup_screen())
        if note:
            self.notify(note)

    async def action_quit(self) -> None:
        screen = self.screen
        if isinstance(screen, _monitor_screen()) and is_live(screen.state):
            screen.action_quit_run()  # asks: detach or stop
            return
        self.exit(result="quit")

    # --- command palette: the same actions as the keys, when they apply ---------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for action, title, help_text in getattr(screen, "PALETTE", ()):
            namespace, name, params = parse_action(action)
            if (self if namespace == "app" else screen).check_action(name, params):
                yield SystemCommand(title, help_text, partial(screen.run_action, action))


def create_app(
    runs_root: str | Path,
    *,
    gpu_source: GpuSource | None = None,
    attach: str | None = None,
    recipe: R.Recipe | None = None,
    **kwargs,
) -> VittuiApp:
    """The one way to build the dashboard (CLI and tests)."""
    return VittuiApp(Path(runs_root), gpu_source=gpu_source, attach=attach, recipe=recipe, **kwargs)

"""What every vittui screen shares: the app, typed; worker errors shown on screen; the planner's memory
estimate, sized off the event loop."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, cast

from textual import on, work
from textual.screen import Screen
from textual.worker import Worker, WorkerState

from vittui import recipe as R
from vittui.ui.messages import MemoryEstimated, WorkerFailed

if TYPE_CHECKING:
    from vittui.ui.app import VittuiApp


def idle_unless_cancelled(seconds: float) -> bool:
    """In a polling thread worker: wait `seconds` in 0.1 s slices; False as soon as the worker is cancelled
    (the screen closed), so a poll loop ends within 0.1 s instead of a whole interval."""
    import time

    from textual.worker import get_current_worker

    worker = get_current_worker()
    for _ in range(int(seconds / 0.1)):
        if worker.is_cancelled:
            return False
        time.sleep(0.1)
    return not worker.is_cancelled


class VittuiScreen(Screen):
    @property
    def vittui_app(self) -> VittuiApp:
        """The app with its own attributes typed (runs_root, gpu_source, user_presets, attach)."""
        return cast("VittuiApp", self.app)

    @on(Worker.StateChanged)
    def _worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Workers run with exit_on_error=False: an exception ends the worker, and it is said here.
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.post_message(WorkerFailed(event.worker.name, f"{type(err).__name__}: {err}"))

    def on_worker_failed(self, message: WorkerFailed) -> None:
        self.notify(f"{message.where} failed: {message.error}", severity="error", timeout=8)

    @work(thread=True, exclusive=True, exit_on_error=False, group="estimate", name="estimate")
    def estimate_memory(self, recipe: R.Recipe | Path, with_free_gpu: bool = False) -> None:
        """Post `MemoryEstimated` for a recipe (or a recipe file, read here), with the first GPU's free
        memory when `with_free_gpu`. Pure Python, no torch; off the event loop all the same."""
        from vittui.planning.memory import estimate

        try:
            free = None
            if with_free_gpu:
                gpus = self.vittui_app.gpu_source.gpus()
                if gpus and gpus[0].memory_total is not None and gpus[0].memory_used is not None:
                    free = gpus[0].memory_total - gpus[0].memory_used
            est = estimate(R.load(recipe) if isinstance(recipe, Path) else recipe, gpu_free_bytes=free)
        except Exception as e:  # noqa: BLE001 - a recipe the planner cannot size says why
            self.post_message(MemoryEstimated(None, str(e)))
            return
        self.post_message(MemoryEstimated(est))

"""`vittui [--preset P] [--runs-dir D]` with no subcommand: the Textual dashboard (also `attach --tui`)."""

from __future__ import annotations

import gc

from vittui.commands._common import load_recipe, runs_root


def run(args, attach: str | None = None) -> int:
    # Starting the dashboard allocates ~half a million objects that all stay alive; the cyclic collector
    # walks them over and over (~60 ms, a tenth of the time to the first frame here) and finds nothing.
    # The app turns it back on after its first frame (VittuiApp.settle_gc); the finally covers a failed start.
    gc.disable()
    try:
        from vittui.ui.app import create_app

        preset = getattr(args, "preset", None)
        recipe = load_recipe(args) if preset else None
        app = create_app(runs_root(args), attach=attach, recipe=recipe)
        result = app.run()
    finally:
        gc.enable()
    if result == "detached":
        print("detached: the run keeps going; `vittui runs` lists it, `vittui attach RUN` follows it")
    return int(app.return_code or 0)


def run_sweep_screen(args, study: str, storage: str) -> int:
    """`vittui sweep status STUDY --tui`: the dashboard opened on the study's sweep screen."""
    from vittui.ui.app import create_app

    app = create_app(runs_root(args), sweep=(study, storage))
    app.run()
    return int(app.return_code or 0)

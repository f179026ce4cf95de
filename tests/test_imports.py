"""The headless core is a contract: no Textual below the UI, no torch for `import vittui`."""

import json
import pkgutil
import subprocess
import sys

import pytest

import vittui.ui

TORCH_STACK = {"torch", "timm", "transformers", "peft", "accelerate"}


def loaded_after(code: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True).stdout
    return {m.split(".")[0] for m in json.loads(out.strip().splitlines()[-1])}


def test_import_vittui_loads_neither_torch_nor_textual():
    mods = loaded_after("import vittui")
    assert "torch" not in mods and "textual" not in mods


def test_engine_imports_without_textual():
    mods = loaded_after(
        "import vittui.recipe, vittui.runs.events, vittui.runs.store, vittui.runs.control, vittui.runs.launcher, "
        "vittui.train.loop, vittui.train.worker, vittui.train.checkpoint, vittui.models.build, vittui.models.adapt, "
        "vittui.data.sources, vittui.data.transforms, vittui.analysis.attention, vittui.analysis.evaluate, "
        "vittui.analysis.gradients, vittui.planning.memory, vittui.planning.codegen, vittui.models.catalog_build, "
        "vittui.deploy.export, vittui.deploy.predict, vittui.hardware")
    assert "textual" not in mods
    assert "torch" in mods  # sanity: the training code really was imported


def test_run_directory_contract_and_planning_need_no_torch():
    mods = loaded_after("import vittui.recipe, vittui.runs.events, vittui.runs.store, vittui.runs.control, "
                        "vittui.runs.launcher, vittui.runs.progress, vittui.runs.probes, vittui.runs.compare, "
                        "vittui.runs.history, vittui.runs.registry, vittui.runs.step_series, "
                        "vittui.analysis.attention_stats, vittui.analysis.metrics, vittui.planning.memory, "
                        "vittui.planning.select, vittui.models.catalog, vittui.hardware, vittui.cli, "
                        "vittui.models.structure, vittui.models.resolve, vittui.models.build, vittui.models.fetch, "
                        "vittui.planning.dims, vittui.planning.block_memory, vittui.planning.codegen, "
                        "vittui.runs.summary_csv, vittui.runs.notify, vittui.analysis.log_export, "
                        "vittui.commands.export_log")
    assert not mods & (TORCH_STACK | {"textual"}), mods & (TORCH_STACK | {"textual"})


def test_the_event_fold_is_light():
    """The fold every view uses (and the terminal line and the run registry on it): no numpy, no plotext."""
    mods = loaded_after("import vittui.runs.history, vittui.runs.progress, vittui.runs.registry")
    assert not mods & {"torch", "numpy", "plotext", "textual"}, mods & {"torch", "numpy", "plotext", "textual"}


def test_dashboard_first_frame_imports_stay_light():
    """What the setup screen needs before its first frame: no torch, numpy, plotext or psutil (18 ms)."""
    mods = loaded_after("import vittui.cli, vittui.ui.app, vittui.ui.screens.setup")
    assert not mods & {"torch", "numpy", "plotext", "textual_plotext", "psutil"}, mods & {"torch", "numpy", "psutil"}


UI_MODULES = sorted(m.name for m in pkgutil.walk_packages(vittui.ui.__path__, "vittui.ui."))


def test_every_screen_and_widget_is_checked():
    names = set(UI_MODULES)
    assert {"vittui.ui.app", "vittui.ui.screens.monitor", "vittui.ui.screens.report", "vittui.ui.screens.compare",
            "vittui.ui.widgets.model_table", "vittui.ui.widgets.attention_pane"} <= names


@pytest.mark.parametrize("module", UI_MODULES)
def test_ui_module_imports_no_torch(module):
    """Every module of the dashboard (app, screens, widgets, helpers), each in a fresh process: the UI process
    never imports torch or the libraries built on it, whichever screen is shown. (Imports inside functions,
    which run only when a screen loads its data, are checked by the import contracts: tests/test_contracts.py.)"""
    mods = loaded_after(f"import {module}")
    assert not mods & TORCH_STACK, f"{module} loads {sorted(mods & TORCH_STACK)}"

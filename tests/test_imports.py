"""The headless core is a contract: no Textual below the UI, no torch for `import vittui`."""

import json
import subprocess
import sys


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
        "vittui.analysis.gradients, vittui.planning.memory, vittui.hardware")
    assert "textual" not in mods
    assert "torch" in mods  # sanity: the training code really was imported


def test_run_directory_contract_and_planning_need_no_torch():
    mods = loaded_after("import vittui.recipe, vittui.runs.events, vittui.runs.store, vittui.runs.control, "
                        "vittui.runs.launcher, vittui.runs.progress, vittui.planning.memory, vittui.models.catalog, "
                        "vittui.hardware, vittui.cli")
    assert "torch" not in mods and "textual" not in mods


def test_dashboard_first_frame_imports_stay_light():
    """What the setup screen needs before its first frame: no torch, numpy, plotext or psutil (18 ms)."""
    mods = loaded_after("import vittui.cli, vittui.ui.app, vittui.ui.screens.setup")
    assert not mods & {"torch", "numpy", "plotext", "textual_plotext", "psutil"}, mods & {"torch", "numpy", "psutil"}

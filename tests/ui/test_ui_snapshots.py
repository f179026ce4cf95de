"""Text snapshots of the setup and monitor screens at 120x40, fed with recorded events and fixed
hardware readings (no live clock, no NVML). Regenerate with VITTUI_UPDATE_SNAPSHOTS=1 and review the diff."""

from __future__ import annotations

import os
import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace

import pytest
from ui_helpers import SIZE, gpu_source, screen_text, wait_for
from fakerun import FakeRun

from vittui.runs.events import CheckpointSaved, DataSkipped, Log
from vittui.ui.app import create_app

pytestmark = pytest.mark.anyio
SNAPSHOTS = Path(__file__).parent / "snapshots"


def check_snapshot(name: str, text: str) -> None:
    path = SNAPSHOTS / f"{name}.txt"
    if os.environ.get("VITTUI_UPDATE_SNAPSHOTS") or not path.exists():
        path.write_text(text + "\n", encoding="utf-8")
        return
    expected = path.read_text(encoding="utf-8").rstrip("\n")
    assert text == expected, f"{name} changed; rerun with VITTUI_UPDATE_SNAPSHOTS=1 and review\n{text}"


async def test_monitor_snapshot(runs_root):
    fr = FakeRun(runs_root, name="demo-digits", total_steps=690, steps_per_epoch=23)
    fr.started()
    fr.steps(150, allocated=310 << 20, reserved=512 << 20)
    fr.emit(Log(level="warning", message="augment.hflip > 0 hurts digits; consider 0", step=1))
    fr.emit(DataSkipped(count=1, examples=["broken.png"]))
    fr.emit(CheckpointSaved(step=138, path="checkpoints/step-138", best=True, metric=0.72))
    app = create_app(runs_root, gpu_source=gpu_source(fr.pid), attach="demo-digits")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "step 150/690" in screen_text(app) and "GPU 0" in screen_text(app))
        await pilot.pause(0.3)
        # the footer is recomposed when the bindings change and is blank for that frame: take a frame with it
        shot: list[str] = []

        def footer_drawn() -> bool:
            shot[:] = [screen_text(app)]
            return "r Runs" in shot[0].splitlines()[-1]

        await wait_for(pilot, footer_drawn, what="footer drawn")
        # the worker pid is this test's: mask it without moving the pane's border
        text = re.sub(r"run pid \d+: \S+ \S+ *", lambda m: f"run pid PID: {m.group(0).split(': ')[1]}".ljust(
            len(m.group(0))), shot[0])
    fr.close()
    check_snapshot("monitor-120x40", text)


async def test_setup_snapshot(runs_root, no_gpu, monkeypatch):
    import vittui.ui.widgets.model_table as mt

    models = [
        SimpleNamespace(key="vit-ti16-224", family="vit", source="timm", id="vit_tiny_patch16_224",
                        params=5_717_416, patch=16, resolution=224, imagenet_top1=75.5),
        SimpleNamespace(key="deit-s", family="deit", source="timm", id="deit_small_patch16_224",
                        params=22_050_664, patch=16, resolution=224, imagenet_top1=79.9),
        SimpleNamespace(key="hf-vit-b16", family="vit", source="hf", id="google/vit-base-patch16-224",
                        params=86_567_656, patch=16, resolution=224, imagenet_top1=None),
    ]
    monkeypatch.setattr(mt, "load_models", lambda: (models, ""))
    fake = types.ModuleType("vittui.planning.memory")
    fake.estimate = lambda recipe, **kw: SimpleNamespace(
        peak=127 << 20, activations=102 << 20, weights=2 << 20, total_params=459_562, trainable_params=459_562,
        step_flops=12.4e9, fits=None, gpu_free_bytes=None)
    monkeypatch.setitem(sys.modules, "vittui.planning.memory", fake)
    app = create_app(runs_root, gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "peak" in screen_text(app))
        text = screen_text(app)
    check_snapshot("setup-120x40", text)

"""Text snapshots of the setup and monitor screens at 120x40, fed with recorded events and fixed
hardware readings (no live clock, no NVML). A missing or changed snapshot fails. Regenerate with
VITTUI_UPDATE_SNAPSHOTS=1 (never under CI): the run writes the new text and fails naming the file, so a
regenerated snapshot is always a diff someone reviews, never a silent pass."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from ui_helpers import SIZE, gpu_source, screen_text, wait_for
from fakerun import FakeRun

from vittui.runs.events import CheckpointSaved, DataSkipped, Log
from vittui.ui.app import create_app

pytestmark = pytest.mark.anyio
SNAPSHOTS = Path(__file__).parent / "snapshots"


def check_snapshot(name: str, text: str, snapshots: Path = SNAPSHOTS) -> None:
    """Pass only when the stored snapshot exists and equals `text`.

    With VITTUI_UPDATE_SNAPSHOTS=1 (and not under CI) a missing or different snapshot is written and the
    test fails saying so; under CI nothing is ever written."""
    path = snapshots / f"{name}.txt"
    expected = path.read_text(encoding="utf-8").rstrip("\n") if path.exists() else None
    if expected == text:
        return
    if os.environ.get("VITTUI_UPDATE_SNAPSHOTS") == "1" and not os.environ.get("CI"):
        path.write_text(text + "\n", encoding="utf-8")
        pytest.fail(f"snapshot {name} {'written' if expected is None else 'rewritten'} to {path}: review the "
                    f"diff, then rerun without VITTUI_UPDATE_SNAPSHOTS")
    if expected is None:
        pytest.fail(f"snapshot {path} is missing; create it with VITTUI_UPDATE_SNAPSHOTS=1 (not under CI) and "
                    f"review it\n{text}")
    pytest.fail(f"{name} changed; rerun with VITTUI_UPDATE_SNAPSHOTS=1 and review the diff\n{text}")


def test_check_snapshot_never_passes_on_a_missing_or_changed_file(tmp_path, monkeypatch):
    monkeypatch.delenv("VITTUI_UPDATE_SNAPSHOTS", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.fail.Exception, match="missing"):
        check_snapshot("x", "text", tmp_path)
    assert not (tmp_path / "x.txt").exists()
    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("VITTUI_UPDATE_SNAPSHOTS", "1")
    with pytest.raises(pytest.fail.Exception, match="missing"):  # CI never writes
        check_snapshot("x", "text", tmp_path)
    assert not (tmp_path / "x.txt").exists()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.fail.Exception, match="written"):  # writing is reported as a failure
        check_snapshot("x", "text", tmp_path)
    assert (tmp_path / "x.txt").read_text() == "text\n"
    monkeypatch.delenv("VITTUI_UPDATE_SNAPSHOTS")
    check_snapshot("x", "text", tmp_path)
    with pytest.raises(pytest.fail.Exception, match="changed"):
        check_snapshot("x", "other", tmp_path)


async def test_monitor_snapshot(runs_root):
    fr = FakeRun(runs_root, name="demo-digits", total_steps=690, steps_per_epoch=23)
    fr.started()
    fr.steps(150, allocated=310 << 20, reserved=512 << 20)
    fr.emit(Log(level="warning", message="augment.hflip > 0 hurts digits; consider 0", step=1))
    fr.emit(DataSkipped(count=1, examples=["broken.png"]))
    fr.emit(CheckpointSaved(step=138, path="checkpoints/step-138", best=True, metric=0.72))
    app = create_app(runs_root, gpu_source=gpu_source(fr.pid), attach="demo-digits")
    async with app.run_test(size=SIZE) as pilot:
        # Every part fed above is on screen, the footer with it (it is recomposed when the bindings change
        # and is blank for that frame), and the frame is settled: two captures in a row are the same.
        shot: list[str] = [""]

        def settled() -> bool:
            text, previous = screen_text(app), shot[0]
            shot[0] = text
            lines = text.splitlines()
            return (text == previous and "step 150/690" in lines[0] and "r Runs" in lines[-1]
                    and "GPU 0" in text and "torch reserved  512.0 MiB" in text
                    and "checkpoint saved (best)" in text and "┬" in text)

        await wait_for(pilot, settled, what="the fed run drawn and settled")
        # the worker pid is this test's: mask it without moving the pane's border
        text = re.sub(r"run pid \d+: \S+ \S+ *", lambda m: f"run pid PID: {m.group(0).split(': ')[1]}".ljust(
            len(m.group(0))), shot[0])
    fr.close()
    check_snapshot("monitor-120x40", text)


async def test_setup_snapshot(runs_root, no_gpu):
    """The setup screen with the real model catalogue (data in the package) and the real memory estimate
    (pure Python, from the recipe alone: deterministic) for the demo preset, with no GPU, once pre-flight
    (a real `vittui check`) has answered."""
    app = create_app(runs_root, gpu_source=no_gpu)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "estimate: peak" in screen_text(app) and "^s Start" in screen_text(app)
                       and "pre-flight ok" in screen_text(app), timeout=120)
        text = screen_text(app)
    check_snapshot("setup-120x40", text)

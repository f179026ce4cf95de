"""The one tiny recipe and the helpers every test folder shares.

Import it by module name (`from tiny import TINY, wait_for`): pytest puts `tests/` on sys.path for the
top-level conftest. Models are timm ViTs of 1–2 blocks, width 32, 16 px patches of 4: a step costs a few
milliseconds on one thread, so tests train for real instead of faking the loop.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path
from typing import Callable, Iterable, TypeVar

T = TypeVar("T")

# The model every tiny test trains: 2 blocks, width 32, 16 px images in 4 px patches (16 patches).
TINY_MODEL = [
    "model.name=vit_tiny_patch16_224", "model.source=timm", "model.img_size=16", "model.patch_size=4",
    "model.depth=2", "model.embed_dim=32", "model.num_heads=2",
]
# Light, deterministic augmentation (digits hate flips) on one thread (2 busy cores: 1 thread is ~10x faster).
TINY_AUGMENT = ["augment.hflip=0.0", "augment.crop_scale=[0.8, 1.0]", "augment.interpolation=bilinear"]

# In-process training: a few epochs of 128 digits, batch 16.
TINY = TINY_MODEL + TINY_AUGMENT + [
    "data.source=digits", "data.batch_size=16", "data.limit=128",
    "optim.lr=1e-3", "schedule.epochs=2", "schedule.warmup_epochs=0.5", "run.seed=3", "compute.threads=1",
]

# A worker process a test drives: a step budget so large that the run never ends by itself.
TINY_PROCESS = TINY_MODEL + TINY_AUGMENT + [
    "data.source=digits", "data.batch_size=32", "data.limit=256",
    "schedule.epochs=400", "schedule.warmup_epochs=0", "compute.threads=1", "run.checkpoint_every=10",
    "run.keep_last=2",
]


# The model tests build directly (timm.create_model / build_model kwargs): 2 blocks, width 64, 32 px in 8 px
# patches (a 4x4 grid).
TINY_TIMM = dict(img_size=32, patch_size=8, depth=2, embed_dim=64, num_heads=2)


def tiny_recipe(*extra: str):
    """The in-process tiny recipe, validated, with `extra` overrides (`"key=value"`) on top."""
    from vittui.recipe import Recipe

    return Recipe().with_overrides(list(TINY) + list(extra))


def tiny_toml(path: Path, overrides: Iterable[str] = TINY_PROCESS) -> Path:
    """Write a recipe file a `vittui train` process can take."""
    from vittui.recipe import Recipe

    path.write_text(Recipe().with_overrides(list(overrides)).to_toml())
    return path


def wait_for(pred: Callable[[], T], timeout: float = 90.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll `pred` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = pred()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what} not met in {timeout:.0f}s")


def vittui_cmd() -> list[str]:
    """The installed `vittui` console script (the module when the script is not on PATH)."""
    exe = shutil.which("vittui") or str(Path(sys.executable).with_name("vittui"))
    return [exe] if Path(exe).exists() else [sys.executable, "-m", "vittui.cli"]


def status(run: Path) -> dict:
    """status.json as a dict ({} while it is missing or half written)."""
    try:
        return json.loads((run / "status.json").read_text())
    except (FileNotFoundError, ValueError):
        return {}


def events(run: Path) -> list:
    from vittui.runs import events as ev

    return ev.read_all(run / "events.jsonl")


def step_numbers(evs: list) -> list[int]:
    from vittui.runs import events as ev

    return [e.step for e in evs if isinstance(e, ev.Step)]


def kill_if_alive(pid: int | None) -> None:
    """SIGKILL a worker a test started (by pid, never by name)."""
    from vittui.runs.lock import pid_alive

    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def write_digit_folder(root: Path, digits: Iterable[int], per_class: int, *, start: int = 0, size: int = 16) -> Path:
    """An ImageFolder of real handwritten digits (scikit-learn's), as PNGs: root/<digit>/<n>.png.

    `start` picks which images of each digit are used, so a train and a val folder can be disjoint.
    """
    import numpy as np
    from PIL import Image
    from sklearn.datasets import load_digits

    data = load_digits()
    for d in digits:
        idx = np.flatnonzero(data.target == d)[start:start + per_class]
        assert len(idx) == per_class, f"only {len(idx)} images of digit {d} from {start}"
        folder = root / str(d)
        folder.mkdir(parents=True, exist_ok=True)
        for j, i in enumerate(idx):
            img = (data.images[i] * (255 / 16)).astype(np.uint8)
            Image.fromarray(img, "L").convert("RGB").resize((size, size), Image.BILINEAR).save(folder / f"{j:03d}.png")
    return root


def run_processes(pid: int) -> list:
    """Every process of the run whose worker (or rank 0) is `pid`: the worker and its DataLoader workers,
    or, under `accelerate launch`, the launcher (found by walking up from rank 0) and all below it. As
    psutil.Process objects, so a later kill never hits a reused pid."""
    import psutil

    try:
        root = psutil.Process(pid)
        while (parent := root.parent()) is not None and "accelerate" in " ".join(parent.cmdline()):
            root = parent
        return [root] + root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def kill_processes(procs: list) -> None:
    """SIGKILL each of `procs` (from `run_processes`) that still runs."""
    import psutil

    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def all_gone(procs: list) -> bool:
    """Every one of `procs` has exited (zombies count as gone)."""
    import psutil

    def gone(p) -> bool:
        try:
            return not p.is_running() or p.status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    return all(gone(p) for p in procs)


def truncated_png(path: Path, size: int = 32) -> Path:
    """The first half of a random size x size RGB PNG, written to `path`: a file Pillow cannot read to the end."""
    import numpy as np
    from PIL import Image

    full = path.parent / ("full_" + path.name)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)).save(full)
    data = full.read_bytes()
    full.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


def train_stopped_at(recipe, root: Path, name: str, stop_at: int):
    """A new run `name` under `root`, trained in-process and asked to stop (as the dashboard's stop does)
    when step `stop_at` is logged: (the prepared run, train's result)."""
    from vittui.runs import events as ev
    from vittui.runs.control import InProcessControl
    from vittui.runs.launcher import prepare_run
    from vittui.train.loop import train

    run = prepare_run(recipe, root, name)
    control = InProcessControl()

    def on_event(e):
        if isinstance(e, ev.Step) and e.step == stop_at:
            control.send("stop")

    return run, train(recipe, run.path, control, on_event=on_event)


def stop_worker(run) -> None:
    """Never leave a worker training after a test: ask the run's worker (a RunDir, or None) to stop, and
    SIGKILL it if it has not ended within 15 s."""
    from vittui.runs import control
    from vittui.runs.lock import pid_alive

    status = run.read_status() if run is not None else None
    if status and status.pid and pid_alive(status.pid):
        control.send(run.path, "stop")
        deadline = time.monotonic() + 15
        while pid_alive(status.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        kill_if_alive(status.pid)


def run_in_thread(target: Callable[[], T]):
    """Start `target()` on a daemon thread (a training run a test pauses and resumes from outside); returns
    the thread and a dict whose "result" is the return value once it ends."""
    import threading

    box: dict = {}
    t = threading.Thread(target=lambda: box.setdefault("result", target()), daemon=True)
    t.start()
    return t, box


# A sweep trial: a 2-block width-64 ViT on 640 digits at 16 px, 4 epochs of 10 steps of 64, evaluated every 5
# steps (what a pruner needs), no probes. Measured: lr 3e-3 reaches ~25% val top-1 by step 40, lr 1e-6 stays
# at chance (~10%). `vittui sweep demo-digits` takes these as --set items.
TINY_SWEEP = [
    "model.img_size=16", "model.patch_size=4", "model.depth=2", "model.embed_dim=64", "model.num_heads=2",
    "data.limit=640", "schedule.epochs=4", "schedule.min_lr=1e-7", "run.eval_every=5", "run.probe_every=0",
    "compute.threads=1",
]
# lr from hopeless (1e-6: still at chance after 40 steps) to good, and warmup: what the e2e sweeps search.
SWEEP_SPACE = """
[optim.lr]
low = 1e-6
high = 3e-3
log = true

[schedule.warmup_epochs]
low = 0.0
high = 1.0
"""


def sweep_args(space: Path, trials: int, *extra: str) -> list[str]:
    """`sweep demo-digits --space SPACE --trials N` over the tiny sweep recipe, plus `extra` arguments."""
    args = ["sweep", "demo-digits", "--space", str(space), "--trials", str(trials)]
    for item in TINY_SWEEP:
        args += ["--set", item]
    return args + list(extra)

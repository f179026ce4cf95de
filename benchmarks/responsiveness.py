"""How the dashboard feels: first frame, key-to-screen for pause, re-attaching to a very long run.

    python benchmarks/responsiveness.py [--quick] [--only start,pause,tail] [--events 1000000]

1. Start to first frame: `vittui` in a detached tmux pane (120x40); time from spawning it until
   `tmux capture-pane` shows the setup screen ("Start ▶"). Then check that the dashboard process has
   no libtorch mapped (/proc/PID/maps) and that `python -X importtime` of the app imports no torch.
   Target <= 1.0 s.
2. Pause: the real app (`create_app(root, attach=run)` in `run_test`) on a live detached run; press
   space and time until the header reads PAUSED. Target <= 100 ms + one training step.
3. Re-attach to a 1M-event run: write 1M Step events, then in fresh processes time (a) one
   `EventTail.poll()` decoding every line, (b) the replay into `RunHistory` decoding every Step, and
   (c) the monitor's re-attach as shipped (`poll(max_bytes=8 MiB, step_stride=...)` batches fed into
   `RunHistory`, Step lines sampled down to ~50k), with the peak RSS above the process's baseline.
   Target <= 3 s, bounded memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_seconds, demo_recipe, load_note, median  # noqa: E402

PY = sys.executable


# ---- 1. start to first frame ------------------------------------------------------------------------

def _vittui_cmd() -> str:
    exe = shutil.which("vittui")
    return exe if exe else f"{PY} -m vittui.cli"


HELLO = """
from textual.app import App
from textual.widgets import Footer, Static
class Hello(App):
    BINDINGS = [("q", "quit", "Quit")]
    def compose(self):
        yield Static("hello preset Start")
        yield Footer()
Hello().run()
"""


def _time_to_screen(cmd: str, name: str) -> tuple[float, float, bool]:
    """Spawn `cmd` in a detached 120x40 tmux pane; seconds until the pane shows the setup screen, the
    process's CPU seconds at that moment, and whether libtorch is mapped in it."""
    for attempt in range(5):  # a tmux server that is exiting (its last session just closed) refuses once
        t0 = time.perf_counter()
        if subprocess.run(["tmux", "new-session", "-d", "-s", name, "-x", "120", "-y", "40", f"exec {cmd}"],
                          capture_output=True).returncode == 0:
            break
        time.sleep(0.2)
    shown, cpu, mapped = float("inf"), float("nan"), False
    try:
        while time.perf_counter() - t0 < 30:
            screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", name], capture_output=True, text=True).stdout
            if "Start" in screen and "preset" in screen:
                shown = time.perf_counter() - t0
                pid = subprocess.run(["tmux", "display-message", "-p", "-t", name, "#{pane_pid}"],
                                     capture_output=True, text=True).stdout.strip()
                cpu = cpu_seconds(pid)
                maps = Path(f"/proc/{pid}/maps")
                mapped = maps.exists() and "libtorch" in maps.read_text()
                break
            time.sleep(0.01)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", name], capture_output=True)
    return shown, cpu, mapped


def first_frame(runs: int) -> None:
    """vittui's setup screen against a minimal Textual app (a line of text and a footer) started the same
    way, alternating: the second is the floor that Python + Textual set on this machine."""
    if not shutil.which("tmux"):
        print("start: skipped (tmux is not installed)")
        return
    root = Path(tempfile.mkdtemp(prefix="vittui-bench-start-"))
    hello = root / "hello.py"
    hello.write_text(HELLO)
    times, cpus, floor, torch_mapped = [], [], [], []
    for i in range(runs):
        order = ("vittui", "hello") if i % 2 == 0 else ("hello", "vittui")
        for which in order:
            name = f"vittui-bench-{os.getpid()}-{i}-{which}"
            if which == "vittui":
                t, c, m = _time_to_screen(f"{_vittui_cmd()} --runs-dir {root}", name)
                times.append(t)
                cpus.append(c)
                torch_mapped.append(m)
            else:
                floor.append(_time_to_screen(f"{PY} {hello}", name)[0])
        print(f"  start {i + 1}: first frame after {times[-1]:.3f} s wall, {cpus[-1]:.3f} s CPU (user+sys) in the "
              f"app; a minimal Textual app {floor[-1]:.3f} s; libtorch mapped: {torch_mapped[-1]}", flush=True)
    imp = subprocess.run([PY, "-X", "importtime", "-c", "import vittui.cli, vittui.ui.app"], capture_output=True,
                         text=True).stderr
    torch_imported = any(line.rsplit("|", 1)[-1].strip() == "torch" for line in imp.splitlines())
    print(f"start to first frame: median {median(times):.3f} s wall, worst {max(times):.3f} s, median CPU "
          f"{median(cpus):.3f} s over {runs} starts (target <= 1.0 s); a minimal Textual app started the same way: "
          f"median {median(floor):.3f} s; torch in the UI process: maps {any(torch_mapped)}, importtime {torch_imported}")


# ---- 2. pause key to screen ------------------------------------------------------------------------

def pause_latency(presses: int, threads: int) -> None:
    from vittui.runs import control, launcher
    from vittui.runs import events as ev

    recipe = demo_recipe(**{"schedule.max_steps": 100000, "compute.threads": threads})
    root = Path(tempfile.mkdtemp(prefix="vittui-bench-pause-"))
    run = launcher.launch(recipe, root, "pause")
    lat: list[float] = []

    async def go() -> None:
        from vittui.ui.app import create_app
        from vittui.ui.screens.monitor import MonitorScreen

        app = create_app(root, attach=run.name)
        async with app.run_test(size=(120, 40)) as pilot:
            mon = app.screen
            assert isinstance(mon, MonitorScreen)
            header = mon.query_one("RunHeader")
            end = time.monotonic() + 600
            while mon.history.step < 10 and time.monotonic() < end:
                await pilot.pause(0.1)
            rng = random.Random(0)
            for _ in range(presses):
                await pilot.pause(rng.uniform(0.3, 1.0))
                t0 = time.perf_counter()
                await pilot.press("space")
                while "PAUSED" not in header.text and time.perf_counter() - t0 < 60:
                    await asyncio.sleep(0.002)
                lat.append(time.perf_counter() - t0)
                await pilot.press("space")  # resume
                while mon.state != "running" and time.monotonic() < end:
                    await asyncio.sleep(0.01)
            app.exit()

    try:
        asyncio.run(go())
    finally:
        control.send(run.path, "stop")
    steps = [e for e in ev.read_all(run.events_path) if isinstance(e, ev.Step)]
    step_ms = 1000 * median([s.step_time for s in steps])
    for i, x in enumerate(lat):
        print(f"  press {i + 1}: PAUSED on screen after {1000 * x:.0f} ms")
    print(f"space to PAUSED on screen: median {1000 * median(lat):.0f} ms, worst {1000 * max(lat):.0f} ms; "
          f"median step {step_ms:.0f} ms; target <= 100 ms + 1 step = {100 + step_ms:.0f} ms")


# ---- 3. re-attach to a 1M-event run ------------------------------------------------------------------

def write_events(path: Path, n: int) -> None:
    from vittui.runs import events as ev

    rng = random.Random(0)
    t = time.time() - n * 0.1
    with open(path, "w") as f:
        f.write(ev.RunStarted(name="long", model="vit", params_total=1, params_trainable=1, num_classes=10,
                              classes=[str(i) for i in range(10)], train_size=1, val_size=1, steps_per_epoch=1000,
                              total_steps=n, device="cpu").to_json() + "\n")
        lines = []
        for i in range(1, n + 1):
            lines.append(ev.Step(step=i, epoch=i / 1000, loss=2.3 * rng.random(), lr=1e-3 * rng.random(),
                                 grad_norm=rng.random(), images_per_s=400 + rng.random(), data_time=rng.random() / 100,
                                 step_time=0.1 + rng.random() / 100, t=t + i * 0.1).to_json())
            if len(lines) == 100_000:
                f.write("\n".join(lines) + "\n")
                lines = []
        if lines:
            f.write("\n".join(lines) + "\n")


CHILD = r"""
import json, sys, time
mode, path = sys.argv[1], sys.argv[2]
from vittui.runs import events as ev
from vittui.runs.history import RunHistory
from vittui.ui.screens.monitor import INITIAL_CHUNK
def hwm():  # peak RSS of this process in KiB (VmHWM is reset at exec; ru_maxrss is not)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
base = hwm()
t0, c0 = time.perf_counter(), time.process_time()
if mode == "app":  # the real dashboard attached to the run, until the whole history is on screen
    import asyncio, os, tempfile
    from vittui.recipe import load_preset, save
    from vittui.runs.store import RunDir, RunStatus
    from vittui.ui.app import create_app
    root = tempfile.mkdtemp(prefix="vittui-bench-reattach-")
    run = RunDir(os.path.join(root, "long")).create()
    save(load_preset("demo-digits"), run.recipe_path)
    run.write_status(RunStatus(state="stopped", step=int(sys.argv[3]), total_steps=int(sys.argv[3])))
    os.unlink(run.events_path)  # RunDir.create() made an empty one; the long run's file takes its place
    os.symlink(os.path.abspath(path), run.events_path)
    async def go():
        app = create_app(root, attach="long")
        async with app.run_test(size=(120, 40)) as pilot:
            mon = app.screen
            while not (mon.replayed and mon.query_one("#plot-loss").draws and f"step {sys.argv[3]}" in mon.query_one("RunHeader").text):
                await pilot.pause(0.02)
            await pilot.pause(0)
            global t1, c1, n, h
            t1, c1, n, h = time.perf_counter(), time.process_time(), mon.history.count, mon.history
            app.exit()
    t0, c0 = time.perf_counter(), time.process_time()  # from create_app: the import is not counted
    asyncio.run(go())
    stride = ev.replay_stride(ev.EventTail(path))
    assert h.step == h.series.last_step == int(sys.argv[3]), (h.step, h.series.last_step)
elif mode == "poll":  # every line decoded into one list: the worst case, no sampling
    n = len(ev.EventTail(path).poll())
    t1, c1 = time.perf_counter(), time.process_time()
    stride = 1
else:  # what the monitor's tail worker and its message handler do on re-attach
    tail, h, n = ev.EventTail(path), RunHistory(), 0
    stride = ev.replay_stride(tail) if mode == "replay" else 1
    while True:
        batch = tail.poll(max_bytes=INITIAL_CHUNK, step_stride=stride)
        if not batch:
            break
        h.feed(batch)
        n += len(batch)
    h.steps, h.loss  # what the first redraw reads out
    t1, c1 = time.perf_counter(), time.process_time()
    assert h.step == h.series.last_step == int(sys.argv[3]), (h.step, h.series.last_step)
print(json.dumps({"n": n, "s": t1 - t0, "cpu": c1 - c0, "rss_mib": (hwm() - base) / 1024, "stride": stride}))
"""


def tail_bench(n: int, rounds: int) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="vittui-bench-tail-"))
    path = tmp / "events.jsonl"
    t0 = time.perf_counter()
    write_events(path, n)
    size = path.stat().st_size
    print(f"  wrote {n:,} Step events ({size / 2**20:.0f} MiB) in {time.perf_counter() - t0:.1f} s")
    res: dict[str, list[dict]] = {"poll": [], "full": [], "replay": [], "app": []}
    for _ in range(rounds):
        for mode in res:
            out = subprocess.run([PY, "-c", CHILD, mode, str(path), str(n)], capture_output=True, text=True, check=True)
            res[mode].append(json.loads(out.stdout.strip().splitlines()[-1]))
    labels = {"poll": "EventTail.poll() of the whole file, every line decoded",
              "full": "replay into RunHistory, every Step decoded (before sampling)",
              "replay": "monitor re-attach as shipped (8 MiB batches, Step lines sampled, → RunHistory)",
              "app": "the dashboard attached (run_test, 120x40): start of the app → whole history on screen"}
    for mode, rs in res.items():
        print(f"{labels[mode]}: {median([r['s'] for r in rs]):.2f} s wall, {median([r['cpu'] for r in rs]):.2f} s CPU "
              f"for {rs[0]['n']:,} events decoded (stride {rs[0]['stride']}, median of {rounds}), "
              f"peak RSS +{median([r['rss_mib'] for r in rs]):.0f} MiB; target <= 3 s")
    shutil.rmtree(tmp, ignore_errors=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", default="start,pause,tail")
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=0, help="compute.threads of the paused run")
    ap.add_argument("--tail-rounds", type=int, default=3)
    ap.add_argument("--starts", type=int, default=10, help="starts of each app (alternating) for the first frame")
    a = ap.parse_args()
    only = set(a.only.split(","))
    print(load_note())
    if "start" in only:
        first_frame(2 if a.quick else a.starts)
    if "pause" in only:
        pause_latency(2 if a.quick else 5, a.threads)
    if "tail" in only:
        tail_bench(a.events if not a.quick else min(a.events, 200_000), 1 if a.quick else a.tail_rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Pause latency of a detached run, and the detached worker's throughput against the same loop run
in-process — measured side by side, alternating A/B.

    python benchmarks/control.py [--steps 120] [--rounds 2] [--pauses 5]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import demo_recipe, images_per_s, median, step_events, wait_for  # noqa: E402

from vittui.runs import control, launcher  # noqa: E402
from vittui.runs import events as ev  # noqa: E402


def status(run) -> dict:
    status = run.read_status()
    return asdict(status) if status else {}


def detached(recipe, root: Path, name: str):
    run = launcher.launch(recipe, root, name)
    wait_for(lambda: status(run).get("state") in ("finished", "failed", "stopped"), timeout=1800)
    return run


def in_process(recipe, root: Path, name: str):
    from vittui.train.loop import train

    run = launcher.prepare_run(recipe, root, name)
    train(recipe, run.path)
    return run


def pause_latency(recipe, root: Path, pauses: int, seed: int = 0) -> list[tuple[int, float]]:
    """(steps between the last step seen and the step the pause took effect, ms from write to ack)."""
    rng = random.Random(seed)
    run = launcher.launch(recipe.with_overrides({"schedule.max_steps": 100000}), root, "pause")
    out = []
    try:
        wait_for(lambda: len(step_events(run.path)) >= 10, timeout=300)
        for _ in range(pauses):
            time.sleep(rng.uniform(0.2, 1.0))
            seen = step_events(run.path)[-1].step
            cmd = control.send(run.path, "pause")
            ack = wait_for(lambda: next((e for e in ev.read_all(run.events_path)
                                         if isinstance(e, ev.ControlAck) and e.id == cmd.id), None))
            out.append((ack.step - seen, (ack.t - cmd.t) * 1000))
            control.send(run.path, "resume")
            wait_for(lambda: status(run).get("state") == "running")
    finally:
        control.send(run.path, "stop")
        wait_for(lambda: status(run).get("state") in ("stopped", "finished", "failed"), timeout=120)
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--pauses", type=int, default=5)
    a = ap.parse_args()
    recipe = demo_recipe(**{"schedule.max_steps": a.steps, "run.checkpoint_every": 0, "run.probe_every": 0})
    root = Path(tempfile.mkdtemp(prefix="vittui-bench-"))

    lat = pause_latency(recipe, root, a.pauses)
    print("pause latency (steps after the last step seen, ms from command write to acknowledgement):")
    for steps, ms in lat:
        print(f"  {steps} step(s)  {ms:7.1f} ms")
    print(f"  worst: {max(s for s, _ in lat)} step(s), {max(m for _, m in lat):.1f} ms; "
          f"median {median([m for _, m in lat]):.1f} ms; step time ≈ "
          f"{1000 * median([s.step_time for s in step_events(root / 'pause')]):.1f} ms")

    det, inp = [], []
    for i in range(a.rounds):  # alternate A/B so drifts in machine load hit both
        det.append(images_per_s(detached(recipe, root, f"detached-{i}").path))
        inp.append(images_per_s(in_process(recipe, root, f"inproc-{i}").path))
        print(f"round {i + 1}: detached {det[-1]:.1f} img/s, in-process {inp[-1]:.1f} img/s")
    ratio = median(det) / median(inp)
    print(f"detached / in-process throughput: {ratio:.3f}  (median of {a.rounds} rounds, {a.steps} steps each)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

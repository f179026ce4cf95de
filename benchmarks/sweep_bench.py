"""Pruning against none: the same 8-trial sweep of the digits demo twice, median pruner and no pruner,
with the same sampler and seed (TPE samples its first 10 trials at random, so both sweeps try the same
8 configurations in the same order; only pruning differs). Prints each sweep's wall time and best val
top-1, and the ratio of the wall times. Target: pruning finishes >= 1.5x sooner with a best within 1 point.

    python benchmarks/sweep_bench.py [--trials 8] [--epochs 12] [--seed 0]

Each sweep is the installed command (`vittui sweep demo-digits … --set schedule.epochs=E`), one trial at
a time, one torch thread per worker. The demo trains 30 epochs; the benchmark shortens every trial's epochs
equally (--epochs, 12 by default: ~20 minutes for the pair on 2 cores), which the numbers should say.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SPACE = """
[optim.lr]
low = 1e-5
high = 1e-2
log = true

[schedule.warmup_epochs]
low = 0.0
high = 2.0
"""


def vittui() -> list[str]:
    exe = shutil.which("vittui")
    return [exe] if exe else [sys.executable, "-m", "vittui.cli"]


def sweep(root: Path, pruner: str, trials: int, epochs: int, seed: int) -> dict:
    space = root / "space.toml"
    space.write_text(SPACE)
    runs = root / f"runs-{pruner}"
    cmd = vittui() + ["--runs-dir", str(runs), "sweep", "demo-digits", "--space", str(space), "--trials", str(trials),
                      "--study", f"bench-{pruner}", "--sampler", "tpe", "--seed", str(seed), "--pruner", pruner,
                      "--set", f"schedule.epochs={epochs}", "--set", "schedule.warmup_epochs=1",
                      "--set", "schedule.min_lr=1e-6", "--set", "compute.threads=1", "--set", "run.probe_every=0"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    report = json.loads(subprocess.run(vittui() + ["--runs-dir", str(runs), "sweep", "status", f"bench-{pruner}",
                                                   "--json"], check=True, capture_output=True, text=True).stdout)
    states = [t["state"] for t in report["trials"]]
    steps = 0
    for t in report["trials"]:
        st = json.loads((runs / t["run"] / "status.json").read_text())
        steps += st["step"]
    return {"pruner": pruner, "wall_s": wall, "best_top1": report["best"]["value"] if report["best"] else None,
            "best_trial": report["best"]["number"] if report["best"] else None,
            "pruned": states.count("pruned"), "complete": states.count("complete"), "steps_trained": steps,
            "params": [t["params"] for t in report["trials"]]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--trials", type=int, default=8)
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("median", "none"), help="one sweep only (to re-measure one side)")
    a = p.parse_args()
    print(f"load before: {os.getloadavg()}")
    root = Path(tempfile.mkdtemp(prefix="sweep-bench-"))
    results = [sweep(root, pruner, a.trials, a.epochs, a.seed) for pruner in ((a.only,) if a.only else ("median", "none"))]
    if a.only:
        r = results[0]
        print(f"{r['pruner']:>6}: {r['wall_s']:.0f} s, best val top-1 {r['best_top1']:.2f} (trial {r['best_trial']}), "
              f"{r['complete']} complete + {r['pruned']} pruned, {r['steps_trained']} steps trained; params "
              f"{r['params']}; load after: {os.getloadavg()}")
        return
    med, none = results
    assert med["params"] == none["params"], "the two sweeps must try the same configurations"
    for r in results:
        print(f"{r['pruner']:>6}: {r['wall_s']:.0f} s, best val top-1 {r['best_top1']:.2f} (trial {r['best_trial']}), "
              f"{r['complete']} complete + {r['pruned']} pruned, {r['steps_trained']} steps trained")
    print(f"no pruner / median: {none['wall_s'] / med['wall_s']:.2f}x the wall time, "
          f"{none['steps_trained'] / max(med['steps_trained'], 1):.2f}x the steps; "
          f"best top-1 difference {none['best_top1'] - med['best_top1']:+.2f} points")
    print(f"load after: {os.getloadavg()}")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()

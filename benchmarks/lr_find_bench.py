"""Is the LR range test's suggestion any good? On the digits demo: run `find_lr`, train the demo at the
suggested lr, and beside it a 5-point lr grid, all in this one process with the same seed; print each
top-1 and the ratio suggested / best of the grid (target: >= 0.95).

    python benchmarks/lr_find_bench.py [--epochs 30] [--grid 3e-4,1e-3,3e-3,1e-2,3e-2] [--threads 1]

`--epochs` shortens every arm by the same amount (the demo's 30 take ~100 s an arm on an idle 2-core box).
Top-1 is the validation top-1 after the last epoch ("last") and the best of the per-epoch evaluations
("best"); the ratio is given for both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import demo_recipe, load_note  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30, help="epochs of every arm (the demo's: 30)")
    ap.add_argument("--grid", default="3e-4,1e-3,3e-3,1e-2,3e-2", help="comma-separated lrs of the grid")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=100, help="steps of the range test")
    args = ap.parse_args()
    grid = [float(x) for x in args.grid.split(",")]

    from vittui.runs import launcher
    from vittui.train.build import build
    from vittui.train.loop import train
    from vittui.train.lr_find import find_lr

    recipe = demo_recipe(**{"compute.threads": args.threads, "schedule.epochs": args.epochs})
    print(f"lr_find_bench: demo-digits, {args.epochs} epochs an arm, seed {recipe.run.seed}, "
          f"{args.threads} thread(s); {load_note()}", flush=True)
    root = Path(tempfile.mkdtemp(prefix="lr_find_bench."))

    t = time.time()
    r = find_lr(build(recipe, root / "finder", record=False), steps=args.steps)
    print(f"range test: {r.steps} steps{' (stopped early)' if r.stopped_early else ''}, "
          f"{time.time() - t:.0f} s; rule: {r.rule}", flush=True)
    if r.suggested_lr is None:
        print("no suggestion (no finite loss)")
        return 1
    print(f"suggested lr: {r.suggested_lr:.3g}", flush=True)

    rows = []
    for tag, lr in [("suggested", r.suggested_lr)] + [("grid", g) for g in grid]:
        arm = recipe.with_overrides({"optim.lr": lr})
        run = launcher.prepare_run(arm, root, f"{tag}-{lr:.3g}")
        t = time.time()
        res = train(arm, run.path)
        rows.append((tag, lr, res.last_top1, res.best_top1, time.time() - t))
        print(f"  {tag:<9s} lr {lr:<9.3g} last top-1 {res.last_top1:6.2f}%  best {res.best_top1:6.2f}%  "
              f"{rows[-1][4]:5.0f} s", flush=True)

    sugg = rows[0]
    best_last = max(x[2] for x in rows[1:])
    best_best = max(x[3] for x in rows[1:])
    print(f"ratio suggested / best grid: last {sugg[2] / best_last:.3f} ({sugg[2]:.2f} / {best_last:.2f}), "
          f"best {sugg[3] / best_best:.3f} ({sugg[3]:.2f} / {best_best:.2f}); target >= 0.95")
    print(f"done; {load_note()}; runs in {root}")
    return 0 if sugg[2] / best_last >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())

"""vittui's loop against a loop written the way timm's `train.py` writes it, on the same recipe,
measured side by side in one run, alternating A/B.

    python benchmarks/peer.py [--quick] [--rounds 2] [--epochs 5] [--variants default,bf16,channels_last,threads1]

The peer (`overhead.bare_train(style="timm")`, in a process of its own): timm `create_model`, its
`create_loader` with the prefetcher train.py turns on by default (uint8 images through `fast_collate`,
normalised and randomly erased per batch), `Mixup` when the recipe mixes, `create_optimizer_v2`, `create_scheduler_v2` stepped
per update, bf16 autocast when the recipe asks, `loss.item()` only every 50 steps (train.py's log
interval), top-1 eval and a checkpoint (`torch.save` of model + optimizer) at each epoch end.
vittui: the detached worker as a user starts it (events, status, control point, probes, per-epoch eval
and checkpoint), no dashboard (overhead.py measures that).

Each variant applies the same settings to both sides (e.g. bf16 = compute.precision "bf16" on both),
so a variant's ratio says whether vittui keeps up, and the variant's vittui images/s against the
default's says whether the setting helps on this machine.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import demo_recipe, load_note, median  # noqa: E402
from overhead import rate, run_bare, run_vittui  # noqa: E402

VARIANTS = {
    "default": {},
    "bf16": {"compute.precision": "bf16"},
    "channels_last": {"compute.channels_last": True},
    "threads1": {"compute.threads": 1},
    "workers2": {"data.num_workers": 2},
}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="default variant only, 2 rounds of 3 epochs")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=5, help="step cap = epochs × 22 steps")
    ap.add_argument("--variants", default="default,bf16,channels_last,threads1")
    ap.add_argument("--threads", type=int, default=0, help="compute.threads for every variant (0 = torch default)")
    a = ap.parse_args()
    variants = a.variants.split(",")
    if a.quick:
        a.rounds, a.epochs, variants = 2, 3, ["default"]
    steps = 22 * a.epochs
    base = demo_recipe(**{"schedule.max_steps": steps, "compute.threads": a.threads})
    bs = base.data.batch_size
    root = Path(tempfile.mkdtemp(prefix="vittui-bench-peer-"))
    print(f"demo-digits, {steps} steps per run, threads={a.threads or 'default'}; {load_note()}")
    results: dict[str, tuple[float, float, float]] = {}
    for v in variants:
        recipe = base.with_overrides(VARIANTS[v])
        vs, ps, ratios, cpus = [], [], [], []
        for i in range(a.rounds):
            order = ("vittui", "peer") if i % 2 == 0 else ("peer", "vittui")
            got = {}
            for which in order:
                if which == "vittui":
                    got[which] = run_vittui(recipe, root, f"peer-{v}-{i}", dashboard=False)
                else:
                    got[which] = run_bare(recipe, steps, style="timm")
            vs.append(rate(got["vittui"]["times"], bs))
            ps.append(rate(got["peer"]["times"], bs))
            ratios.append(vs[-1] / ps[-1])
            cpus.append(got["peer"]["cpu"] / got["vittui"]["cpu"])
            print(f"[{v}] round {i + 1}: wall vittui {vs[-1]:.1f} img/s, timm-style {ps[-1]:.1f} img/s, ratio "
                  f"{ratios[-1]:.3f}; CPU ms/image vittui {1000 * got['vittui']['cpu']:.2f}, timm-style "
                  f"{1000 * got['peer']['cpu']:.2f} -> {cpus[-1]:.3f}   ({load_note()})", flush=True)
        results[v] = (median(ratios), median(cpus), median(vs), median(ps))
    print("\nvariant         vittui/timm (wall)  vittui/timm (CPU)  vittui img/s  timm img/s  vittui vs default")
    d = results.get("default", (0, 0, float("nan"), 0))[2]
    for v, (r, c, vi, pe) in results.items():
        print(f"{v:15s} {r:18.3f}  {c:17.3f}  {vi:12.1f}  {pe:10.1f}  {vi / d:17.3f}")
    print("target: vittui/timm-style >= 1.00")
    return 0


if __name__ == "__main__":
    sys.exit(main())

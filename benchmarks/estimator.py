"""Estimated vs measured memory of one training step, cell by cell.

    python benchmarks/estimator.py            # the full matrix (about 2 minutes on 2 cores)
    python benchmarks/estimator.py --quick    # a few cells

For each cell the harness (vittui.planning.measure) runs a real forward + backward + AdamW step of a timm
ViT on the CPU and counts saved-for-backward bytes, parameters, gradients and optimizer state; the
estimator (vittui.planning.memory) predicts the same from the recipe alone. Printed ratios are
estimate / measured for activations (at their peak, recompute included) and for the whole
(weights + grads + optimizer + EMA + activations); the target is every cell within 10%.
The estimator's relative step time (a FLOP count) is not checked here: CPU step times of these tiny
models are dominated by overhead, and bf16 on a CPU is slower per FLOP than fp32.
"""

from __future__ import annotations

import sys
import time

import torch

from vittui.planning.measure import measure_step
from vittui.hardware import fmt_bytes
from vittui.planning.memory import estimate
from vittui.recipe import Recipe

SHAPES = {
    # name: overrides (reduced depth so every cell runs in seconds)
    "tiny-32": {"model.name": "vit_tiny_patch16_224", "model.img_size": 32, "model.patch_size": 4,
                "model.depth": 4, "model.embed_dim": 96, "model.num_heads": 3},
    "tiny-64": {"model.name": "vit_tiny_patch16_224", "model.img_size": 64, "model.patch_size": 8,
                "model.depth": 4, "model.embed_dim": 192, "model.num_heads": 3},
    "small-224": {"model.name": "vit_small_patch16_224.augreg_in21k_ft_in1k", "model.img_size": 224,
                  "model.depth": 2},
}
VARIANTS = {
    "fp32": {},
    "bf16": {"compute.precision": "bf16"},
    "ckpt": {"compute.grad_checkpointing": True},
    "ckpt+bf16": {"compute.grad_checkpointing": True, "compute.precision": "bf16"},
    "lora": {"adapt.lora": True},
    "lora+bf16": {"adapt.lora": True, "compute.precision": "bf16"},
    "freeze2": {"adapt.freeze": "first_n", "adapt.freeze_blocks": 2},
    "probe+ema": {"adapt.freeze": "linear_probe", "regularize.ema": True},
    "sgd+ema": {"optim.name": "sgd", "regularize.ema": True},
}


def cells(quick: bool):
    if quick:
        yield "tiny-32", 2, "fp32"
        yield "tiny-32", 2, "bf16"
        yield "tiny-32", 2, "ckpt"
        yield "tiny-32", 2, "lora"
        return
    for shape in SHAPES:
        for batch in (2, 8):
            if shape == "small-224" and batch == 8:
                continue
            for variant in VARIANTS:
                yield shape, batch, variant


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    torch.set_num_threads(max(1, torch.get_num_threads()))
    t_start = time.perf_counter()
    rows = []
    header = (f"{'shape':10s} {'bs':>3s} {'variant':10s} {'act est':>10s} {'act meas':>10s} {'act':>6s} "
              f"{'total est':>10s} {'total meas':>10s} {'total':>6s}")
    print(header)
    print("-" * len(header))
    for shape, batch, variant in cells(quick):
        recipe = Recipe().with_overrides({**SHAPES[shape], **VARIANTS[variant], "data.batch_size": batch})
        m = measure_step(recipe)
        e = estimate(recipe)
        act = e.activations_peak / m.activations_peak_bytes
        tot = e.measurable / m.total_bytes
        rows.append((shape, batch, variant, act, tot))
        print(f"{shape:10s} {batch:3d} {variant:10s} {fmt_bytes(e.activations_peak):>10s} "
              f"{fmt_bytes(m.activations_peak_bytes):>10s} {act:6.3f} {fmt_bytes(e.measurable):>10s} "
              f"{fmt_bytes(m.total_bytes):>10s} {tot:6.3f}", flush=True)
    acts = [r[3] for r in rows]
    tots = [r[4] for r in rows]
    worst = max(rows, key=lambda r: max(abs(r[3] - 1), abs(r[4] - 1)))
    within = sum(1 for r in rows if abs(r[3] - 1) <= 0.10 and abs(r[4] - 1) <= 0.10)
    print("-" * len(header))
    print(f"{len(rows)} cells, {within} within 10% (activations and total); activations ratio "
          f"{min(acts):.3f}..{max(acts):.3f}, total ratio {min(tots):.3f}..{max(tots):.3f}; worst: "
          f"{worst[0]} bs{worst[1]} {worst[2]}; {time.perf_counter() - t_start:.0f} s")
    return 0 if within == len(rows) else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

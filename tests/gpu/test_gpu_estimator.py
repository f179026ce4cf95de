"""The memory estimator against what the CUDA caching allocator really held at the peak of one training step.

`vittui.planning.measure.measure_step(device="cuda")` runs forward, loss, backward and an AdamW step of a
timm ViT-S/16 at 224 px and reads `torch.cuda.max_memory_allocated` (`cuda_peak_bytes`). It compares with
`estimate(...).measurable` — weights, gradients, optimizer state, EMA and activations. The estimate's GPU
extras (the CUDA context, allocator slack) are outside the allocator's count, so they are left out. Batch 128
makes activations the bulk of every cell: what neither side models (cuBLAS workspace, the input batch,
AdamW's temporaries, a backward transient, tens of MiB) stays a few percent.
"""

from __future__ import annotations

import gc

import pytest
import torch

from vittui.planning.measure import measure_step
from vittui.planning.memory import estimate, fmt_bytes
from vittui.recipe import Recipe

pytestmark = pytest.mark.gpu

SMALL = {"model.name": "vit_small_patch16_224", "model.img_size": 224, "data.batch_size": 128}
CELLS = {
    "fp32": {},
    "bf16": {"compute.precision": "bf16"},
    "grad-checkpointing": {"compute.grad_checkpointing": True},
    "lora": {"adapt.lora": True},
    "frozen-6-blocks": {"adapt.freeze": "first_n", "adapt.freeze_blocks": 6},
}


@pytest.mark.parametrize("cell", list(CELLS))
def test_estimate_within_10_percent_of_the_cuda_peak(cell):
    recipe = Recipe().with_overrides({**SMALL, **CELLS[cell]})
    gc.collect()
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    base = torch.cuda.memory_allocated()  # whatever earlier tests left alive is not this step's
    m = measure_step(recipe, num_classes=10, device="cuda")
    assert m.device.startswith("cuda") and m.cuda_peak_bytes
    measured = m.cuda_peak_bytes - base
    est = estimate(recipe, num_classes=10)
    detail = (f"{cell}: estimate {fmt_bytes(est.measurable)} (weights {fmt_bytes(est.weights)}, grads "
              f"{fmt_bytes(est.gradients)}, optimizer {fmt_bytes(est.optimizer)}, activations "
              f"{fmt_bytes(est.activations)}, recompute {fmt_bytes(est.recompute)}, workspace "
              f"{fmt_bytes(est.workspace)}); max_memory_allocated {fmt_bytes(measured)}; harness's own count "
              f"{fmt_bytes(m.total_bytes)}; error {100 * (est.measurable - measured) / measured:+.1f}%")
    print(detail)
    assert est.total_params == m.total_params and est.trainable_params == m.trainable_params, detail
    assert est.measurable == pytest.approx(measured, rel=0.10), detail

"""The estimator against the measuring harness (one real training step on the CPU), and its verdicts."""

from __future__ import annotations

import pytest

from vittui.planning.dims import ModelDims, dims_for
from vittui.planning.memory import GIB, estimate
from vittui.recipe import Recipe

TINY = {"model.name": "vit_tiny_patch16_224", "model.img_size": 32, "model.patch_size": 4, "model.depth": 3,
        "model.embed_dim": 96, "model.num_heads": 3, "data.batch_size": 4}

CELLS = [
    {},
    {"compute.precision": "bf16"},
    {"compute.grad_checkpointing": True},
    {"adapt.lora": True, "compute.precision": "bf16"},
    {"adapt.freeze": "first_n", "adapt.freeze_blocks": 2},
    {"adapt.freeze": "linear_probe", "regularize.ema": True},
    {"adapt.freeze": "first_n", "adapt.freeze_blocks": 2, "compute.grad_checkpointing": True},
    {"adapt.freeze": "linear_probe", "compute.grad_checkpointing": True},
]


@pytest.mark.parametrize("cell", CELLS, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "fp32")
def test_estimate_within_10_percent_of_measured(cell):
    from vittui.planning.measure import measure_step

    recipe = Recipe().with_overrides({**TINY, **cell})
    measured = measure_step(recipe)
    est = estimate(recipe)
    assert est.total_params == measured.total_params
    assert est.trainable_params == measured.trainable_params
    assert est.optimizer == measured.optimizer_bytes
    assert est.gradients == measured.grads_bytes
    assert est.ema == measured.ema_bytes
    assert est.measurable == pytest.approx(measured.total_bytes, rel=0.10)
    assert est.activations_peak == pytest.approx(measured.activations_peak_bytes, rel=0.10)


def test_frozen_prefix_and_checkpointing_save_memory():
    full = estimate(Recipe().with_overrides(TINY))
    frozen = estimate(Recipe().with_overrides({**TINY, "adapt.freeze": "first_n", "adapt.freeze_blocks": 2}))
    ckpt = estimate(Recipe().with_overrides({**TINY, "compute.grad_checkpointing": True}))
    probe = estimate(Recipe().with_overrides({**TINY, "adapt.freeze": "linear_probe"}))
    assert probe.activations < frozen.activations < full.activations
    assert ckpt.activations_peak < full.activations
    assert ckpt.relative_step_time > full.relative_step_time == pytest.approx(1.0, rel=0.02)
    assert probe.relative_step_time < 0.5  # forward only, plus a head


def test_lora_keeps_activations_but_not_optimizer_state():
    full = estimate(Recipe().with_overrides(TINY))
    lora = estimate(Recipe().with_overrides({**TINY, "adapt.lora": True}))
    assert lora.optimizer < full.optimizer / 10
    assert lora.activations > full.activations / 2  # adapters need gradients through every block


def test_fits_verdict():
    recipe = Recipe().with_overrides({"model.name": "vit_large_patch16_224.augreg_in21k_ft_in1k",
                                      "data.batch_size": 64, "compute.precision": "bf16"})
    big = estimate(recipe, num_classes=100, gpu_free_bytes=8 * GIB)
    assert big.fits is False and big.peak > 8 * GIB
    small = estimate(Recipe().with_overrides({"model.name": "deit_tiny_patch16_224.fb_in1k",
                                              "data.batch_size": 32, "compute.precision": "bf16"}),
                     num_classes=100, gpu_free_bytes=8 * GIB)
    assert small.fits is True
    assert estimate(recipe).fits is None
    assert "does NOT fit" in big.table() and "peak" in big.table()


def test_dims_from_catalogue_and_overrides():
    r = Recipe().with_overrides({"model.name": "vit_small_patch16_224.augreg_in21k_ft_in1k"})
    d = dims_for(r)
    assert (d.embed_dim, d.depth, d.heads, d.patch, d.tokens) == (384, 12, 6, 16, 197)
    d2 = dims_for(Recipe().with_overrides(TINY))
    assert (d2.embed_dim, d2.depth, d2.heads, d2.patch, d2.tokens, d2.hidden) == (96, 3, 3, 4, 65, 384)
    d3 = dims_for(Recipe().with_overrides({"model.name": "vit_base_patch16_224.augreg_in21k_ft_in1k",
                                           "model.img_size": 384}))
    assert d3.params(1000) == 86_859_496  # only the position embedding grows (timm: 86.86 M at 384)
    assert isinstance(dims_for(r, ModelDims(depth=2)), ModelDims)


def test_memory_module_imports_no_torch():
    import subprocess
    import sys

    code = ("import sys; import vittui.planning.memory as m; from vittui.recipe import Recipe; "
            "m.estimate(Recipe()); assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)

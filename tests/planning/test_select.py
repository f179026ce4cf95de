"""recommend(): strategy by data size × similarity, memory and latency filters, reasons."""

from __future__ import annotations

import pytest

from vittui.planning.select import choose_strategy, recommend


def test_tiny_similar_data_recommends_a_linear_probe_first():
    recs = recommend(images=300, classes=5, similarity="high", gpu_mem_gb=None, latency_ms=None)
    assert recs[0].strategy == "linear_probe"
    assert any("from scratch" in r for r in recs[0].reasons)
    assert recs == sorted(recs, key=lambda r: -r.score)


def test_large_different_data_recommends_full_finetune():
    recs = recommend(images=300_000, classes=200, similarity="low", gpu_mem_gb=None, latency_ms=None)
    assert recs[0].strategy == "full_finetune"


def test_imagenet_scale_can_train_from_scratch_with_deit():
    recs = recommend(images=1_300_000, classes=1000, similarity="low", gpu_mem_gb=None, latency_ms=None)
    assert recs[0].strategy == "from_scratch" and recs[0].model.family == "deit"


def test_memory_filter_excludes_large_models():
    everything = {r.model.key for r in recommend(5_000, 10, "low", None, None)}
    small_gpu = recommend(5_000, 10, "low", gpu_mem_gb=4, latency_ms=None)
    keys = {r.model.key for r in small_gpu}
    assert "vit-l16-224" in everything and "vit-l16-224" not in keys
    assert keys and all(r.model.params < 100e6 for r in small_gpu)
    assert all(r.peak_bytes <= 4 * 1024 ** 3 for r in small_gpu)
    assert any("fits in 4 GB" in reason for reason in small_gpu[0].reasons)


def test_latency_budget_filters_by_flops():
    recs = recommend(20_000, 10, "medium", gpu_mem_gb=None, latency_ms=2.0)
    assert recs and all(r.latency_ms <= 2.0 for r in recs)
    assert "vit-b16-384" not in {r.model.key for r in recs}


def test_strategy_table_and_bad_input():
    assert choose_strategy(500, "medium")[0] == "lora"
    assert choose_strategy(500, "low")[0] == "last_n_blocks"
    assert choose_strategy(10_000, "high")[0] == "last_n_blocks"
    with pytest.raises(ValueError):
        choose_strategy(10, "very")
    with pytest.raises(ValueError):
        recommend(10, 2, "high", None, None, task="detection")


def test_small_data_full_finetune_prefers_a_small_model():
    from vittui.planning.select import recommend

    recs = recommend(5000, 4, "low", gpu_mem_gb=24, latency_ms=20)
    assert recs[0].strategy == "full_finetune"
    assert recs[0].model.params < 30e6  # a ViT-B's 86 M parameters overfit 5,000 images

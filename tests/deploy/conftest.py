"""Tiny runs trained once with the real loop, shared by the deploy tests (session scope: each run costs a
few seconds, and predict and export read the same ones without changing them); run_a and run_b come
from tests/conftest.py, which tests/runs shares."""

from __future__ import annotations

from pathlib import Path

import pytest
from trained import train_tiny


@pytest.fixture(scope="session")
def runs_root(trained_root) -> Path:
    """The folder of the shared tiny runs (run_a, run_b: tests/conftest.py) and of the ones below."""
    return trained_root


@pytest.fixture(scope="session")
def run_lora(runs_root) -> Path:
    """LoRA on timm's qkv with EMA weights (decay 0.5 so that 4 steps move them)."""
    return train_tiny(runs_root, "lora", ["adapt.lora=true", "regularize.ema=true", "regularize.ema_decay=0.5"])


@pytest.fixture(scope="session")
def val_images(tmp_path_factory, run_a) -> tuple[Path, list[int]]:
    """Run a's validation images as PNG files (lossless, so predict sees the pixels eval saw), in the
    validation set's order, and their labels."""
    from vittui.data.sources import build_data
    from vittui.recipe import load
    from vittui.runs.store import RunDir

    folder = tmp_path_factory.mktemp("val-images")
    data = build_data(load(RunDir(run_a).recipe_path), for_eval=True)
    labels = []
    for i in range(len(data.val_set)):
        data.val_set.image(i).save(folder / f"{i:04d}.png")
        labels.append(data.val_set.labels[i])
    return folder, labels


@pytest.fixture(scope="session")
def run_hf_lora(runs_root) -> Path:
    """A transformers ViT (built from config, offline) with LoRA on its q/v projections."""
    return train_tiny(runs_root, "hf-lora", ["model.name=google/vit-base-patch16-224", "model.source=hf",
                                         "adapt.lora=true"])

"""Tiny runs trained once with the real loop, shared by the deploy tests (session scope: each run costs a
few seconds, and compare, predict and export all read the same ones without changing them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tiny import TINY

from vittui.recipe import Recipe


def tiny_overrides() -> list[str]:
    """The tiny model and data of tests/tiny.py, stopped after 4 optimizer steps."""
    return list(TINY) + ["schedule.max_steps=4"]


# what run "b" changes from run "a": compare must report exactly these keys
B_CHANGES = {"optim.lr": 2e-3, "regularize.label_smoothing": 0.0}


def _train(root: Path, name: str, extra: list[str]) -> Path:
    from vittui.runs.launcher import prepare_run
    from vittui.train.loop import train

    recipe = Recipe().with_overrides(tiny_overrides() + extra)
    run = prepare_run(recipe, root, name)
    result = train(recipe, run.path)
    assert result.state == "finished", result
    return run.path


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("deploy-runs")


@pytest.fixture(scope="session")
def run_a(runs_root) -> Path:
    return _train(runs_root, "a", [])


@pytest.fixture(scope="session")
def run_b(runs_root) -> Path:
    return _train(runs_root, "b", [f"{k}={v}" for k, v in B_CHANGES.items()])


@pytest.fixture(scope="session")
def run_lora(runs_root) -> Path:
    """LoRA on timm's qkv with EMA weights (decay 0.5 so that 4 steps move them)."""
    return _train(runs_root, "lora", ["adapt.lora=true", "regularize.ema=true", "regularize.ema_decay=0.5"])


@pytest.fixture(scope="session")
def val_images(tmp_path_factory, run_a) -> tuple[Path, list[int]]:
    """Run a's validation images as PNG files (lossless, so predict sees the pixels eval saw), in the
    validation set's order, and their labels."""
    from vittui.data.sources import build_data
    from vittui.recipe import load

    folder = tmp_path_factory.mktemp("val-images")
    data = build_data(load(run_a / "recipe.toml"), for_eval=True)
    labels = []
    for i in range(len(data.val_set)):
        data.val_set.image(i).save(folder / f"{i:04d}.png")
        labels.append(data.val_set.labels[i])
    return folder, labels


@pytest.fixture(scope="session")
def run_hf_lora(runs_root) -> Path:
    """A transformers ViT (built from config, offline) with LoRA on its q/v projections."""
    return _train(runs_root, "hf-lora", ["model.name=google/vit-base-patch16-224", "model.source=hf",
                                         "adapt.lora=true"])

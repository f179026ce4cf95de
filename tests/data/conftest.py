"""Tiny generated datasets for the data tests (no downloads)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image
from tiny import truncated_png as _truncated_png

from vittui.recipe import Recipe

COLOURS = [(220, 30, 30), (30, 200, 30), (30, 30, 220), (200, 200, 30)]


def _make_recipe(**overrides) -> Recipe:
    base = {"model.img_size": 32, "data.batch_size": 4, "run.seed": 0}
    base.update(overrides)
    return Recipe().with_overrides(base)


def _write_png(path: Path, colour, size=(12, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _write_tree(root: Path, counts: dict[str, int], start: int = 0) -> list[Path]:
    """root/<class>/img_<n>.png with a solid colour per class."""
    out = []
    for k, (name, n) in enumerate(counts.items()):
        for j in range(n):
            out.append(_write_png(root / name / f"img_{start + j:03d}.png", COLOURS[k % len(COLOURS)]))
    return out


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "flowers"
    _write_tree(root, {"daisy": 10, "rose": 10, "tulip": 10})
    return root


@pytest.fixture
def split_tree(tmp_path: Path) -> Path:
    root = tmp_path / "presplit"
    _write_tree(root / "train", {"cat": 6, "dog": 6})
    _write_tree(root / "val", {"cat": 2, "dog": 3}, start=100)
    return root


@pytest.fixture
def make_recipe():
    """make_recipe(**{"data.source": ...}) → a validated Recipe at 32 px, batch 4, seed 0."""
    return _make_recipe


@pytest.fixture
def write_png():
    return _write_png


@pytest.fixture
def write_tree():
    return _write_tree


@pytest.fixture
def truncated_png():
    return _truncated_png

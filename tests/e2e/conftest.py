from pathlib import Path

import pytest

from vittui.recipe import Recipe

TINY_E2E = [
    "model.name=vit_tiny_patch16_224", "model.source=timm", "model.img_size=16", "model.patch_size=4",
    "model.depth=2", "model.embed_dim=32", "model.num_heads=2",
    "data.source=digits", "data.batch_size=32", "data.limit=256",
    "augment.hflip=0.0", "augment.crop_scale=[0.8, 1.0]", "augment.interpolation=bilinear",
    "schedule.epochs=400", "schedule.warmup_epochs=0", "compute.threads=1", "run.checkpoint_every=10",
]


@pytest.fixture
def tiny_toml(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(Recipe().with_overrides(TINY_E2E).to_toml())
    return path

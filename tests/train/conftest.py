import pytest

from vittui.recipe import Recipe

TINY = [
    "model.name=vit_tiny_patch16_224", "model.source=timm", "model.img_size=16", "model.patch_size=4",
    "model.depth=2", "model.embed_dim=32", "model.num_heads=2",
    "data.source=digits", "data.batch_size=16", "data.limit=128",
    "augment.hflip=0.0", "augment.crop_scale=[0.8, 1.0]", "augment.interpolation=bilinear",
    "optim.lr=1e-3", "schedule.epochs=2", "schedule.warmup_epochs=0.5", "run.seed=3", "compute.threads=1",
]


@pytest.fixture
def tiny_recipe() -> Recipe:
    return Recipe().with_overrides(TINY)

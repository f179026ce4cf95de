import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from e2e_helpers import vittui_cmd

from vittui.recipe import Recipe

TINY_E2E = [
    "model.name=vit_tiny_patch16_224", "model.source=timm", "model.img_size=16", "model.patch_size=4",
    "model.depth=2", "model.embed_dim=32", "model.num_heads=2",
    "data.source=digits", "data.batch_size=32", "data.limit=256",
    "augment.hflip=0.0", "augment.crop_scale=[0.8, 1.0]", "augment.interpolation=bilinear",
    "schedule.epochs=400", "schedule.warmup_epochs=0", "compute.threads=1", "run.checkpoint_every=10",
]


@pytest.fixture
def cli(tmp_path):
    """Run the installed `vittui` command in tmp_path with its own runs folder."""
    env = {**os.environ, "VITTUI_RUNS": str(tmp_path / "runs")}

    def run(*args, check=True, timeout=120, extra_env=None):
        p = subprocess.run(vittui_cmd() + list(args), cwd=tmp_path, env={**env, **(extra_env or {})},
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"vittui {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    run.root = tmp_path / "runs"
    return run


@pytest.fixture
def tiny_toml(tmp_path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(Recipe().with_overrides(TINY_E2E).to_toml())
    return path

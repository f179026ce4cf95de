"""The batch-size finder's GPU path (vittui/train/batch_find.py): doubling until a real CUDA
out-of-memory error, then bisecting, with the device capped by `max_memory` (the allocator's
per-process fraction) so the search ends in seconds; afterwards the cache is freed, the cap lifted and
the weights are as before."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from gpu_helpers import cuda_recipe

from vittui.train.batch_find import find_batch
from vittui.train.build import build

pytestmark = pytest.mark.gpu

GIB = 2**30
# 224 px in 8 px patches (785 tokens), 4 blocks of width 192: by hand ~16 fp32 values per token and
# channel per block kept for backward, 16 * 785 * 192 * 4 B * 4 blocks ≈ 39 MB an image: ~50 fit in 2 GiB
BIG = ["model.img_size=224", "model.patch_size=8", "model.depth=4", "model.embed_dim=192", "model.num_heads=3",
       "data.limit=0", "data.batch_size=8"]
LIMIT = 2 * GIB


def test_gpu_finder_doubles_to_a_real_oom_then_bisects(tmp_path: Path):
    b = build(cuda_recipe(*BIG), tmp_path / "x", record=False)
    weights = {k: v.detach().cpu().clone() for k, v in b.raw_model.state_dict().items()}
    baseline = torch.cuda.memory_allocated()
    r = find_batch(b, max_memory=LIMIT)

    assert r.device.startswith("cuda") and r.limit_bytes == LIMIT and r.limit_source == "--max-memory"
    per_image = 16 * 785 * 192 * 4 * 4
    assert 0 < r.largest < 2 * LIMIT // per_image, r  # within a factor 2 of the hand count
    by_batch = {t.batch: t for t in r.tries}
    assert by_batch[r.largest].fits and by_batch[r.largest].peak_bytes <= LIMIT
    over = by_batch[r.largest + r.unit]  # bisection ends between a size that fit and the next that did not
    assert not over.fits and over.note == "CUDA out of memory"
    sizes = sorted(by_batch)
    assert sizes[:3] == [1, 2, 4]  # doubling from one image
    # afterwards: the cache is freed, the cap is lifted, the model is as before
    assert torch.cuda.memory_allocated() <= baseline + 64 * 2**20
    big = torch.empty(int(LIMIT * 1.5), dtype=torch.uint8, device="cuda")  # past the 2 GiB cap
    del big
    assert all(torch.equal(v.cpu(), weights[k]) for k, v in b.raw_model.state_dict().items())

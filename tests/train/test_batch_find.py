"""The batch-size finder on the CPU (vittui/train/batch_find.py): under a memory limit the test sets, it
finds the largest batch whose estimated peak fits — the answer computed here by scanning every batch
size through the estimator — takes real steps at each size it keeps, and puts the model back."""

from __future__ import annotations

from pathlib import Path

import torch
from tiny import tiny_recipe

from vittui.planning.memory import estimate
from vittui.train.batch_find import recommend, search, BatchTry, find_batch
from vittui.train.build import build


def cpu_peak(recipe, batch: int) -> int:
    return estimate(recipe.with_overrides([f"data.batch_size={batch}"]), num_classes=10, device="cpu").peak


def test_search_finds_the_largest_size_that_fits_by_doubling_then_bisection():
    for answer in (0, 1, 2, 5, 37, 64, 100):
        tried: list[int] = []

        def fits(n: int) -> bool:
            tried.append(n)
            return n <= answer

        assert search(fits, cap=100) == answer
        assert len(tried) == len(set(tried)) <= 16  # each size once; log2 sizes, not a scan
    assert search(lambda n: n <= 37, cap=100, unit=2) == 36  # mixup: even sizes only


def test_recommendation_rule():
    t = [BatchTry(8, True, 0, images_per_s=100.0), BatchTry(16, True, 0, images_per_s=150.0),
         BatchTry(32, True, 0, images_per_s=140.0), BatchTry(64, False, 0)]
    assert recommend(t) == 32  # the largest that fits; 150 is within 10% of 140
    t[2].images_per_s = 120.0
    assert recommend(t) == 16  # the largest is more than 10% slower than the fastest
    assert recommend([BatchTry(1, False, 0)]) == 0


def test_cpu_finder_finds_the_largest_batch_under_the_memory_limit(tmp_path: Path):
    recipe = tiny_recipe("data.limit=128")
    # a limit between the estimates of two batch sizes: the expected answer by a plain scan of the estimator
    limit = (cpu_peak(recipe, 23) + cpu_peak(recipe, 24)) // 2
    expected = max(n for n in range(1, 129) if cpu_peak(recipe, n) <= limit)
    assert expected == 23

    b = build(recipe, tmp_path / "x", record=False)
    weights = {k: v.clone() for k, v in b.raw_model.state_dict().items()}
    r = find_batch(b, max_memory=limit)
    assert r.largest == expected
    assert r.limit_bytes == limit and r.limit_source == "--max-memory" and r.max_batch == 128
    by_batch = {t.batch: t for t in r.tries}
    assert by_batch[23].fits and not by_batch[24].fits  # both sides of the answer were tried
    for t in r.tries:
        assert t.fits == (t.estimate_bytes <= limit) and t.estimate_bytes == cpu_peak(recipe, t.batch)
        assert (t.images_per_s is not None and t.images_per_s > 0) == t.fits  # real steps where it fits
    assert r.recommended in {t.batch for t in r.tries if t.fits}
    assert all(torch.equal(v, weights[k]) for k, v in b.raw_model.state_dict().items())

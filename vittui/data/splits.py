"""Train/val splits for sources that ship no validation set, seeded so the same recipe gets the same split,
and `SourceSplit`, what every source reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from vittui.data.errors import DataError


def split_indices(labels: Sequence[int], val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (when every class has 2+ items) train/val split; train order shuffled, val sorted."""
    from sklearn.model_selection import train_test_split

    labels = np.asarray(labels)
    n = len(labels)
    idx = np.arange(n)
    if n < 2:
        raise DataError(f"need at least 2 images to split off a validation set (found {n})")
    try:
        tr, va = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError:
        # a class with a single image (or fewer val slots than classes): fall back to a plain split
        n_val = min(n - 1, max(1, int(np.ceil(val_fraction * n))))
        tr, va = train_test_split(idx, test_size=n_val, random_state=seed)
    return np.asarray(tr), np.sort(np.asarray(va))


def seeded_order(n: int, seed: int) -> np.ndarray:
    """A fixed shuffle of range(n) for `seed` (so that data.limit takes a mix of classes)."""
    return np.random.default_rng(seed).permutation(n)


@dataclass
class SourceSplit:
    """What a source reader hands `build_data`: readers and indices of the train and val views (and a test
    view when the source has one), the class names, warnings for the person and the files it skipped."""

    reader_train: Any
    train_idx: np.ndarray
    train_labels: np.ndarray
    reader_val: Any
    val_idx: np.ndarray
    val_labels: np.ndarray
    classes: list[str]
    test: tuple[Any, np.ndarray, np.ndarray] | None = None
    warnings: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


__all__ = ["split_indices", "seeded_order", "SourceSplit"]

"""Seeded samplers, so that an epoch's order depends only on (seed, epoch) and a run can resume mid-epoch.

Reproducible order and resume
    The train loader samples with `EpochRandomSampler` (or `EpochWeightedSampler` for
    `data.class_balance = "weighted_sampler"`). Each epoch's order comes from a fresh
    `torch.Generator` seeded with `epoch_seed(run.seed, epoch)`, so epoch E's order is a pure function
    of (seed, E) and is the same whether or not the process restarted in between. Call
    `set_epoch(loader, E)` before iterating epoch E (if you don't, the sampler counts epochs itself
    from 0). To resume in the middle of an epoch, `iterate_from(loader, E, K)` returns an iterator over
    epoch E starting at batch K: the sampler draws the whole epoch's indices and drops the first
    K * batch_size of them, so the skipped images are never loaded.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch: distinct for every (seed, epoch) pair, restart-independent."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


class _EpochMixin:
    seed: int
    epoch: int
    _skip: int

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """The next iteration draws epoch `epoch`'s order and leaves out its first `skip` indices."""
        self.epoch = int(epoch)
        self._skip = int(skip)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))

    def _finish(self, order: list[int]) -> Iterator[int]:
        skip, self._skip = self._skip, 0
        self.epoch += 1  # counts epochs by itself if set_epoch is never called
        return iter(order[skip:])


class EpochRandomSampler(_EpochMixin, RandomSampler):
    """A random permutation per epoch from a generator seeded by `epoch_seed(seed, epoch)`."""

    def __init__(self, data_source, seed: int = 0):
        RandomSampler.__init__(self, data_source)
        self.seed, self.epoch, self._skip = int(seed), 0, 0

    def __iter__(self) -> Iterator[int]:
        n = len(self.data_source)
        order = torch.randperm(n, generator=self._generator()).tolist()
        return self._finish(order)


class EpochWeightedSampler(_EpochMixin, WeightedRandomSampler):
    """`WeightedRandomSampler` (with replacement) whose draws per epoch come from `epoch_seed`."""

    def __init__(self, weights: Sequence[float], num_samples: int, seed: int = 0):
        WeightedRandomSampler.__init__(self, weights, num_samples, replacement=True)
        self.seed, self.epoch, self._skip = int(seed), 0, 0

    def __iter__(self) -> Iterator[int]:
        order = torch.multinomial(self.weights, self.num_samples, self.replacement,
                                  generator=self._generator()).tolist()
        return self._finish(order)


def set_epoch(loader: DataLoader, epoch: int) -> None:
    """Make the loader's next iteration produce epoch `epoch`'s order (no-op for unshuffled loaders)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)


def iterate_from(loader: DataLoader, epoch: int, start_batch: int = 0) -> Iterator:
    """An iterator over epoch `epoch` of `loader` that starts at batch `start_batch` (for resume).

    With the seeded train samplers the first `start_batch * batch_size` indices are drawn and
    discarded without loading any image; for other loaders the first batches are loaded and dropped.
    """
    start_batch = max(0, int(start_batch))
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch") and loader.batch_size:
        sampler.set_epoch(epoch, skip=start_batch * int(loader.batch_size))
        return iter(loader)
    it = iter(loader)
    for _ in range(start_batch):
        try:
            next(it)
        except StopIteration:
            break
    return it


__all__ = ["epoch_seed", "EpochRandomSampler", "EpochWeightedSampler", "set_epoch", "iterate_from"]

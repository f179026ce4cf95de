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

Augmentation seeded per image
    With `data.num_workers > 0` the random crops are drawn in worker processes, whose RNG no checkpoint
    holds and whose history a resumed run cannot replay; with several processes accelerate's loader
    reads one batch ahead, so the next batch's crops come out of the RNG before the checkpoint saves
    it. In both cases the sampler is made `seeded` (`seed_per_image`): it yields
    `(index, sample_seed(seed, epoch, position))` pairs, and each image is transformed under an RNG
    seeded with that number (`vittui.data.dataset.rng_from`). An image's augmentation then depends only
    on (seed, epoch, position in the epoch): whichever worker or rank loads it, whenever, in the first
    run or in a resumed one.
"""

from __future__ import annotations

from itertools import islice
from typing import Iterator, Sequence

import torch
from torch.utils.data import DataLoader, RandomSampler, WeightedRandomSampler


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed of one epoch: distinct for every (seed, epoch) pair, restart-independent."""
    return (int(seed) * 1_000_003 + int(epoch)) % (2**63 - 1)


_MASK64 = 2**64 - 1


def sample_seed(seed: int, epoch: int, position: int) -> int:
    """The augmentation seed of the image at `position` of epoch `epoch`'s order (splitmix64)."""
    x = (epoch_seed(seed, epoch) * 0x9E3779B97F4A7C15 + int(position) + 1) & _MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK64
    return (x ^ (x >> 31)) & (2**63 - 1)


class _EpochMixin:
    seed: int
    epoch: int
    _skip: int
    seeded: bool = False  # yield (index, sample seed) pairs: set by make_loader when workers load the images

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """The next iteration draws epoch `epoch`'s order and leaves out its first `skip` indices."""
        self.epoch = int(epoch)
        self._skip = int(skip)

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))

    def _finish(self, order: list[int]) -> Iterator:
        skip, self._skip = self._skip, 0
        epoch, self.epoch = self.epoch, self.epoch + 1  # counts epochs by itself if set_epoch is never called
        if self.seeded:
            return ((i, sample_seed(self.seed, epoch, k)) for k, i in islice(enumerate(order), skip, None))
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


def seed_per_image(loader: DataLoader) -> None:
    """Draw each image's augmentation from its own seed instead of the running RNG (see above)."""
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "seeded"):
        sampler.seeded = True


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


__all__ = ["epoch_seed", "sample_seed", "EpochRandomSampler", "EpochWeightedSampler", "set_epoch", "seed_per_image",
           "iterate_from"]

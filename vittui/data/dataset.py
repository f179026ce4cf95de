"""The dataset view over a reader, and the collate that lets unreadable images be skipped instead of fatal.

Items and skipping
    A source yields `(PIL.Image in RGB, int label)` before transforms. Any image that cannot be read
    (truncated or zero-byte file, a non-image with an image extension, a decode error, an image over
    `MAX_PIXELS`) is *skipped*: the dataset returns `None` for it. The loaders use `SkipCollate`, which
    drops those items and yields `(images, labels, skipped)` where `skipped` lists the identifiers (file
    paths, or `source[index]` for in-memory data) of the items dropped from that batch. Because the
    identifiers travel with the batch, counting stays right with `num_workers > 0`. A batch whose
    items were all skipped has 0 rows; skip such a batch in the loop.
"""

from __future__ import annotations

import logging
import random
from contextlib import contextmanager
from typing import Any, Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, get_worker_info

from vittui.data.readers import UnreadableImage

log = logging.getLogger("vittui.data")


class ImageDataset(Dataset):
    """A view of some rows of a reader: yields `(tensor C×H×W, int label)`, or `None` if unreadable.

    `image(i)` gives the untransformed RGB image (or None) for displays such as attention overlays;
    `ident(i)` names the item (a file path for files). `skipped` collects the identifiers of unreadable
    items met *in this process* (worker processes keep their own; count through the loader instead).
    """

    def __init__(self, reader: Any, indices: Sequence[int], labels: Sequence[int], classes: list[str],
                 transform: Callable | None = None,
                 loader_transform: tuple[Callable, Callable] | None = None):
        self.reader = reader
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = [int(x) for x in labels]  # one per item of this view
        if len(self.labels) != len(self.indices):
            raise ValueError("labels must match indices")
        self.classes = list(classes)
        self.transform = transform
        # (per image, per batch) halves of `transform` for the loaders (transforms.loader_transform)
        self.loader_transform = loader_transform
        self.skipped: set[str] = set()

    @property
    def targets(self) -> list[int]:
        return self.labels

    def __len__(self) -> int:
        return len(self.indices)

    def ident(self, i: int) -> str:
        return self.reader.ident(int(self.indices[i]))

    def image(self, i: int) -> Image.Image | None:
        try:
            return self.reader.image(int(self.indices[i]))
        except UnreadableImage as e:
            ident = self.ident(i)
            if ident not in self.skipped:
                self.skipped.add(ident)
                log.warning("skipping unreadable image %s (%s)", ident, e)
            return None

    def __getitem__(self, i: int):
        img = self.image(i)
        if img is None:
            return None
        x = self.transform(img) if self.transform is not None else img
        return x, self.labels[i]

    def loader_item(self, i: int):
        """What a loader's worker makes of item i: only the per-image half of the transform when the
        collate finishes the batch (`SkipCollate(finish=...)`), else `self[i]`."""
        if self.loader_transform is None:
            return self[i]
        img = self.image(i)
        if img is None:
            return None
        return self.loader_transform[0](img), self.labels[i]

    def class_counts(self) -> list[int]:
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.classes))
        return [int(c) for c in counts[: len(self.classes)]]

    def subset(self, positions: Sequence[int]) -> "ImageDataset":
        positions = list(positions)
        return ImageDataset(self.reader, self.indices[positions], [self.labels[p] for p in positions],
                            self.classes, self.transform, self.loader_transform)


class TaggedDataset(Dataset):
    """What the loader iterates: `(identifier or None, item)` so the collate can name skipped items."""

    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        if isinstance(i, tuple):  # (index, seed) from a seeded sampler (vittui.data.samplers)
            i, seed = i
            with rng_from(seed):
                item = self.dataset.loader_item(i)
            return (self.dataset.ident(i) if item is None else None), item, seed
        item = self.dataset.loader_item(i)
        return (self.dataset.ident(i) if item is None else None), item

    def __getattr__(self, name: str):
        if name == "dataset":  # during unpickling, before __init__ state exists
            raise AttributeError(name)
        return getattr(self.dataset, name)


@contextmanager
def rng_from(seed: int):
    """The global CPU RNGs (torch, numpy, `random`: timm's crops use the last) seeded with `seed` inside
    the block. In a loader worker the seeding stays (its RNG is nobody else's); in the main process the
    previous states come back afterwards, so the training RNG a checkpoint saves is never touched."""
    saved = None if get_worker_info() is not None else (random.getstate(), np.random.get_state(),
                                                         torch.get_rng_state())
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        if saved is not None:
            random.setstate(saved[0])
            np.random.set_state(saved[1])
            torch.set_rng_state(saved[2])


class SkipCollate:
    """Stack the readable items; report the identifiers of the dropped ones: `(images, labels, skipped)`.
    With `finish`, the items are per-image halves of the transform and `finish` makes them one batch."""

    def __init__(self, img_size: int, channels: int = 3, finish: Callable | None = None):
        self.img_size = int(img_size)
        self.channels = channels
        self.finish = finish

    def __call__(self, batch: list[tuple]):
        # (identifier or None, item), or (identifier or None, item, seed) from a seeded sampler
        skipped = [b[0] for b in batch if b[1] is None]
        good = [b[1] for b in batch if b[1] is not None]
        seeds = [b[2] for b in batch if len(b) > 2]
        if good:
            xs = [x for x, _ in good]
            if self.finish is None:
                images = torch.stack(xs)
            elif seeds:  # the per-batch half (random erasing) draws from the batch's own seed too
                with rng_from((seeds[0] ^ 0x5DEECE66D) & (2**63 - 1)):
                    images = self.finish(xs)
            else:
                images = self.finish(xs)
            labels = torch.tensor([int(y) for _, y in good], dtype=torch.long)
        else:
            images = torch.empty((0, self.channels, self.img_size, self.img_size))
            labels = torch.empty((0,), dtype=torch.long)
        return images, labels, skipped


__all__ = ["ImageDataset", "SkipCollate", "rng_from"]

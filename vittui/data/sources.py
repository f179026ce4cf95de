"""Where images come from: digits, ImageFolder trees, MedMNIST `.npz` files, Hugging Face datasets.

`build_data(recipe)` turns the `[data]` section into a `DataBundle`: a train and a val dataset, their
loaders, the class names, the train class counts and (for training) a timm Mixup.

The pieces live beside this module: `readers` decodes images (unreadable ones are skipped, see
`dataset`), `samplers` fixes each epoch's order for resume, `splits` cuts a val set off the train set;
`imagefolder` and `hf_datasets` read those sources, `medmnist` names the MedMNIST classes.
The loader's own generator (which seeds worker processes) is seeded from `run.seed`; augmentation
randomness in the main process follows torch's global RNG, which the training loop seeds and checkpoints.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from vittui.data.dataset import ImageDataset, SkipCollate, TaggedDataset
from vittui.data.errors import DataError
from vittui.data.hf_datasets import hf_split
from vittui.data.imagefolder import imagefolder_split
from vittui.data.medmnist import MEDMNIST_CLASSES
from vittui.data.readers import ArrayReader
from vittui.data.samplers import EpochRandomSampler, EpochWeightedSampler
from vittui.data.splits import SourceSplit, split_indices
from vittui.recipe import Recipe

log = logging.getLogger("vittui.data")


# --------------------------------------------------------------------------------------------------
# Sources → (train view, val view, test view | None, classes, warnings)


def _digits(recipe: Recipe) -> SourceSplit:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images  # (1797, 8, 8) float 0..16
    labels = d.target.astype(np.int64)
    reader = ArrayReader(images, "digits", resize_to=recipe.model.img_size, scale=255.0 / 16.0)
    tr, va = split_indices(labels, recipe.data.val_fraction, recipe.run.seed)
    return SourceSplit(reader, tr, labels[tr], reader, va, labels[va], [str(i) for i in range(10)])


def _medmnist_labels(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2 and arr.shape[1] > 1:
        raise DataError(f"{path}: {key} has shape {arr.shape}: multi-label MedMNIST sets are not supported")
    return arr.reshape(-1).astype(np.int64)


def _medmnist(recipe: Recipe) -> SourceSplit:
    path = Path(recipe.data.path).expanduser()
    if not path.exists():
        raise DataError(f"data.path {path} does not exist (download e.g. pneumoniamnist.npz from the MedMNIST "
                        "release, https://zenodo.org/records/10519652, and point data.path at the file)")
    if path.is_dir():
        raise DataError(f"data.path {path} is a folder; medmnist needs the .npz file (e.g. pneumoniamnist.npz)")
    try:
        npz = np.load(path, allow_pickle=False)
        keys = set(npz.files)
    except Exception as e:
        raise DataError(f"cannot read {path} as a MedMNIST .npz file: {e}") from None
    need = ["train_images", "train_labels", "val_images", "val_labels"]
    missing = [k for k in need if k not in keys]
    if missing:
        raise DataError(f"{path} lacks {', '.join(missing)} (has: {', '.join(sorted(keys)) or 'nothing'})")

    def images(key: str) -> np.ndarray:
        arr = npz[key]
        if arr.ndim not in (3, 4) or (arr.ndim == 4 and arr.shape[-1] not in (1, 3)):
            raise DataError(f"{path}: {key} has shape {arr.shape}; expected (N, H, W) or (N, H, W, 3)")
        return arr

    tr_img, va_img = images("train_images"), images("val_images")
    tr_lab = _medmnist_labels(npz["train_labels"], "train_labels", path)
    va_lab = _medmnist_labels(npz["val_labels"], "val_labels", path)
    for img, lab, name in ((tr_img, tr_lab, "train"), (va_img, va_lab, "val")):
        if len(img) != len(lab):
            raise DataError(f"{path}: {name}_images has {len(img)} rows but {name}_labels has {len(lab)}")
        if len(img) == 0:
            raise DataError(f"{path}: {name}_images is empty")
    test = None
    te_lab = None
    if "test_images" in keys and "test_labels" in keys:
        te_img = images("test_images")
        te_lab = _medmnist_labels(npz["test_labels"], "test_labels", path)
        test = (ArrayReader(te_img, f"{path.name}:test"), np.arange(len(te_img)), te_lab)
    n_classes = int(max(tr_lab.max(), va_lab.max(), te_lab.max() if te_lab is not None and len(te_lab) else 0)) + 1
    stem = path.name.lower()
    classes = [str(i) for i in range(n_classes)]
    for key, names in MEDMNIST_CLASSES.items():
        if stem.startswith(key) and len(names) >= n_classes:
            classes = list(names)
    if tr_lab.min() < 0:
        raise DataError(f"{path}: negative labels in train_labels")
    rt = ArrayReader(tr_img, f"{path.name}:train")
    rv = ArrayReader(va_img, f"{path.name}:val")
    return SourceSplit(rt, np.arange(len(tr_lab)), tr_lab, rv, np.arange(len(va_lab)), va_lab, classes, test)


SOURCES: dict[str, Callable[[Recipe], SourceSplit]] = {
    "digits": _digits,
    "imagefolder": imagefolder_split,
    "medmnist": _medmnist,
    "hf": hf_split,
}


# --------------------------------------------------------------------------------------------------
# The bundle


@dataclass
class DataBundle:
    """Everything the training loop and the evaluators need about the data of one recipe.

    Loaders yield `(images, labels, skipped)`; see `vittui.data.dataset`. `mixup` is None when the
    recipe turns mixup and cutmix off, or when built `for_eval`. `class_counts` are train counts.
    """

    train_set: ImageDataset
    val_set: ImageDataset
    classes: list[str]
    train_loader: DataLoader
    val_loader: DataLoader
    mixup: Any
    class_counts: list[int]
    train_size: int
    val_size: int
    steps_per_epoch: int
    test_set: ImageDataset | None = None
    warnings: list[str] = field(default_factory=list)
    ignored_files: list[str] = field(default_factory=list)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def _worker_init(worker_id: int) -> None:
    # torch seeds `random` and torch per worker; numpy-based augmentation needs its own seed
    np.random.seed(torch.initial_seed() % 2**32)


def make_loader(dataset: ImageDataset, recipe: Recipe, *, train: bool, sampler: Any = None) -> DataLoader:
    """A loader over `dataset` with the skip-aware collate; `train` enables shuffling and drop_last."""
    d = recipe.data
    bs = int(d.batch_size)
    workers = int(d.num_workers)
    if train and sampler is None:
        sampler = EpochRandomSampler(dataset, seed=recipe.run.seed)
    kwargs: dict[str, Any] = {}
    if workers > 0:
        kwargs.update(persistent_workers=True, worker_init_fn=_worker_init, prefetch_factor=2)
        if hasattr(sampler, "seeded"):  # crops drawn in workers: seed them per image, so resume is exact
            sampler.seeded = True
    return DataLoader(
        TaggedDataset(dataset),
        batch_size=bs,
        sampler=sampler,
        shuffle=False if sampler is None else None,
        num_workers=workers,
        collate_fn=SkipCollate(recipe.model.img_size,
                               finish=dataset.loader_transform[1] if dataset.loader_transform else None),
        pin_memory=torch.cuda.is_available(),
        drop_last=bool(train and len(dataset) > bs),
        generator=torch.Generator().manual_seed(int(recipe.run.seed)),
        **kwargs,
    )


def build_data(recipe: Recipe, *, for_eval: bool = False) -> DataBundle:
    """Datasets, loaders, classes and mixup for `recipe`; raises `DataError` with a fixable message.

    `for_eval=True` builds both sets with evaluation transforms, an unshuffled train loader without
    drop_last or class balancing, and no mixup (for evaluation, probes and reports).
    """
    from vittui.data.transforms import build_mixup, build_transform, loader_transform

    d = recipe.data
    if d.source not in SOURCES:
        raise DataError(f"unknown data.source {d.source!r} (known: {', '.join(SOURCES)})")
    if d.source != "digits" and not d.path:
        raise DataError(f"data.path is required when data.source = {d.source!r}")
    split = SOURCES[d.source](recipe)
    classes = split.classes
    for w in split.warnings:
        log.warning("%s", w)

    train_idx, train_labels = split.train_idx, split.train_labels
    if d.limit > 0:
        train_idx, train_labels = train_idx[: d.limit], train_labels[: d.limit]
    if len(train_idx) == 0:
        raise DataError(f"no training images found in {d.path or d.source}")
    if len(split.val_idx) == 0:
        raise DataError(f"no validation images found in {d.path or d.source}")
    if int(np.max(train_labels)) >= len(classes) or int(np.min(train_labels)) < 0:
        raise DataError(f"labels outside 0..{len(classes) - 1} in {d.path or d.source}")

    train_tf = build_transform(recipe, train=not for_eval)
    eval_tf = build_transform(recipe, train=False)
    train_lt = loader_transform(recipe, train=not for_eval)
    eval_lt = loader_transform(recipe, train=False)
    train_set = ImageDataset(split.reader_train, train_idx, train_labels, classes, train_tf, train_lt)
    val_set = ImageDataset(split.reader_val, split.val_idx, split.val_labels, classes, eval_tf, eval_lt)
    test_set = None
    if split.test is not None:
        reader, idx, labels = split.test
        test_set = ImageDataset(reader, idx, labels, classes, eval_tf, eval_lt)
    counts = train_set.class_counts()

    if for_eval:
        train_loader = make_loader(train_set, recipe, train=False)
    else:
        sampler = None
        if d.class_balance == "weighted_sampler":
            per_class = [1.0 / c if c > 0 else 0.0 for c in counts]
            weights = [per_class[y] for y in train_set.labels]
            sampler = EpochWeightedSampler(weights, num_samples=len(train_set), seed=recipe.run.seed)
        train_loader = make_loader(train_set, recipe, train=True, sampler=sampler)
    val_loader = make_loader(val_set, recipe, train=False)
    mixup = None if for_eval else build_mixup(recipe, len(classes))
    return DataBundle(
        train_set=train_set,
        val_set=val_set,
        classes=classes,
        train_loader=train_loader,
        val_loader=val_loader,
        mixup=mixup,
        class_counts=counts,
        train_size=len(train_set),
        val_size=len(val_set),
        steps_per_epoch=len(train_loader),
        test_set=test_set,
        warnings=list(split.warnings),
        ignored_files=list(split.ignored),
    )


__all__ = ["DataBundle", "build_data", "make_loader", "SOURCES"]

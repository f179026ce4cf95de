"""Where images come from: digits, ImageFolder trees, MedMNIST `.npz` files, Hugging Face datasets.

`build_data(recipe)` turns the `[data]` section into a `DataBundle`: a train and a val dataset, their
loaders, the class names, the train class counts and (for training) a timm Mixup.

The pieces live beside this module: `readers` decodes images (unreadable ones are skipped, see
`dataset`), `samplers` fixes each epoch's order for resume, `splits` cuts a val set off the train set.
The loader's own generator (which seeds worker processes) is seeded from `run.seed`; augmentation
randomness in the main process follows torch's global RNG, which the training loop seeds and checkpoints.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader

from vittui.data.dataset import ImageDataset, SkipCollate, _Tagged
from vittui.data.errors import DataError
from vittui.data.readers import IMAGE_EXTENSIONS, ArrayReader, FileReader, HFReader
from vittui.data.samplers import EpochRandomSampler, EpochWeightedSampler
from vittui.data.splits import _seeded_order, split_indices
from vittui.recipe import Recipe

log = logging.getLogger("vittui.data")

MEDMNIST_CLASSES: dict[str, list[str]] = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "bloodmnist": [
        "basophil", "eosinophil", "erythroblast", "immature granulocytes",
        "lymphocyte", "monocyte", "neutrophil", "platelet",
    ],
}


# --------------------------------------------------------------------------------------------------
# Sources → (train view, val view, test view | None, classes, warnings)


@dataclass
class _Split:
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


def _digits(recipe: Recipe) -> _Split:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = d.images  # (1797, 8, 8) float 0..16
    labels = d.target.astype(np.int64)
    reader = ArrayReader(images, "digits", resize_to=recipe.model.img_size, scale=255.0 / 16.0)
    tr, va = split_indices(labels, recipe.data.val_fraction, recipe.run.seed)
    return _Split(reader, tr, labels[tr], reader, va, labels[va], [str(i) for i in range(10)])


def _scan_class_folders(root: Path) -> tuple[list[str], dict[str, list[str]], list[str]]:
    """Class folders under `root` → (classes, files per class, ignored non-image files)."""
    if not root.is_dir():
        raise DataError(f"data.path {root} is not a folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        stray = [p.name for p in root.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
        hint = (f" (found {len(stray)} images directly in it; move them into one folder per class)"
                if stray else "")
        raise DataError(f"no class folders in {root}: expected {root}/<class name>/<images>{hint}")
    files: dict[str, list[str]] = {}
    ignored: list[str] = []
    for name in classes:
        found: list[str] = []
        seen: set[tuple[int, int]] = set()  # (device, inode) of folders walked: a symlink loop ends here
        for dirpath, dirnames, filenames in os.walk(root / name, followlinks=True):
            st = os.stat(dirpath)
            if (st.st_dev, st.st_ino) in seen:
                dirnames[:] = []
                continue
            seen.add((st.st_dev, st.st_ino))
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                full = os.path.join(dirpath, fn)
                if fn.startswith("."):
                    continue
                if os.path.splitext(fn)[1].lower() in IMAGE_EXTENSIONS:
                    found.append(full)
                else:
                    ignored.append(full)
        if not found:
            raise DataError(
                f"class folder {root / name} has no images "
                f"(extensions: {' '.join(IMAGE_EXTENSIONS)}); remove it or add images"
            )
        files[name] = found
    return classes, files, ignored


def _flatten(classes: list[str], files: dict[str, list[str]]) -> tuple[list[str], np.ndarray]:
    paths, labels = [], []
    for k, name in enumerate(classes):
        paths += files[name]
        labels += [k] * len(files[name])
    return paths, np.asarray(labels, dtype=np.int64)


def _check_same_classes(a: list[str], b: list[str], a_dir: Path, b_dir: Path) -> None:
    if a != b:
        only_a = sorted(set(a) - set(b))
        only_b = sorted(set(b) - set(a))
        parts = []
        if only_a:
            parts.append(f"only in {a_dir}: {', '.join(only_a)}")
        if only_b:
            parts.append(f"only in {b_dir}: {', '.join(only_b)}")
        raise DataError("train and val class folders differ: " + "; ".join(parts))


def _ignored_warning(ignored: list[str]) -> list[str]:
    if not ignored:
        return []
    shown = ", ".join(ignored[:3]) + (" ..." if len(ignored) > 3 else "")
    return [f"ignored {len(ignored)} file(s) that are not images: {shown}"]


def _imagefolder(recipe: Recipe) -> _Split:
    d = recipe.data
    root = Path(d.path).expanduser()
    if not root.exists():
        raise DataError(f"data.path {root} does not exist")
    train_dir, val_dir = root / d.train_split, root / d.val_split
    if train_dir.is_dir() and val_dir.is_dir():
        classes, train_files, ign_tr = _scan_class_folders(train_dir)
        val_classes, val_files, ign_va = _scan_class_folders(val_dir)
        _check_same_classes(classes, val_classes, train_dir, val_dir)
        ignored = ign_tr + ign_va
        tr_paths, tr_labels = _flatten(classes, train_files)
        va_paths, va_labels = _flatten(classes, val_files)
        order = _seeded_order(len(tr_paths), recipe.run.seed)  # so that data.limit takes a mix of classes
        test = None
        test_dir = root / "test"
        if test_dir.is_dir() and d.val_split != "test":
            try:
                t_classes, t_files, ign_te = _scan_class_folders(test_dir)
                _check_same_classes(classes, t_classes, train_dir, test_dir)
                te_paths, te_labels = _flatten(classes, t_files)
                test = (FileReader(te_paths), np.arange(len(te_paths)), te_labels)
                ignored += ign_te
            except DataError as e:
                log.warning("ignoring %s: %s", test_dir, e)
        rt, rv = FileReader(tr_paths), FileReader(va_paths)
        return _Split(rt, order, tr_labels[order], rv, np.arange(len(va_paths)), va_labels, classes,
                      test, _ignored_warning(ignored), ignored)
    base = train_dir if train_dir.is_dir() else root
    classes, files, ignored = _scan_class_folders(base)
    paths, labels = _flatten(classes, files)
    tr, va = split_indices(labels, d.val_fraction, recipe.run.seed)
    reader = FileReader(paths)
    return _Split(reader, tr, labels[tr], reader, va, labels[va], classes, None,
                  _ignored_warning(ignored), ignored)


def _medmnist_labels(arr: np.ndarray, key: str, path: Path) -> np.ndarray:
    arr = np.asarray(arr)
    if arr.ndim == 2 and arr.shape[1] > 1:
        raise DataError(f"{path}: {key} has shape {arr.shape}: multi-label MedMNIST sets are not supported")
    return arr.reshape(-1).astype(np.int64)


def _medmnist(recipe: Recipe) -> _Split:
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
    return _Split(rt, np.arange(len(tr_lab)), tr_lab, rv, np.arange(len(va_lab)), va_lab, classes, test)


def _import_datasets() -> Any:
    try:
        import datasets
    except ImportError:
        raise DataError("data.source = 'hf' needs the datasets package: pip install 'vittui[hf]'") from None
    return datasets


def _hf_load(path: str) -> Any:
    datasets = _import_datasets()

    p = Path(path).expanduser()
    if p.is_dir() and any((p / f).exists() for f in ("dataset_dict.json", "state.json", "dataset_info.json")):
        try:
            return datasets.load_from_disk(str(p))
        except Exception as e:
            if not (p / "dataset_dict.json").exists() and not (p / "state.json").exists():
                pass  # dataset_info.json alone: a hub-style folder; try load_dataset below
            else:
                raise DataError(f"cannot load the dataset saved in {p}: {e}") from None
    try:
        return datasets.load_dataset(str(p) if p.exists() else path)
    except Exception as e:
        raise DataError(f"cannot load Hugging Face dataset {path!r}: {type(e).__name__}: {e}") from None


def _hf(recipe: Recipe) -> _Split:
    datasets = _import_datasets()

    d = recipe.data
    loaded = _hf_load(d.path)
    if isinstance(loaded, (datasets.DatasetDict, dict)):
        splits = dict(loaded)
    else:
        splits = {d.train_split: loaded}
    if d.train_split not in splits:
        raise DataError(f"dataset {d.path!r} has no split {d.train_split!r} (splits: {', '.join(splits)}); "
                        "set data.train_split")
    train = splits[d.train_split]
    for key in (d.image_key, d.label_key):
        if key not in train.column_names:
            field_name = "data.image_key" if key == d.image_key else "data.label_key"
            raise DataError(f"dataset {d.path!r} has no column {key!r} (columns: {', '.join(train.column_names)}); "
                            f"set {field_name}")
    feature = train.features[d.label_key]
    raw_labels = train[d.label_key]

    def prepare(ds: Any) -> Any:
        feat = ds.features.get(d.image_key)
        if isinstance(feat, datasets.Image) and feat.decode:
            ds = ds.cast_column(d.image_key, datasets.Image(decode=False))
        return ds

    if isinstance(feature, datasets.ClassLabel):
        classes = list(feature.names)
        to_index = lambda values: np.asarray(values, dtype=np.int64)  # noqa: E731
    else:
        uniq = sorted(set(raw_labels), key=lambda v: (str(type(v)), v))
        classes = [str(v) for v in uniq]
        lookup = {v: k for k, v in enumerate(uniq)}

        def to_index(values):
            try:
                return np.asarray([lookup[v] for v in values], dtype=np.int64)
            except KeyError as e:
                raise DataError(f"label {e.args[0]!r} in the validation split is not among the train labels") from None

    tr_labels_all = to_index(raw_labels)
    train = prepare(train)
    rt = HFReader(train, d.image_key, d.train_split)
    if d.val_split in splits and d.val_split != d.train_split:
        val = splits[d.val_split]
        if d.label_key not in val.column_names or d.image_key not in val.column_names:
            raise DataError(f"split {d.val_split!r} lacks column {d.image_key!r} or {d.label_key!r}")
        if isinstance(feature, datasets.ClassLabel):
            vfeat = val.features[d.label_key]
            if isinstance(vfeat, datasets.ClassLabel) and list(vfeat.names) != classes:
                _check_same_classes(classes, list(vfeat.names), Path(d.train_split), Path(d.val_split))
        va_labels = to_index(val[d.label_key])
        rv = HFReader(prepare(val), d.image_key, d.val_split)
        order = _seeded_order(len(train), recipe.run.seed)
        split = _Split(rt, order, tr_labels_all[order], rv, np.arange(len(val)), va_labels, classes)
    else:
        tr, va = split_indices(tr_labels_all, d.val_fraction, recipe.run.seed)
        split = _Split(rt, tr, tr_labels_all[tr], rt, va, tr_labels_all[va], classes)
    if "test" in splits and d.val_split != "test" and d.train_split != "test":
        test = splits["test"]
        if d.label_key in test.column_names and d.image_key in test.column_names:
            try:
                split.test = (HFReader(prepare(test), d.image_key, "test"), np.arange(len(test)),
                              to_index(test[d.label_key]))
            except DataError as e:
                log.warning("ignoring the test split: %s", e)
    return split


SOURCES: dict[str, Callable[[Recipe], _Split]] = {
    "digits": _digits,
    "imagefolder": _imagefolder,
    "medmnist": _medmnist,
    "hf": _hf,
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
        _Tagged(dataset),
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


__all__ = ["DataBundle", "build_data", "make_loader", "MEDMNIST_CLASSES"]

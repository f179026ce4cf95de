"""Where images come from: digits, ImageFolder trees, MedMNIST `.npz` files, Hugging Face datasets.

`build_data(recipe)` turns the `[data]` section into a `DataBundle`: a train and a val dataset, their
loaders, the class names, the train class counts and (for training) a timm Mixup.

Items and skipping
    A source yields `(PIL.Image in RGB, int label)` before transforms. Any image that cannot be read
    (truncated or zero-byte file, a non-image with an image extension, a decode error, an image over
    `MAX_PIXELS`) is *skipped*: the dataset returns `None` for it. The loaders use `SkipCollate`, which
    drops those items and yields `(images, labels, skipped)` where `skipped` lists the identifiers (file
    paths, or `source[index]` for in-memory data) of the items dropped from that batch. Because the
    identifiers travel with the batch, counting stays right with `num_workers > 0`. A batch whose
    items were all skipped has 0 rows; skip such a batch in the loop.

Image modes
    Everything becomes 8-bit RGB: 16-bit grayscale ('I;16', 'I') is scaled to 0..255 (65535 → 255),
    not clipped; CMYK, YCbCr, palette and 1-bit images go through Pillow's conversion; images with
    alpha (RGBA, LA, PA, palette with transparency) are composited onto a white background.

Reproducible order and resume
    The train loader samples with `EpochRandomSampler` (or `EpochWeightedSampler` for
    `data.class_balance = "weighted_sampler"`). Each epoch's order comes from a fresh
    `torch.Generator` seeded with `epoch_seed(run.seed, epoch)`, so epoch E's order is a pure function
    of (seed, E) and is the same whether or not the process restarted in between. Call
    `set_epoch(loader, E)` before iterating epoch E (if you don't, the sampler counts epochs itself
    from 0). To resume in the middle of an epoch, `iterate_from(loader, E, K)` returns an iterator over
    epoch E starting at batch K: the sampler draws the whole epoch's indices and drops the first
    K * batch_size of them, so the skipped images are never loaded. The loader's own generator (which
    seeds worker processes) is also seeded from `run.seed`; augmentation randomness in the main
    process follows torch's global RNG, which the training loop seeds and checkpoints.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset, RandomSampler, WeightedRandomSampler

from vittui.recipe import Recipe

log = logging.getLogger("vittui.data")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 89_478_485  # Pillow's default bomb threshold; larger images are skipped, not opened

MEDMNIST_CLASSES: dict[str, list[str]] = {
    "pneumoniamnist": ["normal", "pneumonia"],
    "bloodmnist": [
        "basophil", "eosinophil", "erythroblast", "immature granulocytes",
        "lymphocyte", "monocyte", "neutrophil", "platelet",
    ],
}


class DataError(RuntimeError):
    """A data problem phrased so that the user can fix it (which path, which classes, which file)."""


class UnreadableImage(Exception):
    """An image that cannot be decoded; the dataset turns it into a skipped item."""


# --------------------------------------------------------------------------------------------------
# Images


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode → 8-bit RGB, scaling high bit depths instead of clipping them."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode.startswith("I;16") or mode in ("I", "F"):
        arr = np.asarray(img)
        if mode.startswith("I;16"):
            arr = arr.astype(np.float64) * (255.0 / 65535.0)
        else:
            arr = arr.astype(np.float64)
            lo, hi = (float(arr.min()), float(arr.max())) if arr.size else (0.0, 0.0)
            if mode == "F" and lo >= 0 and hi <= 1.0:
                arr = arr * 255.0
            elif lo >= 0 and hi <= 255:
                pass  # already 8-bit range
            elif lo >= 0 and hi <= 65535:
                arr = arr * (255.0 / 65535.0)  # 16-bit data held in a 32-bit mode
            else:
                arr = (arr - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(arr)
        gray = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
        return Image.fromarray(gray, "L").convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "1":
        img = img.convert("L")
    return img.convert("RGB")


def open_image(source: str | os.PathLike | bytes) -> Image.Image:
    """Open a file path or encoded bytes as a fully loaded RGB image, or raise `UnreadableImage`."""
    try:
        fp = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(fp) as img:
                w, h = img.size
                if w * h > MAX_PIXELS:
                    raise UnreadableImage(f"image too large ({w}x{h} > {MAX_PIXELS} pixels)")
                img.load()
                if img.format in ("JPEG", "TIFF", "WEBP", "PNG") and img.getexif().get(0x0112, 1) != 1:
                    img = ImageOps.exif_transpose(img)
                return to_rgb(img).copy()
    except UnreadableImage:
        raise
    except Exception as e:  # Pillow raises OSError, ValueError, SyntaxError, struct.error, bombs ...
        raise UnreadableImage(f"{type(e).__name__}: {e}") from None


# --------------------------------------------------------------------------------------------------
# Readers: index → RGB image, plus an identifier for reports


class ArrayReader:
    """Images held in a numpy array: (N, H, W) grayscale or (N, H, W, 3) colour, any numeric dtype."""

    def __init__(self, images: np.ndarray, name: str, resize_to: int | None = None,
                 scale: float | None = None):
        self.images = images
        self.name = name
        self.resize_to = resize_to
        self.scale = scale  # multiply before casting to uint8 (digits: 255/16)

    def __len__(self) -> int:
        return len(self.images)

    def ident(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def image(self, i: int) -> Image.Image:
        arr = np.asarray(self.images[i])
        if self.scale is not None:
            arr = np.rint(arr.astype(np.float64) * self.scale)
        if arr.dtype != np.uint8:
            if arr.dtype == np.uint16:
                arr = np.rint(arr.astype(np.float64) * (255.0 / 65535.0))
            arr = np.clip(arr, 0, 255).astype(np.uint8)
        if arr.ndim == 3 and arr.shape[-1] == 1:
            arr = arr[..., 0]
        if arr.ndim == 2:
            img = Image.fromarray(arr, "L")
        elif arr.ndim == 3 and arr.shape[-1] == 3:
            img = Image.fromarray(arr, "RGB")
        else:
            raise UnreadableImage(f"unsupported array shape {arr.shape}")
        if self.resize_to and img.size != (self.resize_to, self.resize_to):
            img = img.resize((self.resize_to, self.resize_to), Image.Resampling.BILINEAR)
        return img.convert("RGB")


class FileReader:
    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def ident(self, i: int) -> str:
        return self.paths[i]

    def image(self, i: int) -> Image.Image:
        return open_image(self.paths[i])


class HFReader:
    """Rows of a `datasets.Dataset`; the image column is read undecoded and decoded here."""

    def __init__(self, ds: Any, image_key: str, name: str):
        self.ds = ds
        self.image_key = image_key
        self.name = name

    def __len__(self) -> int:
        return len(self.ds)

    def _value(self, i: int) -> Any:
        return self.ds[int(i)][self.image_key]

    def ident(self, i: int) -> str:
        try:
            value = self._value(i)
            if isinstance(value, dict) and value.get("path"):
                return f"{self.name}[{i}] {value['path']}"
        except Exception:
            pass
        return f"{self.name}[{i}]"

    def image(self, i: int) -> Image.Image:
        try:
            value = self._value(i)
        except Exception as e:
            raise UnreadableImage(f"{type(e).__name__}: {e}") from None
        if isinstance(value, Image.Image):
            try:
                value.load()
                return to_rgb(value)
            except Exception as e:
                raise UnreadableImage(f"{type(e).__name__}: {e}") from None
        if isinstance(value, dict):
            if value.get("bytes"):
                return open_image(value["bytes"])
            if value.get("path"):
                return open_image(value["path"])
            raise UnreadableImage("empty image cell")
        if isinstance(value, (bytes, bytearray)):
            return open_image(value)
        if isinstance(value, str):
            return open_image(value)
        if value is None:
            raise UnreadableImage("empty image cell")
        try:
            return ArrayReader(np.asarray(value)[None], self.name).image(0)
        except UnreadableImage:
            raise
        except Exception as e:
            raise UnreadableImage(f"{type(e).__name__}: {e}") from None


# --------------------------------------------------------------------------------------------------
# Datasets


class ImageDataset(Dataset):
    """A view of some rows of a reader: yields `(tensor C×H×W, int label)`, or `None` if unreadable.

    `image(i)` gives the untransformed RGB image (or None) for displays such as attention overlays;
    `ident(i)` names the item (a file path for files). `skipped` collects the identifiers of unreadable
    items met *in this process* (worker processes keep their own; count through the loader instead).
    """

    def __init__(self, reader: Any, indices: Sequence[int], labels: Sequence[int], classes: list[str],
                 transform: Callable | None = None):
        self.reader = reader
        self.indices = np.asarray(indices, dtype=np.int64)
        self.labels = [int(x) for x in labels]  # one per item of this view
        if len(self.labels) != len(self.indices):
            raise ValueError("labels must match indices")
        self.classes = list(classes)
        self.transform = transform
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

    def class_counts(self) -> list[int]:
        counts = np.bincount(np.asarray(self.labels, dtype=np.int64), minlength=len(self.classes))
        return [int(c) for c in counts[: len(self.classes)]]

    def subset(self, positions: Sequence[int]) -> "ImageDataset":
        positions = list(positions)
        return ImageDataset(self.reader, self.indices[positions], [self.labels[p] for p in positions],
                            self.classes, self.transform)


class _Tagged(Dataset):
    """What the loader iterates: `(identifier or None, item)` so the collate can name skipped items."""

    def __init__(self, dataset: ImageDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        return (self.dataset.ident(i) if item is None else None), item

    def __getattr__(self, name: str):
        if name == "dataset":  # during unpickling, before __init__ state exists
            raise AttributeError(name)
        return getattr(self.dataset, name)


class SkipCollate:
    """Stack the readable items; report the identifiers of the dropped ones: `(images, labels, skipped)`."""

    def __init__(self, img_size: int, channels: int = 3):
        self.img_size = int(img_size)
        self.channels = channels

    def __call__(self, batch: list[tuple[str | None, Any]]):
        skipped = [ident for ident, item in batch if item is None]
        good = [item for _, item in batch if item is not None]
        if good:
            images = torch.stack([x for x, _ in good])
            labels = torch.tensor([int(y) for _, y in good], dtype=torch.long)
        else:
            images = torch.empty((0, self.channels, self.img_size, self.img_size))
            labels = torch.empty((0,), dtype=torch.long)
        return images, labels, skipped


# --------------------------------------------------------------------------------------------------
# Samplers


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


def _worker_init(worker_id: int) -> None:
    # torch seeds `random` and torch per worker; numpy-based augmentation needs its own seed
    np.random.seed(torch.initial_seed() % 2**32)


# --------------------------------------------------------------------------------------------------
# Splits


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


def _seeded_order(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


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

    Loaders yield `(images, labels, skipped)`; see the module docstring. `mixup` is None when the
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
    return DataLoader(
        _Tagged(dataset),
        batch_size=bs,
        sampler=sampler,
        shuffle=False if sampler is None else None,
        num_workers=workers,
        collate_fn=SkipCollate(recipe.model.img_size),
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
    from vittui.data.transforms import build_mixup, build_transform

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
    train_set = ImageDataset(split.reader_train, train_idx, train_labels, classes, train_tf)
    val_set = ImageDataset(split.reader_val, split.val_idx, split.val_labels, classes, eval_tf)
    test_set = None
    if split.test is not None:
        reader, idx, labels = split.test
        test_set = ImageDataset(reader, idx, labels, classes, eval_tf)
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


__all__ = [
    "DataError", "DataBundle", "ImageDataset", "SkipCollate", "EpochRandomSampler", "EpochWeightedSampler",
    "build_data", "make_loader", "set_epoch", "iterate_from", "epoch_seed", "split_indices", "open_image",
    "to_rgb", "IMAGE_EXTENSIONS", "MAX_PIXELS", "MEDMNIST_CLASSES", "UnreadableImage",
]

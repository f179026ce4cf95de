"""ImageFolder trees: `root/<class>/<images>`, or `root/train|val[/test]/<class>/<images>`, read into a
`SourceSplit` (a val set is split off when there is no val folder)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from vittui.data.errors import DataError
from vittui.data.readers import IMAGE_EXTENSIONS, FileReader
from vittui.data.splits import SourceSplit, seeded_order, split_indices
from vittui.recipe import Recipe

log = logging.getLogger("vittui.data")


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


def check_same_classes(a: list[str], b: list[str], a_dir: Path, b_dir: Path) -> None:
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


def imagefolder_split(recipe: Recipe) -> SourceSplit:
    d = recipe.data
    root = Path(d.path).expanduser()
    if not root.exists():
        raise DataError(f"data.path {root} does not exist")
    train_dir, val_dir = root / d.train_split, root / d.val_split
    if train_dir.is_dir() and val_dir.is_dir():
        classes, train_files, ign_tr = _scan_class_folders(train_dir)
        _require_two_classes(classes, root)
        val_classes, val_files, ign_va = _scan_class_folders(val_dir)
        check_same_classes(classes, val_classes, train_dir, val_dir)
        ignored = ign_tr + ign_va
        tr_paths, tr_labels = _flatten(classes, train_files)
        va_paths, va_labels = _flatten(classes, val_files)
        order = seeded_order(len(tr_paths), recipe.run.seed)  # so that data.limit takes a mix of classes
        test = None
        test_dir = root / "test"
        if test_dir.is_dir() and d.val_split != "test":
            try:
                t_classes, t_files, ign_te = _scan_class_folders(test_dir)
                check_same_classes(classes, t_classes, train_dir, test_dir)
                te_paths, te_labels = _flatten(classes, t_files)
                test = (FileReader(te_paths), np.arange(len(te_paths)), te_labels)
                ignored += ign_te
            except DataError as e:
                log.warning("ignoring %s: %s", test_dir, e)
        rt, rv = FileReader(tr_paths), FileReader(va_paths)
        return SourceSplit(rt, order, tr_labels[order], rv, np.arange(len(va_paths)), va_labels, classes,
                      test, _ignored_warning(ignored), ignored)
    base = train_dir if train_dir.is_dir() else root
    classes, files, ignored = _scan_class_folders(base)
    _require_two_classes(classes, root)
    paths, labels = _flatten(classes, files)
    tr, va = split_indices(labels, d.val_fraction, recipe.run.seed)
    reader = FileReader(paths)
    return SourceSplit(reader, tr, labels[tr], reader, va, labels[va], classes, None,
                  _ignored_warning(ignored), ignored)


def _require_two_classes(classes, root: Path) -> None:
    """One class folder trains a classifier that cannot be wrong: refused here, for the worker and pre-flight."""
    if len(classes) < 2:
        raise DataError(f"data.path {root} has {len(classes)} class folder ({', '.join(classes)}); "
                        "a classifier needs at least 2")


__all__ = ["imagefolder_split", "check_same_classes"]

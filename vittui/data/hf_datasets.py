"""Hugging Face datasets (`data.source = "hf"`): a saved dataset folder or a Hub dataset, read into a
`SourceSplit` with the label column mapped to class indices."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from vittui.data.errors import DataError
from vittui.data.imagefolder import check_same_classes
from vittui.data.readers import HFReader
from vittui.data.splits import SourceSplit, seeded_order, split_indices
from vittui.recipe import Recipe

log = logging.getLogger("vittui.data")


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


def hf_split(recipe: Recipe) -> SourceSplit:
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
                check_same_classes(classes, list(vfeat.names), Path(d.train_split), Path(d.val_split))
        va_labels = to_index(val[d.label_key])
        rv = HFReader(prepare(val), d.image_key, d.val_split)
        order = seeded_order(len(train), recipe.run.seed)
        split = SourceSplit(rt, order, tr_labels_all[order], rv, np.arange(len(val)), va_labels, classes)
    else:
        tr, va = split_indices(tr_labels_all, d.val_fraction, recipe.run.seed)
        split = SourceSplit(rt, tr, tr_labels_all[tr], rt, va, tr_labels_all[va], classes)
    if "test" in splits and d.val_split != "test" and d.train_split != "test":
        test = splits["test"]
        if d.label_key in test.column_names and d.image_key in test.column_names:
            try:
                split.test = (HFReader(prepare(test), d.image_key, "test"), np.arange(len(test)),
                              to_index(test[d.label_key]))
            except DataError as e:
                log.warning("ignoring the test split: %s", e)
    return split


__all__ = ["hf_split"]

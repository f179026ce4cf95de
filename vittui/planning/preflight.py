"""Pre-flight, the torch-free half: what can be checked about a recipe before a run directory exists, in
milliseconds and without torch, so the setup screen can call it as the user edits.

Each check returns problems, one line each, phrased like a `RecipeError` (the field, the value, the way
out). The checks that need timm or torch (model names, augment policy strings, CUDA) are in
`vittui.planning.preflight_libs`, whose `preflight()` runs both halves; `vittui train` calls that.
LoRA targets that match nothing are found when the model is built (the worker says so in one line).
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from vittui.data.errors import DataError
from vittui.data.imagefolder import imagefolder_split
from vittui.recipe import Recipe

SAMPLE_IMAGES = 8  # images opened per imagefolder check: a few from each of the first classes
MEDMNIST_KEYS = ("train_images", "train_labels", "val_images", "val_labels")


def basic_problems(recipe: Recipe, output_root: str | Path) -> list[str]:
    """The torch-free checks: data, weights file, adaptation, output folder."""
    return (data_problems(recipe) + weights_problems(recipe) + adapt_problems(recipe)
            + output_problems(output_root))


# ---- data ---------------------------------------------------------------------------------------------


def data_problems(recipe: Recipe) -> list[str]:
    d = recipe.data
    if d.source == "imagefolder":
        return _imagefolder_problems(recipe)
    if d.source == "medmnist":
        return _medmnist_problems(Path(d.path).expanduser())
    if d.source == "hf":
        return _hf_problems(d.path)
    return []  # digits ships with scikit-learn


def _imagefolder_problems(recipe: Recipe) -> list[str]:
    try:
        split = imagefolder_split(recipe)  # path, class folders, train/val classes alike (a folder scan)
    except DataError as e:
        return [str(e)]
    paths = _sample(split.reader_train, split.train_idx)
    bad = [p for p in paths if not _decodes(p)]
    if paths and len(bad) == len(paths):
        return [f"none of {len(paths)} sampled images in {recipe.data.path} decodes (e.g. {bad[0]})"]
    return []


def _sample(reader, idx) -> list[str]:
    paths = getattr(reader, "paths", None)
    if paths is None:
        return []
    return [paths[int(i)] for i in list(idx)[:SAMPLE_IMAGES]]


def _decodes(path: str) -> bool:
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
        return True
    except Exception:  # noqa: BLE001 - any decoder error is "does not decode"
        return False


def _hf_problems(path: str) -> list[str]:
    """The datasets package is there, and a path that names a folder exists (a Hub id is looked up in
    the cache by `preflight_libs.hf_dataset_problems`)."""
    import importlib.util

    if importlib.util.find_spec("datasets") is None:
        return ["data.source = 'hf' needs the datasets package: pip install 'vittui[hf]'"]
    if is_local_path(path) and not Path(path).expanduser().exists():
        return [f"data.path {path} does not exist (a saved dataset folder, or a Hub id such as 'user/name')"]
    return []


def is_local_path(path: str) -> bool:
    """A path, not a Hub id: absolute, `~`, `./`, `../`, or an existing file or folder."""
    return path.startswith(("/", "~", "./", "../", ".\\")) or Path(path).expanduser().exists()


def _medmnist_problems(path: Path) -> list[str]:
    if not path.exists():
        return [f"data.path {path} does not exist"]
    if path.is_dir():
        return [f"data.path {path} is a folder; medmnist needs the .npz file (e.g. pneumoniamnist.npz)"]
    import zipfile

    import numpy as np

    if not zipfile.is_zipfile(path):  # numpy would call it "pickled data": say what it is not
        return [f"cannot read data.path {path} as a MedMNIST .npz file: not a .npz (zip) archive"]
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = set(npz.files)
    except Exception as e:  # noqa: BLE001
        return [f"cannot read data.path {path} as a MedMNIST .npz file: {type(e).__name__}: {e}"]
    missing = [k for k in MEDMNIST_KEYS if k not in keys]
    if missing:
        return [f"data.path {path} lacks {', '.join(missing)} (has: {', '.join(sorted(keys)) or 'nothing'})"]
    return []


# ---- model weights, adaptation ------------------------------------------------------------------------


def weights_problems(recipe: Recipe) -> list[str]:
    w = recipe.model.weights
    if not w:
        return []
    path = Path(w).expanduser()
    if not path.exists():
        return [f"model.weights {w} does not exist"]
    if path.is_dir():
        if not (any(path.glob("*.safetensors")) or any(path.glob("*.bin")) or (path / "config.json").is_file()):
            return [f"model.weights {w} is a folder without *.safetensors, *.bin or config.json"]
        return []
    if not os.access(path, os.R_OK):
        return [f"model.weights {w} is not readable"]
    if path.suffix == ".safetensors":
        why = safetensors_header_problem(path)
        if why:
            return [f"model.weights {w} is not a safetensors file ({why})"]
    return []


def safetensors_header_problem(path: Path) -> str:
    """Why `path` is not a safetensors file ("" when its header reads): 8 bytes of length, then JSON."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return "shorter than a header"
            (n,) = struct.unpack("<Q", head)
            if n > min(path.stat().st_size - 8, 100_000_000):
                return "its header length runs past the end of the file"
            header = json.loads(f.read(n))
    except (OSError, ValueError, UnicodeDecodeError) as e:
        return f"unreadable header: {type(e).__name__}"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    return ""


def adapt_problems(recipe: Recipe) -> list[str]:
    a = recipe.adapt
    if a.lora and a.freeze == "linear_probe":
        return ["adapt.lora = true with adapt.freeze = 'linear_probe': a linear probe trains only the head; "
                "set adapt.freeze = 'none' for LoRA, or adapt.lora = false"]
    return []


# ---- output -------------------------------------------------------------------------------------------


def output_problems(output_root: str | Path) -> list[str]:
    root = Path(output_root).expanduser()
    if root.exists() and not root.is_dir():
        return [f"the runs folder {root} is a file, not a folder (set run.output_dir or --runs-dir to a folder)"]
    probe = root
    while not probe.exists():  # the nearest folder that exists must let us create the rest
        if probe.parent == probe:
            break
        probe = probe.parent
    if probe.exists() and not probe.is_dir():
        return [f"the runs folder {root} cannot be created: {probe} is a file"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"the runs folder {root} is not writable ({probe} is not writable)"]
    return []


__all__ = ["basic_problems", "data_problems", "is_local_path", "weights_problems", "adapt_problems", "output_problems",
           "safetensors_header_problem"]

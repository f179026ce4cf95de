"""Every source on tiny generated data (digits is real), errors, mode conversion, skipping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vittui.data import readers
from vittui.data.errors import DataError
from vittui.data.readers import open_image, to_rgb
from vittui.data.sources import build_data

# ------------------------------------------------------------------ digits


def test_digits_real_split_and_shapes(make_recipe):
    from sklearn.datasets import load_digits

    b = build_data(make_recipe())
    assert (b.train_size, b.val_size) == (1437, 360)
    assert b.classes == [str(i) for i in range(10)]
    assert sum(b.class_counts) == 1437 and min(b.class_counts) > 130  # stratified
    x, y = b.train_set[0]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and isinstance(y, int)
    xv, _ = b.val_set[0]
    assert xv.shape == (3, 32, 32)
    # the raw item: 8x8 values 0..16 → uint8 ×255/16 → bilinear 32 px → RGB
    img = b.val_set.image(0)
    assert img.mode == "RGB" and img.size == (32, 32)
    raw = load_digits().images[b.val_set.indices[0]]
    expect = Image.fromarray(np.rint(raw * 255 / 16).astype(np.uint8), "L").resize((32, 32), Image.BILINEAR)
    arr = np.asarray(img)
    assert np.array_equal(arr[..., 0], np.asarray(expect)) and np.array_equal(arr[..., 0], arr[..., 2])
    assert b.steps_per_epoch == len(b.train_loader) == 1437 // 4
    images, labels, skipped = next(iter(b.val_loader))
    assert images.shape == (4, 3, 32, 32) and labels.dtype == torch.long and skipped == []


def test_digits_split_depends_on_seed(make_recipe):
    a = build_data(make_recipe())
    b = build_data(make_recipe())
    c = build_data(make_recipe(**{"run.seed": 1}))
    assert list(a.val_set.indices) == list(b.val_set.indices)
    assert list(a.val_set.indices) != list(c.val_set.indices)
    assert c.val_size == 360
    assert not set(a.train_set.indices) & set(a.val_set.indices)


def test_limit_keeps_first_train_items(make_recipe, tree):
    full = build_data(make_recipe())
    b = build_data(make_recipe(**{"data.limit": 50}))
    assert b.train_size == 50 and b.val_size == 360
    assert list(b.train_set.indices) == list(full.train_set.indices[:50])
    assert sum(b.class_counts) == 50
    assert b.steps_per_epoch == 50 // 4
    # pre-split folders: the limited subset still mixes classes (train order is seeded)
    r = make_recipe(**{"data.source": "imagefolder", "data.path": str(tree), "data.limit": 6})
    lim = build_data(r)
    assert lim.train_size == 6


# ------------------------------------------------------------------ imagefolder


def test_imagefolder_split_by_seed(make_recipe, tree):
    r = make_recipe(**{"data.source": "imagefolder", "data.path": str(tree), "data.val_fraction": 0.2})
    b = build_data(r)
    assert b.classes == ["daisy", "rose", "tulip"]
    assert (b.train_size, b.val_size) == (24, 6)
    assert b.class_counts == [8, 8, 8]
    assert sorted(b.val_set.labels) == [0, 0, 1, 1, 2, 2]  # stratified
    again = build_data(r)
    assert [again.val_set.ident(i) for i in range(6)] == [b.val_set.ident(i) for i in range(6)]
    other = build_data(r.with_overrides({"run.seed": 5}))
    assert {other.val_set.ident(i) for i in range(6)} != {b.val_set.ident(i) for i in range(6)}
    x, y = b.train_set[0]
    assert x.shape == (3, 32, 32)
    # label matches the folder the file is in
    for i in range(b.train_size):
        assert Path(b.train_set.ident(i)).parent.name == b.classes[b.train_set.labels[i]]


def test_imagefolder_train_val_subfolders(make_recipe, split_tree):
    b = build_data(make_recipe(**{"data.source": "imagefolder", "data.path": str(split_tree)}))
    assert b.classes == ["cat", "dog"]
    assert (b.train_size, b.val_size) == (12, 5)
    assert all("/val/" in b.val_set.ident(i) for i in range(5))
    assert all("/train/" in b.train_set.ident(i) for i in range(12))
    assert b.val_set.labels == [0, 0, 1, 1, 1]


def test_imagefolder_mismatched_classes_named(make_recipe, tmp_path, write_tree):
    root = tmp_path / "ds"
    write_tree(root / "train", {"cat": 2, "dog": 2, "owl": 2})
    write_tree(root / "val", {"cat": 1, "dog": 1, "emu": 1})
    with pytest.raises(DataError) as e:
        build_data(make_recipe(**{"data.source": "imagefolder", "data.path": str(root)}))
    msg = str(e.value)
    assert "owl" in msg and "emu" in msg and "cat" not in msg


def test_imagefolder_empty_class_folder(make_recipe, tmp_path, write_tree):
    root = tmp_path / "ds"
    write_tree(root, {"a": 3, "b": 3})
    (root / "empty_one").mkdir()
    (root / "empty_one" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="empty_one"):
        build_data(make_recipe(**{"data.source": "imagefolder", "data.path": str(root)}))


def test_missing_path_and_no_class_folders(make_recipe, tmp_path, write_png):
    with pytest.raises(DataError, match="does not exist"):
        build_data(make_recipe(**{"data.source": "imagefolder", "data.path": str(tmp_path / "nope")}))
    with pytest.raises(DataError, match="does not exist"):
        build_data(make_recipe(**{"data.source": "medmnist", "data.path": str(tmp_path / "nope.npz")}))
    flat = tmp_path / "flat"
    write_png(flat / "a.png", (1, 2, 3))
    with pytest.raises(DataError, match="no class folders"):
        build_data(make_recipe(**{"data.source": "imagefolder", "data.path": str(flat)}))


def test_imagefolder_extensions_and_ignored_files(make_recipe, tmp_path, write_tree):
    root = tmp_path / "ds"
    write_tree(root, {"a": 4, "b": 4})
    Image.new("RGB", (9, 9), (5, 5, 5)).save(root / "a" / "UPPER.JPG")
    Image.new("RGB", (9, 9), (5, 5, 5)).save(root / "b" / "x.bmp")
    (root / "a" / "readme.txt").write_text("hello")
    (root / "b" / "labels.csv").write_text("1,2")
    b = build_data(make_recipe(**{"data.source": "imagefolder", "data.path": str(root), "data.val_fraction": 0.25}))
    assert b.train_size + b.val_size == 10
    assert len(b.ignored_files) == 2 and any("2 file" in w for w in b.warnings)


# ------------------------------------------------------------------ unreadable images


@pytest.fixture
def bad_tree(tmp_path, write_tree, truncated_png) -> tuple[Path, set[str]]:
    root = tmp_path / "bad"
    write_tree(root / "train", {"a": 6, "b": 6})
    write_tree(root / "val", {"a": 4, "b": 4}, start=50)
    bad = {
        truncated_png(root / "train" / "a" / "truncated.png"),
        root / "train" / "b" / "zero.png",
        root / "train" / "a" / "text.jpg",
    }
    (root / "train" / "b" / "zero.png").write_bytes(b"")
    (root / "train" / "a" / "text.jpg").write_text("not an image at all")
    return root, {str(p) for p in bad}


@pytest.mark.parametrize("workers", [0, 2])
def test_unreadable_images_skipped_and_counted_through_loader(make_recipe, bad_tree, workers):
    root, bad = bad_tree
    r = make_recipe(**{"data.source": "imagefolder", "data.path": str(root), "data.batch_size": 5,
                       "data.num_workers": workers})
    b = build_data(r)
    assert b.train_size == 15  # listed; 3 of them cannot be read
    assert b.train_set[[b.train_set.ident(i) for i in range(15)].index(min(bad))] is None
    seen, skipped = 0, []
    for images, labels, sk in b.train_loader:  # 15 items, batch 5, drop_last keeps all 3 batches
        assert len(images) == len(labels)
        seen += len(labels)
        skipped += sk
    assert set(skipped) == bad and len(skipped) == 3
    assert seen == 12
    assert b.steps_per_epoch == 3


def test_all_skipped_batch_is_empty(make_recipe, tmp_path, write_tree):
    root = tmp_path / "ds"
    write_tree(root / "train", {"a": 2, "b": 2})
    write_tree(root / "val", {"a": 1, "b": 1})
    for p in (root / "val").rglob("*.png"):
        p.write_bytes(b"\x89PNG garbage")
    b = build_data(make_recipe(**{"data.source": "imagefolder", "data.path": str(root)}))
    images, labels, skipped = next(iter(b.val_loader))
    assert images.shape == (0, 3, 32, 32) and labels.shape == (0,) and len(skipped) == 2


def test_huge_image_skipped_not_bomb(tmp_path, monkeypatch):
    p = tmp_path / "big.png"
    Image.new("RGB", (40, 40)).save(p)
    monkeypatch.setattr(readers, "MAX_PIXELS", 1000)
    with pytest.raises(readers.UnreadableImage, match="too large"):
        open_image(p)
    # Pillow's own bomb error (over 2x its limit) is also turned into a skip
    monkeypatch.setattr(readers, "MAX_PIXELS", 10**9)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(readers.UnreadableImage):
        open_image(p)


# ------------------------------------------------------------------ image modes


def test_cmyk_converts_to_rgb(tmp_path):
    cmyk = Image.new("CMYK", (4, 4), (255, 0, 0, 0))  # pure cyan
    cmyk.putpixel((0, 0), (0, 0, 0, 0))  # white
    cmyk.putpixel((1, 0), (0, 0, 0, 255))  # black
    cmyk.save(tmp_path / "c.tif")
    img = open_image(tmp_path / "c.tif")
    assert img.mode == "RGB"
    assert img.getpixel((2, 2)) == (0, 255, 255)
    assert img.getpixel((0, 0)) == (255, 255, 255)
    assert img.getpixel((1, 0)) == (0, 0, 0)
    cmyk.save(tmp_path / "c.jpg", quality=95)
    j = np.asarray(open_image(tmp_path / "c.jpg")).astype(int)
    assert j.shape == (4, 4, 3) and abs(j[3, 3] - np.array([0, 255, 255])).max() < 40


def test_16bit_png_scaled_not_clipped(tmp_path):
    arr = np.array([[0, 257, 32896], [65535, 1000, 50000]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    raw = Image.open(tmp_path / "g16.png")
    assert raw.mode.startswith("I")
    img = open_image(tmp_path / "g16.png")
    got = np.asarray(img)
    assert img.mode == "RGB"
    expect = np.rint(arr / 257).astype(np.uint8)
    assert np.array_equal(got[..., 0], expect) and np.array_equal(got[..., 1], expect)
    assert got[0, 2, 0] == 128 and got[1, 0, 0] == 255  # clipping would give 255 for both


def test_other_modes(tmp_path):
    i32 = Image.fromarray(np.array([[0, 65535]], dtype=np.int32), "I")
    assert np.asarray(to_rgb(i32))[0, :, 0].tolist() == [0, 255]
    rgba = Image.new("RGBA", (2, 1), (10, 20, 30, 255))
    rgba.putpixel((1, 0), (0, 0, 0, 0))  # transparent → white background
    assert np.asarray(to_rgb(rgba)).tolist() == [[[10, 20, 30], [255, 255, 255]]]
    la = Image.new("LA", (1, 1), (100, 255))
    assert to_rgb(la).getpixel((0, 0)) == (100, 100, 100)
    pal = Image.new("P", (2, 2))
    pal.putpalette([0, 0, 0, 250, 10, 10] + [0] * 762)
    pal.putpixel((0, 0), 1)
    pal.save(tmp_path / "p.gif")
    g = open_image(tmp_path / "p.gif")
    assert g.mode == "RGB" and g.getpixel((0, 0)) == (250, 10, 10)
    assert to_rgb(Image.new("1", (1, 1), 1)).getpixel((0, 0)) == (255, 255, 255)
    f = Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32), "F")
    assert np.asarray(to_rgb(f))[0, :, 0].tolist() == [0, 128, 255]


def test_mixed_modes_through_imagefolder(make_recipe, tmp_path, write_tree):
    root = tmp_path / "modes"
    write_tree(root, {"a": 2, "b": 2})
    Image.new("CMYK", (8, 8), (0, 255, 0, 0)).save(root / "a" / "cmyk.tif")
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(root / "b" / "deep.png")
    Image.new("LA", (8, 8), (50, 100)).save(root / "b" / "la.png")
    b = build_data(make_recipe(**{"data.source": "imagefolder", "data.path": str(root), "data.val_fraction": 0.4},))
    for ds in (b.train_set, b.val_set):
        for i in range(len(ds)):
            x, _ = ds[i]
            assert x.shape == (3, 32, 32)


# ------------------------------------------------------------------ medmnist


def _npz(path: Path, colour: bool, n=(20, 6, 5), classes=2, with_test=True):
    rng = np.random.default_rng(0)
    data = {}
    for split, count in zip(("train", "val", "test"), n):
        if split == "test" and not with_test:
            continue
        shape = (count, 28, 28, 3) if colour else (count, 28, 28)
        data[f"{split}_images"] = rng.integers(0, 255, shape, dtype=np.uint8)
        data[f"{split}_labels"] = (np.arange(count) % classes).reshape(-1, 1).astype(np.uint8)
    np.savez(path, **data)
    return path


def test_medmnist_grayscale_named(make_recipe, tmp_path):
    p = _npz(tmp_path / "pneumoniamnist.npz", colour=False)
    b = build_data(make_recipe(**{"data.source": "medmnist", "data.path": str(p)}))
    assert b.classes == ["normal", "pneumonia"]
    assert (b.train_size, b.val_size) == (20, 6) and b.class_counts == [10, 10]
    assert b.test_set is not None and len(b.test_set) == 5
    img = b.train_set.image(3)
    assert img.mode == "RGB" and img.size == (28, 28)
    a = np.asarray(img)
    assert np.array_equal(a[..., 0], a[..., 1])
    raw = np.load(p)["train_images"][3]
    assert np.array_equal(a[..., 0], raw)
    x, y = b.train_set[3]
    assert x.shape == (3, 32, 32) and y == 1


def test_medmnist_colour_and_unknown_names(make_recipe, tmp_path):
    p = _npz(tmp_path / "bloodmnist_64.npz", colour=True, classes=8, n=(16, 8, 8))
    b = build_data(make_recipe(**{"data.source": "medmnist", "data.path": str(p)}))
    assert len(b.classes) == 8 and b.classes[0] == "basophil" and b.classes[-1] == "platelet"
    assert np.array_equal(np.asarray(b.val_set.image(1)), np.load(p)["val_images"][1])
    q = _npz(tmp_path / "mystery.npz", colour=False, classes=3, with_test=False)
    c = build_data(make_recipe(**{"data.source": "medmnist", "data.path": str(q)}))
    assert c.classes == ["0", "1", "2"] and c.test_set is None


def test_medmnist_missing_keys(make_recipe, tmp_path):
    p = tmp_path / "bad.npz"
    np.savez(p, train_images=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(DataError, match="train_labels"):
        build_data(make_recipe(**{"data.source": "medmnist", "data.path": str(p)}))


# ------------------------------------------------------------------ Hugging Face datasets


def _png_bytes(colour, size=(10, 10)) -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()


def _hf_split(n: int, bad: int = -1):
    import datasets

    images = [{"bytes": _png_bytes((i * 20 % 255, 0, 0)), "path": None} for i in range(n)]
    if bad >= 0:
        images[bad] = {"bytes": b"\x89PNG\r\n\x1a\n broken", "path": None}
    feats = datasets.Features({"img": datasets.Image(), "y": datasets.ClassLabel(names=["ant", "bee", "cow"])})
    return datasets.Dataset.from_dict({"img": images, "y": [i % 3 for i in range(n)]}, features=feats)


def test_hf_saved_dataset_dict(make_recipe, tmp_path):
    import datasets

    path = tmp_path / "hfds"
    datasets.DatasetDict({"train": _hf_split(12, bad=4), "validation": _hf_split(6)}).save_to_disk(str(path))
    r = make_recipe(**{"data.source": "hf", "data.path": str(path), "data.val_split": "validation",
                       "data.image_key": "img", "data.label_key": "y"})
    b = build_data(r)
    assert b.classes == ["ant", "bee", "cow"]
    assert (b.train_size, b.val_size) == (12, 6) and b.class_counts == [4, 4, 4]
    xs, skipped = 0, []
    for images, labels, sk in b.train_loader:
        xs += len(images)
        skipped += sk
    assert xs == 11 and skipped == ["train[4]"]
    x, y = b.val_set[2]
    assert x.shape == (3, 32, 32) and y == 2


def test_hf_single_split_is_split_by_seed(make_recipe, tmp_path):
    path = tmp_path / "one"
    _hf_split(30).save_to_disk(str(path))
    r = make_recipe(**{"data.source": "hf", "data.path": str(path), "data.image_key": "img", "data.label_key": "y"})
    b = build_data(r)
    assert (b.train_size, b.val_size) == (24, 6)
    assert sorted(b.val_set.labels) == [0, 0, 1, 1, 2, 2]
    with pytest.raises(DataError, match="image_key"):
        build_data(r.with_overrides({"data.image_key": "picture"}))

"""Data faults: every broken input is either skipped and counted (through `build_data`, through the
loaders, and through a real training run whose `DataSkipped` events reach events.jsonl) or refused with
a clear `DataError` naming what to fix. Nothing else may escape.

    readable (converted)   CMYK JPEG, 16-bit PNG
    skipped and counted    truncated PNG, zero-byte PNG, text file named .png, PNG headers claiming
                           100000x100000 (Pillow's bomb error) and 10000x10000 (vittui's MAX_PIXELS)
    ignored and reported   a non-image extension (notes.txt) in a class folder
    DataError              an empty class folder, train/val class folders that differ
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from fault_helpers import TINY_INPROC
from PIL import Image
from tiny import truncated_png

from vittui.data import readers
from vittui.data.errors import DataError
from vittui.data.readers import open_image
from vittui.data.sources import build_data
from vittui.recipe import Recipe
from vittui.runs import events as ev

# ------------------------------------------------------------------------------------------- builders


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A valid PNG signature and IHDR claiming width x height, and a tiny IDAT: a few dozen bytes on
    disk, billions of pixels if anyone believed it."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def solid(path: Path, colour, size=(10, 10)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def broken_tree(root: Path) -> tuple[Path, set[str], set[str]]:
    """train/{a,b} with 13 good images, 5 unreadable ones, 2 odd modes and a notes file; val/{a,b} clean.
    20 listed training images: batch 5 consumes them all in one epoch."""
    colours = {"a": (200, 30, 30), "b": (30, 30, 200)}
    for cls, n in (("a", 6), ("b", 7)):
        for j in range(n):
            solid(root / "train" / cls / f"ok_{j}.png", colours[cls])
        for j in range(3):
            solid(root / "val" / cls / f"v_{j}.png", colours[cls])
    t = root / "train"
    bad = {
        truncated_png(t / "a" / "truncated.png", size=24),
        t / "b" / "zero.png",
        t / "a" / "words.png",
        png_header_only(t / "b" / "bomb.png", 100_000, 100_000),
        png_header_only(t / "a" / "big.png", 10_000, 10_000),
    }
    (t / "b" / "zero.png").write_bytes(b"")
    (t / "a" / "words.png").write_text("this is not an image, whatever its name says\n")
    Image.new("CMYK", (10, 10), (0, 200, 200, 0)).save(t / "a" / "cmyk.jpg", quality=90)
    Image.fromarray(np.full((10, 10), 40000, np.uint16)).save(t / "b" / "deep16.png")
    odd = {str(t / "a" / "cmyk.jpg"), str(t / "b" / "deep16.png")}
    (t / "a" / "notes.txt").write_text("labels were checked by hand")
    return root, {str(p) for p in bad}, odd


def folder_recipe(root: Path, **extra) -> Recipe:
    over = {"data.source": "imagefolder", "data.path": str(root), "data.batch_size": 5, "data.num_workers": 0}
    over.update(extra)
    return Recipe().with_overrides(TINY_INPROC).with_overrides(over)


# ---------------------------------------------------------------------------------------------- tests


def test_each_broken_file_is_unreadable_without_decoding_a_bomb_and_odd_modes_convert(tmp_path, monkeypatch):
    from PIL import ImageFile

    root, bad, odd = broken_tree(tmp_path / "ds")
    decoded: list[tuple[str, int]] = []  # (file, pixels) of every decode Pillow was asked for
    real_load = ImageFile.ImageFile.load

    def spy_load(self):
        decoded.append((str(getattr(self, "filename", "")), self.size[0] * self.size[1]))
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", spy_load)
    for p in sorted(bad):
        with pytest.raises(readers.UnreadableImage):
            open_image(p)
    huge = [(f, n) for f, n in decoded if n > readers.MAX_PIXELS]
    assert huge == [], f"an image over MAX_PIXELS was decoded instead of refused from its header: {huge}"
    assert {Path(f).name for f, _ in decoded} <= {"truncated.png"}, decoded  # the rest fail before decoding
    with pytest.raises(readers.UnreadableImage, match="too large"):  # vittui's own limit, below Pillow's error
        open_image(root / "train" / "a" / "big.png")
    for p in sorted(odd):
        img = open_image(p)
        assert img.mode == "RGB" and img.size == (10, 10)
    deep = np.asarray(open_image(root / "train" / "b" / "deep16.png"))
    assert deep[0, 0, 0] == round(40000 * 255 / 65535)  # scaled, not clipped to 255


@pytest.mark.parametrize("for_eval", [False, True])
def test_broken_files_are_skipped_and_counted_through_the_loaders(tmp_path, for_eval):
    root, bad, odd = broken_tree(tmp_path / "ds")
    b = build_data(folder_recipe(root), for_eval=for_eval)
    assert b.classes == ["a", "b"]
    assert (b.train_size, b.val_size) == (20, 6)  # listed; which ones read is the loader's business
    assert [Path(p).name for p in b.ignored_files] == ["notes.txt"]
    assert any("not images" in w for w in b.warnings)
    seen, skipped = 0, []
    for images, labels, sk in b.train_loader:
        assert images.shape[1:] == (3, 16, 16) and len(images) == len(labels)
        seen += len(labels)
        skipped += sk
    assert sorted(skipped) == sorted(bad)  # each exactly once
    assert seen == 20 - len(bad)
    for images, labels, sk in b.val_loader:
        assert sk == [] and len(labels) == len(images)


def test_skips_reach_events_jsonl_in_a_real_training_run(tmp_path):
    from vittui.runs.launcher import prepare_run
    from vittui.train.loop import train

    root, bad, _ = broken_tree(tmp_path / "ds")
    recipe = folder_recipe(root, **{"schedule.epochs": 1})
    run = prepare_run(recipe, tmp_path / "runs", "skips")
    result = train(recipe, run.path)
    assert result.state == "finished"
    history = ev.read_all(run.events_path)
    skips = [e for e in history if isinstance(e, ev.DataSkipped)]
    assert skips, "no DataSkipped event reached events.jsonl"
    counts = [e.count for e in skips]
    assert counts == sorted(counts) and counts[-1] == len(bad)  # a running total: one epoch, 5 bad files
    assert set().union(*(e.examples for e in skips)) <= bad
    warnings = [e for e in history if isinstance(e, ev.Log) and e.level == "warning" and "unreadable" in e.message]
    assert len(warnings) == len(skips)
    assert [e.step for e in history if isinstance(e, ev.Step)] == list(range(1, result.step + 1))


def test_an_empty_class_folder_is_a_data_error_naming_it(tmp_path):
    root = tmp_path / "ds"
    for cls in ("a", "b"):
        solid(root / cls / "x.png", (1, 2, 3))
        solid(root / cls / "y.png", (1, 2, 3))
    (root / "hollow").mkdir()
    with pytest.raises(DataError, match="hollow"):
        build_data(folder_recipe(root))
    (root / "hollow" / "README.md").write_text("only notes here")  # a non-image does not make it a class
    with pytest.raises(DataError, match="hollow.*no images"):
        build_data(folder_recipe(root))


def test_mismatched_train_and_val_classes_is_a_data_error_naming_both(tmp_path):
    root = tmp_path / "ds"
    for split, classes in (("train", ("cat", "dog", "owl")), ("val", ("cat", "dog", "emu"))):
        for cls in classes:
            solid(root / split / cls / "x.png", (9, 9, 9))
            solid(root / split / cls / "y.png", (9, 9, 9))
    with pytest.raises(DataError) as e:
        build_data(folder_recipe(root))
    assert "owl" in str(e.value) and "emu" in str(e.value)


class _Spinning(Exception):
    pass


def test_every_training_image_unreadable_is_a_data_error_not_an_endless_loop(tmp_path):
    from vittui.runs.launcher import prepare_run
    from vittui.train.loop import train

    root = tmp_path / "ds"
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir(parents=True)
        for j in range(3):
            (root / "train" / cls / f"z{j}.png").write_bytes(b"")
            solid(root / "val" / cls / f"v{j}.png", (5, 5, 5))
    recipe = folder_recipe(root, **{"schedule.epochs": 1, "data.batch_size": 2})
    run = prepare_run(recipe, tmp_path / "runs", "allbad")

    def on_event(e):  # turns the endless loop into a quick failure
        if isinstance(e, ev.Eval) and e.step == 0 and e.epoch >= 3:
            raise _Spinning(f"epoch {e.epoch:g} ended and not one optimizer step was taken")

    try:
        train(recipe, run.path, on_event=on_event)
    except DataError as e:
        assert "unreadable" in str(e)
        return
    except _Spinning as e:
        pytest.fail(str(e))
    pytest.fail("a run with no readable training image must not finish as if it trained")


def test_the_worker_reports_a_data_error_as_bad_input(tmp_path):
    from vittui.runs.launcher import prepare_run
    from vittui.train.worker import run_worker

    root = tmp_path / "ds"
    solid(root / "a" / "x.png", (1, 1, 1))
    solid(root / "a" / "y.png", (1, 1, 1))
    (root / "b").mkdir()
    run = prepare_run(folder_recipe(root), tmp_path / "runs", "bad")
    assert run_worker(run.path) == 2
    status = run.read_status()
    assert status.state == "failed" and "DataError" in status.message and str(root / "b") in status.message
    faults = [e for e in ev.read_all(run.events_path) if isinstance(e, ev.Fault)]
    assert len(faults) == 1 and "has no images" in faults[0].message
    assert not run.lock_path.exists()


@pytest.mark.timeout(60)
def test_a_symlink_loop_in_a_class_folder_is_walked_once(tmp_path):
    """A link from a class folder to itself: the folder is listed once (its files by their real path,
    none through the link) and the data builds; it neither hangs nor is refused."""
    root = tmp_path / "ds"
    files = []
    for cls in ("a", "b"):
        for j in range(3):
            files.append(str(solid(root / cls / f"{j}.png", (j, 0, 0))))
    (root / "a" / "again").symlink_to(root / "a", target_is_directory=True)
    b = build_data(folder_recipe(root, **{"data.val_fraction": 0.34}))
    listed = [b.train_set.ident(i) for i in range(b.train_size)] + [b.val_set.ident(i) for i in range(b.val_size)]
    assert sorted(listed) == sorted(files), "each file once, by its own path (none through the loop)"
    assert b.ignored_files == []

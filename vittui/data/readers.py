"""Reading one image: a file, bytes, an array row or a dataset cell becomes 8-bit RGB, or `UnreadableImage`.

Readers map an index to an RGB image plus an identifier for reports; they know nothing of labels or
transforms, so every source can share them.

Image modes
    Everything becomes 8-bit RGB: 16-bit grayscale ('I;16', 'I') is scaled to 0..255 (65535 → 255),
    not clipped; CMYK, YCbCr, palette and 1-bit images go through Pillow's conversion; images with
    alpha (RGBA, LA, PA, palette with transparency) are composited onto a white background.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import Any, Sequence

import numpy as np
from PIL import Image, ImageOps

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_PIXELS = 89_478_485  # Pillow's default bomb threshold; larger images are skipped, not opened


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
    """Images held in a numpy array: (N, H, W) grayscale or (N, H, W, 3) colour, any numeric dtype.

    The decoded, resized RGB images are kept when they all fit in `CACHE_BYTES` (digits at 32 px:
    5.5 MB): decoding and resizing is ~60 µs per image, ~1% of a demo training step, the same at
    every epoch. Each loader worker process fills its own copy."""

    CACHE_BYTES = 64 << 20

    def __init__(self, images: np.ndarray, name: str, resize_to: int | None = None,
                 scale: float | None = None):
        self.images = images
        self.name = name
        self.resize_to = resize_to
        self.scale = scale  # multiply before casting to uint8 (digits: 255/16)
        side = resize_to or (images.shape[1] if getattr(images, "ndim", 0) >= 3 else 0)
        fits = side and len(images) * side * side * 3 <= self.CACHE_BYTES
        self._cache: list[Image.Image | None] | None = [None] * len(images) if fits else None

    def __len__(self) -> int:
        return len(self.images)

    def ident(self, i: int) -> str:
        return f"{self.name}[{i}]"

    def image(self, i: int) -> Image.Image:
        if self._cache is None:
            return self._decode(i)
        img = self._cache[i]
        if img is None:
            img = self._cache[i] = self._decode(i)
        return img.copy()  # callers may draw on it; the cached one stays as decoded

    def _decode(self, i: int) -> Image.Image:
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



__all__ = [
    "IMAGE_EXTENSIONS", "MAX_PIXELS", "UnreadableImage", "to_rgb", "open_image", "ArrayReader", "FileReader",
    "HFReader",
]

"""Image transforms, mixup/cutmix and class weights, all built from the Recipe on top of timm.

`build_transform` is a thin, explicit call to `timm.data.create_transform`; the only things added
here are the few adjustments the recipe's ranges allow but timm does not expect:

- a 1-entry mean/std (grayscale statistics) is widened to 3 entries, because every image reaching the
  transform is RGB and timm's RandAugment uses the mean as a per-channel fill colour;
- `interpolation = "random"` is a training-only mode in timm; evaluation falls back to bilinear;
- `auto_augment = "trivialaugment"` (accepted by the recipe, unknown to timm's parser) is torchvision's
  `TrivialAugmentWide`, placed where timm puts its auto-augment (after crop and flips, before
  `ToTensor`) and, like timm's policies, replacing colour jitter.

RandAugment on tiny images (checked in timm 1.0.31 `transforms_factory.transforms_imagenet_train`):
the translate range is `int(img_size * 0.45)` pixels, so at 32 px it translates by up to 14 px instead
of ImageNet's 100; every op is a PIL op that works at any size. Random erasing runs on the normalised
tensor and uses timm's `RandomErasing` (10 attempts per image; at 32 px it finds boxes as usual).

Loaders cut the transform where timm's own loader does (`create_transform(use_prefetcher=True)`):
the PIL part runs per image and ends in a uint8 array; the conversion to float, normalisation and
random erasing run once per batch in the collate (`loader_transform`). Per image, torchvision's
`ToTensor` + `Normalize` cost ~220 µs at 32 px here (~14 ms, ~4% of a demo step, per batch of 64);
once per batch it is ~0.3 ms.
`dataset[i]` keeps the whole per-image transform.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from timm.data import Mixup, create_transform
from timm.data.mixup import mixup_target

from vittui.recipe import Recipe, three_channels


def build_transform(recipe: Recipe, train: bool, *, batched: bool = False):
    """The torchvision `Compose` that turns an RGB PIL image into a normalised (3, S, S) tensor.
    With `batched`, the part before the tensor (ending in a uint8 H×W×C array) for `BatchFinish`.

    Training: RandomResizedCrop(scale, ratio) → flips → RandAugment/AutoAugment or colour jitter →
    tensor → normalise → random erasing. Evaluation: resize the short side to S and centre-crop S
    (`crop_pct=1.0`, so nothing is cut away from a square image).
    """
    a, d = recipe.augment, recipe.data
    size = int(recipe.model.img_size)
    mean, std = three_channels(d.mean), three_channels(d.std)
    if train:
        trivial = a.auto_augment == "trivialaugment"
        tf = create_transform(
            input_size=(3, size, size),
            is_training=True,
            scale=tuple(a.crop_scale),
            ratio=tuple(a.crop_ratio),
            hflip=float(a.hflip),
            vflip=float(a.vflip),
            color_jitter=float(a.color_jitter) if a.color_jitter > 0 and not trivial else None,
            auto_augment=(a.auto_augment or None) if not trivial else None,
            re_prob=float(a.re_prob),
            re_mode="pixel",  # timm train.py's default (DeiT recipe)
            interpolation=a.interpolation,
            mean=mean,
            std=std,
            use_prefetcher=batched,
        )
        if trivial:
            _insert_trivial_augment(tf, a.interpolation, mean)
        return _to_array(tf) if batched else tf
    interpolation = "bilinear" if a.interpolation == "random" else a.interpolation
    tf = create_transform(
        input_size=(3, size, size),
        is_training=False,
        interpolation=interpolation,
        mean=mean,
        std=std,
        crop_pct=1.0,
        use_prefetcher=batched,
    )
    return _to_array(tf) if batched else tf


def _to_array(tf):
    """timm's prefetcher transform ends in `MaybePILToTensor` (~57 µs per 32 px image); a uint8 array
    view of the PIL image is ~8 µs and `BatchFinish` makes the batch a tensor in one go."""
    if type(tf.transforms[-1]).__name__ == "MaybePILToTensor":
        tf.transforms[-1] = PilToArray()
    return tf


class PilToArray:
    """PIL image → uint8 H×W×C array (a 2-D grayscale image gets a channel axis)."""

    def __call__(self, img) -> np.ndarray:
        arr = np.asarray(img, dtype=np.uint8)
        return arr[..., None] if arr.ndim == 2 else arr

    def __repr__(self) -> str:
        return "PilToArray()"


class BatchFinish:
    """The per-batch end of a loader transform: uint8 images → normalised float (N, C, H, W), then
    timm's `RandomErasing` on each image of the batch (training only; it works on normalised values)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], erasing: Callable | None = None):
        self.mean = torch.tensor([255.0 * m for m in mean]).view(1, -1, 1, 1)
        self.std = torch.tensor([255.0 * s for s in std]).view(1, -1, 1, 1)
        self.erasing = erasing

    def __call__(self, images: Sequence) -> torch.Tensor:
        if isinstance(images[0], torch.Tensor):  # uint8 C×H×W (a transform that ends in a tensor)
            x = torch.stack(list(images)).float()
        else:
            x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).to(torch.float32,
                                                                         memory_format=torch.contiguous_format)
        x = x.sub_(self.mean).div_(self.std)
        return self.erasing(x) if self.erasing is not None else x


def loader_transform(recipe: Recipe, train: bool) -> tuple[Callable, BatchFinish]:
    """(per-image part, per-batch part) of `build_transform(recipe, train)`, for the loaders."""
    mean, std = three_channels(recipe.data.mean), three_channels(recipe.data.std)
    erasing = None
    a = recipe.augment
    if train and a.re_prob > 0:
        from timm.data.random_erasing import RandomErasing

        erasing = RandomErasing(float(a.re_prob), mode="pixel", max_count=1, num_splits=0, device="cpu")
    return build_transform(recipe, train, batched=True), BatchFinish(mean, std, erasing)


def _insert_trivial_augment(tf, interpolation: str, mean: Sequence[float]) -> None:
    from torchvision.transforms import InterpolationMode, TrivialAugmentWide

    mode = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC,
            "nearest": InterpolationMode.NEAREST}.get(interpolation, InterpolationMode.BILINEAR)
    fill = [min(255, round(255 * m)) for m in mean]
    names = [type(t).__name__ for t in tf.transforms]
    at = next((i for i, n in enumerate(names) if n in ("MaybeToTensor", "ToTensor", "MaybePILToTensor")), len(names))
    tf.transforms.insert(at, TrivialAugmentWide(interpolation=mode, fill=fill))


class BatchMixup(Mixup):
    """timm's `Mixup` (batch mode) without its even-batch assertion.

    Batch-mode mixing pairs sample i with sample n-1-i (`x.flip(0)`); with an odd batch the middle
    sample is simply mixed with itself, which is harmless. Odd batches happen here because unreadable
    images are dropped from a batch by the collate function, and because the last batch of a small
    train set is kept. Empty batches are returned untouched (with one-hot-shaped empty targets).
    """

    def __call__(self, x: torch.Tensor, target: torch.Tensor):
        if len(x) == 0:
            return x, torch.zeros((0, self.num_classes), dtype=torch.float32, device=x.device)
        if self.mode == "pair" and len(x) % 2:
            return super().__call__(x, target)  # pragma: no cover - timm asserts: pair mode needs even batches
        if self.mode == "elem":
            lam = self._mix_elem(x)
        elif self.mode == "pair":
            lam = self._mix_pair(x)
        else:
            lam = self._mix_batch(x)
        return x, mixup_target(target, self.num_classes, lam, self.label_smoothing, self.multi_label)


def build_mixup(recipe: Recipe, num_classes: int) -> Mixup | None:
    """A timm `Mixup` (subclass `BatchMixup`) producing soft targets, or None when both alphas are 0.

    It mixes a batch in place and returns `(images, targets)` with targets of shape (batch,
    num_classes) that already include `regularize.label_smoothing`; train with soft-target cross
    entropy (`timm.loss.SoftTargetCrossEntropy`) when this is not None.
    """
    a = recipe.augment
    if a.mixup <= 0 and a.cutmix <= 0:
        return None
    return BatchMixup(
        mixup_alpha=float(a.mixup),
        cutmix_alpha=float(a.cutmix),
        prob=float(a.mixup_prob),
        switch_prob=float(a.mixup_switch_prob),
        mode="batch",
        label_smoothing=float(recipe.regularize.label_smoothing),
        num_classes=int(num_classes),
    )


def class_weights(counts: Sequence[int]) -> list[float]:
    """Inverse-frequency weights for a weighted loss, scaled so that their mean over classes is 1.

    A class with no training images gets weight 0 (it never appears as a target, so the weight only
    matters for the normalisation). All-zero counts give all-ones weights.
    """
    counts = [int(c) for c in counts]
    if not counts:
        return []
    inv = [1.0 / c if c > 0 else 0.0 for c in counts]
    total = sum(inv)
    if total == 0:
        return [1.0] * len(counts)
    scale = len(counts) / total
    return [w * scale for w in inv]


__all__ = ["build_transform", "loader_transform", "BatchFinish", "PilToArray", "build_mixup", "class_weights",
           "BatchMixup"]

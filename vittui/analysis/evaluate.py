"""Evaluation of a model (torch): run it over a loader into an `EvalReport`, robustness to corruptions and
throughput. The metrics and the report itself are pure numpy, in `vittui.analysis.metrics`.
"""

from __future__ import annotations

import math
import time
from typing import Any, Iterable, Sequence

import numpy as np

from vittui.analysis.metrics import EvalReport, report_from_probs

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Corruption severities (three each). Noise: std of additive Gaussian noise on [0, 1] pixels (ImageNet-C
# severities 1, 3, 5). Blur: Gaussian sigma in pixels. Contrast: factor c in (x - mean) * c + mean, the
# mean taken per image and channel over the pixels (ImageNet-C severities 1, 3, 5).
CORRUPTIONS: dict[str, tuple[float, ...]] = {
    "gaussian_noise": (0.08, 0.18, 0.38),
    "gaussian_blur": (0.5, 1.0, 2.0),
    "contrast": (0.4, 0.2, 0.05),
}


# --------------------------------------------------------------------------------------------------------
# Running a model
# --------------------------------------------------------------------------------------------------------

def logits_of(output: Any):
    """Logits from a model output: a tensor, an object with `.logits` (transformers), a dict or a tuple."""
    if hasattr(output, "logits"):
        return output.logits
    if isinstance(output, dict):
        return output["logits"]
    if isinstance(output, (tuple, list)):
        return output[0]
    return output


def _split_batch(batch: Any) -> tuple[Any, Any, int]:
    if isinstance(batch, dict):
        return batch["images"] if "images" in batch else batch["pixel_values"], batch["labels"], 0
    images, labels = batch[0], batch[1]
    skipped = 0
    if len(batch) > 2 and batch[2] is not None:
        s = batch[2]
        skipped = int(s.sum()) if hasattr(s, "sum") else (len(s) if isinstance(s, (list, tuple)) else int(s))
    return images, labels, skipped


class _EvalMode:
    """Eval mode for the duration, putting back every module's own flag afterwards."""

    def __init__(self, model: Any):
        self.model = model

    def __enter__(self):
        self.modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        return self.model

    def __exit__(self, *exc):
        for m, mode in self.modes:
            m.training = mode
        return False


def _predict(model: Any, loader: Iterable, device: Any, transform=None, max_batches: int | None = None):
    import torch
    import torch.nn.functional as F

    probs, labels, losses = [], [], []
    skipped = 0
    with _EvalMode(model), torch.no_grad():
        for i, batch in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            x, y, s = _split_batch(batch)
            skipped += s
            x = x.to(device)
            y = torch.as_tensor(y).to(device).long()
            if transform is not None:
                x = transform(x)
            logits = logits_of(model(x)).float()
            losses.append(float(F.cross_entropy(logits, y, reduction="sum")))
            probs.append(torch.softmax(logits, dim=-1).double().cpu().numpy())
            labels.append(y.cpu().numpy())
    n = sum(len(l) for l in labels)
    if not probs:  # no batch at all: no samples, loss NaN like every other metric
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64), float("nan"), skipped
    return np.concatenate(probs), np.concatenate(labels), (sum(losses) / n if n else float("nan")), skipped


def evaluate(model: Any, loader: Iterable, num_classes: int, device: Any = "cpu",
             class_names: Sequence[str] | None = None, threshold: float = 0.5, positive: int = 1,
             n_bins: int = 15) -> EvalReport:
    """Run `model` over `loader` (batches of (images, labels) or (images, labels, skipped)) and build the
    report. For two classes, `binary` holds AUC, sensitivity and specificity of class `positive` at
    `threshold`."""
    probs, labels, loss, skipped = _predict(model, loader, device)
    if probs.size == 0:
        probs = np.zeros((0, num_classes))
    return report_from_probs(probs, labels, num_classes, class_names, loss=loss, threshold=threshold,
                             positive=positive, n_bins=n_bins, skipped=skipped)


# --------------------------------------------------------------------------------------------------------
# Corruptions: on normalised tensors, un-normalise with mean/std, corrupt in [0, 1], clip, re-normalise
# --------------------------------------------------------------------------------------------------------

def _stats(x, mean: Sequence[float], std: Sequence[float]):
    import torch

    c = x.shape[1]
    m = torch.tensor(list(mean)[:c], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(list(std)[:c], dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
    if m.shape[1] != c:  # single statistics for every channel
        m, s = m[:, :1].expand(1, c, 1, 1), s[:, :1].expand(1, c, 1, 1)
    return m, s


def gaussian_kernel1d(sigma: float):
    import torch

    radius = max(1, int(math.ceil(3.0 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    return k / k.sum()


def corrupt01(x01, kind: str, level: float, generator=None):
    """Apply one corruption to images in [0, 1], (B, C, H, W); result clipped to [0, 1]."""
    import torch
    import torch.nn.functional as F

    if kind == "gaussian_noise":
        noise = torch.randn(x01.shape, generator=generator, dtype=x01.dtype, device="cpu").to(x01.device)
        out = x01 + level * noise
    elif kind == "gaussian_blur":
        k = gaussian_kernel1d(level).to(dtype=x01.dtype, device=x01.device)
        c = x01.shape[1]
        r = (k.numel() - 1) // 2
        h, w = x01.shape[-2:]
        mode = "reflect" if r < min(h, w) else "replicate"
        out = F.pad(x01, (r, r, 0, 0), mode=mode)
        out = F.conv2d(out, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        out = F.pad(out, (0, 0, r, r), mode=mode)
        out = F.conv2d(out, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
    elif kind == "contrast":
        m = x01.mean(dim=(-2, -1), keepdim=True)
        out = (x01 - m) * level + m
    else:
        raise ValueError(f"unknown corruption {kind!r} (known: {', '.join(CORRUPTIONS)})")
    return out.clamp(0.0, 1.0)


def corrupt(x, kind: str, level: float, mean: Sequence[float] = IMAGENET_MEAN,
            std: Sequence[float] = IMAGENET_STD, generator=None):
    """Corrupt normalised images: x01 = x * std + mean, corrupt and clip in [0, 1], return (x01' - mean) / std."""
    m, s = _stats(x, mean, std)
    return (corrupt01(x * s + m, kind, level, generator) - m) / s


def robustness(model: Any, loader: Iterable, mean: Sequence[float] = IMAGENET_MEAN,
               std: Sequence[float] = IMAGENET_STD, device: Any = "cpu",
               corruptions: dict[str, Sequence[float]] | None = None, max_batches: int | None = None,
               seed: int = 0) -> list[dict[str, Any]]:
    """Top-1 under each corruption at each severity (1, 2, 3), with the clean top-1 first and `drop` =
    clean - corrupted. The noise is drawn from a generator seeded with `seed`, so runs repeat exactly."""
    import torch

    table = corruptions or CORRUPTIONS
    probs, labels, _, _ = _predict(model, loader, device, max_batches=max_batches)
    clean = float((probs.argmax(1) == labels).mean()) if len(labels) else float("nan")
    rows: list[dict[str, Any]] = [{"corruption": "clean", "severity": 0, "parameter": None, "top1": clean,
                                   "drop": 0.0}]
    for kind, levels in table.items():
        for sev, level in enumerate(levels, start=1):
            gen = torch.Generator().manual_seed(seed)
            tf = lambda x, kind=kind, level=level, gen=gen: corrupt(x, kind, level, mean, std, gen)  # noqa: E731
            p, y, _, _ = _predict(model, loader, device, transform=tf, max_batches=max_batches)
            acc = float((p.argmax(1) == y).mean()) if len(y) else float("nan")
            rows.append({"corruption": kind, "severity": sev, "parameter": float(level), "top1": acc,
                         "drop": clean - acc})
    return rows


def throughput(model: Any, img_size: int | tuple[int, int], batch_sizes: Sequence[int] = (1, 32),
               device: Any = "cpu", warmup: int = 2, repeats: int | None = None, channels: int = 3,
               dtype=None) -> dict[str, Any]:
    """Inference speed on random images: per batch size, latency in ms (median over repeats) and
    images/s. `repeats` defaults to 3 on CPU and 20 on CUDA; CUDA is synchronised around each timing."""
    import torch

    dev = torch.device(device)
    is_cuda = dev.type == "cuda"
    repeats = repeats or (20 if is_cuda else 3)
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    runs = []
    with _EvalMode(model), torch.inference_mode():
        for bs in batch_sizes:
            x = torch.randn(bs, channels, h, w, device=dev, dtype=dtype or torch.float32)
            for _ in range(warmup):
                model(x)
            times = []
            for _ in range(repeats):
                if is_cuda:
                    torch.cuda.synchronize(dev)
                t0 = time.perf_counter()
                model(x)
                if is_cuda:
                    torch.cuda.synchronize(dev)
                times.append(time.perf_counter() - t0)
            med = float(np.median(times))
            runs.append({"batch_size": int(bs), "latency_ms": med * 1000.0,
                         "images_per_s": bs / med if med > 0 else float("inf"), "repeats": repeats})
    return {"device": str(dev), "img_size": h if h == w else [h, w], "runs": runs}

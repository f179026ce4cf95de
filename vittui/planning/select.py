"""Recommend a model and a training strategy for a dataset. Pure Python: the catalogue and the estimator.

What the advice rests on:

* **Data size vs training from scratch.** ViTs lack the convolutional inductive biases; trained from
  scratch on ImageNet-1k alone the original ViT-B trailed ResNets and only won with ImageNet-21k or
  JFT-300M pre-training (Dosovitskiy et al. 2021). DeiT (Touvron et al. 2021) showed ImageNet-1k
  (1.28 M images) is enough with heavy augmentation (RandAugment, Mixup, CutMix, random erasing,
  stochastic depth), 300+ epochs and optionally distillation from a CNN teacher. Below roughly a million
  images, start from pretrained weights.
* **Freezing by similarity × size** (Yosinski et al. 2014; the usual transfer-learning guidance): a small
  dataset close to the pretraining data → train a linear head on frozen features; small and different →
  adapt few parameters (LoRA) or the last blocks; large → fine-tune everything (large and very different:
  still start from pretrained weights unless it is ImageNet-scale).
* **DINOv2 features** are strong off the shelf (81.1 / 84.5 % ImageNet linear probe for S/B), so they
  rank first for linear probes.
* **Memory**: each candidate is checked with ``vittui.planning.memory.estimate`` for the strategy it would
  use (bf16 autocast, batch 32 under 2 000 images else 64) against ``gpu_mem_gb``.
* **Latency**: forward GFLOPs at the training resolution over an assumed effective throughput of
  ``ASSUMED_TFLOPS`` (batch-1 inference in fp16 on a mid-range GPU reaches only a fraction of peak).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from vittui.models.catalog import ModelInfo, load_catalog

ASSUMED_TFLOPS = 5.0  # effective FLOP/s for batch-1 fp16 inference, in TFLOP/s
STRATEGIES = ("linear_probe", "last_n_blocks", "lora", "full_finetune", "from_scratch")
FROM_SCRATCH_IMAGES = 1_000_000


@dataclass
class Recommendation:
    model: ModelInfo
    score: float
    strategy: str
    reasons: list[str] = field(default_factory=list)
    peak_bytes: int | None = None
    latency_ms: float | None = None
    resolution: int = 224


def choose_strategy(images: int, similarity: str) -> tuple[str, list[str]]:
    """The strategy for a dataset size and similarity to the pretraining data, with its reasons."""
    sim = similarity.lower()
    if sim not in ("low", "medium", "high"):
        raise ValueError(f"similarity must be low, medium or high (got {similarity!r})")
    reasons: list[str] = []
    if images >= FROM_SCRATCH_IMAGES and sim == "low":
        reasons.append(f"{images:,} images is ImageNet-scale: a ViT can be trained from scratch with "
                       "DeiT-style augmentation (RandAugment, Mixup/CutMix, stochastic depth, 300 epochs)")
        return "from_scratch", reasons
    if images < 100_000:
        reasons.append(f"{images:,} images is far below ImageNet scale: ViTs trained from scratch need "
                       "~1 M images or DeiT-style heavy augmentation, so start from pretrained weights")
    if images < 2_000:
        if sim == "high":
            reasons.append("few images, similar to the pretraining data: freeze the backbone and train a "
                           "linear head (fast, hard to overfit)")
            return "linear_probe", reasons
        if sim == "medium":
            reasons.append("few images, somewhat different: LoRA adapts attention with ~1% of the "
                           "parameters, less overfitting than a full fine-tune")
            return "lora", reasons
        reasons.append("few images, very different data: retrain the last blocks (features near the "
                       "output are the most task-specific); keep the early ones frozen")
        return "last_n_blocks", reasons
    if images < 20_000:
        if sim == "high":
            reasons.append("small dataset close to the pretraining data: fine-tune the last blocks")
            return "last_n_blocks", reasons
        if sim == "medium":
            reasons.append("small dataset, somewhat different: LoRA keeps most weights fixed")
            return "lora", reasons
        reasons.append("small dataset, different domain: fine-tune all layers with a low learning rate "
                       "and layer decay")
        return "full_finetune", reasons
    reasons.append(f"{images:,} images is enough to fine-tune every layer")
    return "full_finetune", reasons


def _recipe_for(model: ModelInfo, strategy: str, images: int, resolution: int):
    from vittui.recipe import AdaptSection, ComputeSection, DataSection, ModelSection, Recipe

    adapt = AdaptSection()
    if strategy == "linear_probe":
        adapt = AdaptSection(freeze="linear_probe")
    elif strategy == "last_n_blocks":
        adapt = AdaptSection(freeze="all_but_last_n", freeze_blocks=max(1, min(4, model.depth // 4)))
    elif strategy == "lora":
        adapt = AdaptSection(lora=True)
    batch = 32 if images < 2_000 else 64
    return Recipe(model=ModelSection(name=model.id, source=model.source, img_size=resolution),
                  data=DataSection(batch_size=batch), adapt=adapt,
                  compute=ComputeSection(precision="bf16", device="cuda"))


def _train_resolution(model: ModelInfo) -> int:
    # DINOv2 is catalogued at its 518 px pretraining size; fine-tunes usually run at 224
    if model.family == "dinov2":
        return 224
    return model.resolution


def recommend(images: int, classes: int, similarity: str, gpu_mem_gb: float | None = None,
              latency_ms: float | None = None, task: str = "classification",
              catalog: list[ModelInfo] | None = None, top: int | None = None) -> list[Recommendation]:
    """Ranked models with a strategy each. ``gpu_mem_gb`` and ``latency_ms`` filter; ``top`` truncates."""
    from vittui.hardware import fmt_bytes
    from vittui.planning.dims import ModelDims
    from vittui.planning.memory import estimate

    if task != "classification":
        raise ValueError(f"only classification is supported (got task={task!r})")
    if images < 1 or classes < 1:
        raise ValueError("images and classes must be >= 1")
    strategy, base_reasons = choose_strategy(images, similarity)
    models = catalog if catalog is not None else load_catalog()
    out: list[Recommendation] = []
    for m in models:
        strat = strategy
        reasons = list(base_reasons)
        res = _train_resolution(m)
        if strat == "from_scratch" and m.family not in ("deit", "vit"):
            continue
        # accuracy proxy: ImageNet top-1, centred on 80 %
        top1 = m.imagenet_top1 if m.imagenet_top1 is not None else 80.0
        score = (top1 - 80.0) / 5.0
        if m.imagenet_top1 is not None:
            reasons.append(f"ImageNet top-1 {m.imagenet_top1:.1f}% ({m.top1_protocol}, {m.top1_source})")
        else:
            reasons.append("no ImageNet-1k accuracy for this checkpoint (backbone only)")
        # size vs data: many parameters per image overfit when everything trains
        params_m = m.params / 1e6
        if strat in ("full_finetune", "from_scratch"):
            ratio = m.params / max(images, 1)
            score -= 1.0 * max(0.0, math.log10(ratio) - 3.0)  # a decade past 1,000 params per image costs 5 points of top-1
            if ratio > 10 ** 3:
                reasons.append(f"{params_m:.0f} M parameters for {images:,} images: large for a full "
                               "fine-tune, prefer a smaller model or stronger regularisation")
        if strat == "linear_probe":
            if m.family == "dinov2":
                score += 1.0
                reasons.append("DINOv2 features are strong frozen (linear probe 81.1/84.5% on ImageNet)")
            elif "in21k" in m.id or "22k" in m.id:
                score += 0.3
                reasons.append("pretrained on ImageNet-21k/22k: broad features for a frozen backbone")
        if strat == "from_scratch":
            if m.family == "deit":
                score += 1.0
                reasons.append("DeiT: the recipe that trains ViTs on ImageNet-1k alone")
            if "distilled" in m.id:
                reasons.append("distilled variant: needs a CNN teacher during training")
        if m.source == "hf":
            score -= 0.05  # same networks as the timm entries; timm's recipe path is the default
        # memory
        recipe = _recipe_for(m, "full_finetune" if strat == "from_scratch" else strat, images, res)
        dims = ModelDims.from_info(m)
        gpu_free = int(gpu_mem_gb * 1024 ** 3) if gpu_mem_gb is not None else None
        est = estimate(recipe, dims, num_classes=classes, gpu_free_bytes=gpu_free)
        if gpu_free is not None:
            if not est.fits:
                continue
            reasons.append(f"fits in {gpu_mem_gb:g} GB: estimated peak {fmt_bytes(est.peak)} "
                           f"(bf16, batch {recipe.data.batch_size}, {strat})")
            score += 0.2 * min(1.0, 1.0 - est.peak / gpu_free)  # headroom
        else:
            reasons.append(f"estimated peak {fmt_bytes(est.peak)} (bf16, batch {recipe.data.batch_size})")
        # latency
        flops = replace(dims, img_size=res).forward_flops(1, classes)
        lat = flops / (ASSUMED_TFLOPS * 1e12) * 1e3
        if latency_ms is not None:
            if lat > latency_ms:
                continue
            reasons.append(f"≈{lat:.1f} ms per image at {res}px ({flops / 1e9:.1f} GFLOPs at an assumed "
                           f"{ASSUMED_TFLOPS:g} TFLOP/s) within the {latency_ms:g} ms budget")
        else:
            reasons.append(f"≈{lat:.1f} ms per image at {res}px (assumed {ASSUMED_TFLOPS:g} TFLOP/s)")
            score -= 0.1 * math.log10(max(flops / 1e9, 1.0))
        out.append(Recommendation(model=m, score=round(score, 3), strategy=strat, reasons=reasons,
                                  peak_bytes=est.peak, latency_ms=round(lat, 2), resolution=res))
    out.sort(key=lambda r: (-r.score, r.model.params))
    return out[:top] if top else out


__all__ = ["Recommendation", "recommend", "choose_strategy", "ASSUMED_TFLOPS", "STRATEGIES"]

"""The model catalogue: known ViT variants with the facts the dashboard shows, stored as data.

``catalog.json`` ships in the package and is read without torch (the dashboard process never imports
it). Two kinds of fields live in it:

* **facts with a source** — ImageNet-1k top-1 and where it comes from, the pretraining data. They are
  typed in below (``SPECS``) and cite their source; a number we are not sure of is ``null``.
* **computed fields** — parameter count, forward GFLOPs per image at the native resolution, and the
  shape (patch, resolution, width, depth, heads, MLP width, prefix tokens). They are never typed in:
  ``python -m vittui.models.catalog --rebuild`` (``vittui.models.catalog_build``, the only part that
  imports torch) builds every entry on the meta device (timm:
  ``timm.create_model(name, pretrained=False)``; Hugging Face: the model class from a config written
  here to match the hub checkpoint, no network), counts parameters, and counts FLOPs with
  ``torch.utils.flop_counter.FlopCounterMode`` on a meta input (it counts from shapes, so meta tensors
  work). FlopCounterMode counts a multiply-add as 2 FLOPs; papers and timm tables usually quote
  multiply-adds under the name "FLOPs" (ViT-B/16: 17.6), so ``gmacs = gflops / 2`` is stored as well.
  ``tests/models/test_catalog.py`` rebuilds a few entries and checks them against the file.

Accuracy sources: "timm results-imagenet.csv" is huggingface/pytorch-image-models
``results/results-imagenet.csv`` (commit 0173a139), top-1 on the ImageNet-1k validation set at the
model's test resolution and crop. Paper numbers say which paper and protocol.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

CATALOG_PATH = Path(__file__).with_name("catalog.json")
TIMM_CSV = "timm results-imagenet.csv (pytorch-image-models@0173a139)"


@dataclass(frozen=True)
class ModelInfo:
    key: str  # short name used in the UI and in `find`
    family: str  # vit | deit | swin | beit | dinov2 | eva02
    source: str  # timm | hf
    id: str  # timm model name with pretrained tag, or Hugging Face hub id
    params: int
    gflops: float  # forward, per image, native resolution, 2 FLOPs per multiply-add
    gmacs: float
    patch: int
    resolution: int
    embed_dim: int
    depth: int
    heads: int
    mlp_hidden: int  # width of the MLP hidden layer (per branch for SwiGLU)
    prefix_tokens: int  # class (+ distillation / register) tokens before the patch tokens
    imagenet_top1: float | None
    top1_source: str | None
    pretraining: str
    arch: str = "vit"  # vit | swin (hierarchical, windowed attention)
    mlp: str = "gelu"  # gelu | swiglu
    layer_scale: bool = False
    global_pool: str = "token"  # token | avg
    stage_depths: tuple[int, ...] = ()  # swin only
    stage_dims: tuple[int, ...] = ()
    stage_heads: tuple[int, ...] = ()
    window: int = 0
    top1_protocol: str = "finetuned"  # finetuned | linear_probe
    num_classes: int = 1000  # head of the catalogued checkpoint (0 = backbone only)
    hf_class: str = ""  # transformers class built for the count (hf entries)
    hf_config: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def params_m(self) -> float:
        return self.params / 1e6

    @property
    def tokens(self) -> int:
        return (self.resolution // self.patch) ** 2 + self.prefix_tokens

    @property
    def mlp_ratio(self) -> float:
        return self.mlp_hidden / self.embed_dim

    @property
    def timm_base(self) -> str:
        return self.id.split(".", 1)[0] if self.source == "timm" else ""


# --------------------------------------------------------------------------------------------------
# Facts typed in by hand (everything else is computed by --rebuild)

def _t(key, family, id, top1, pretraining, top1_source=TIMM_CSV, **kw) -> dict:
    return dict(key=key, family=family, source="timm", id=id, imagenet_top1=top1,
                top1_source=top1_source if top1 is not None else None, pretraining=pretraining, **kw)


def _h(key, family, id, cls, config, top1, top1_source, pretraining, **kw) -> dict:
    return dict(key=key, family=family, source="hf", id=id, hf_class=cls, hf_config=config,
                imagenet_top1=top1, top1_source=top1_source if top1 is not None else None,
                pretraining=pretraining, **kw)


IN21K_FT = "ImageNet-21k, fine-tuned ImageNet-1k (AugReg)"
SPECS: list[dict[str, Any]] = [
    _t("vit-ti16-224", "vit", "vit_tiny_patch16_224.augreg_in21k_ft_in1k", 75.454, IN21K_FT),
    _t("vit-ti16-384", "vit", "vit_tiny_patch16_384.augreg_in21k_ft_in1k", 78.424, IN21K_FT),
    _t("vit-s16-224", "vit", "vit_small_patch16_224.augreg_in21k_ft_in1k", 81.384, IN21K_FT),
    _t("vit-s16-384", "vit", "vit_small_patch16_384.augreg_in21k_ft_in1k", 83.802, IN21K_FT),
    _t("vit-s16-224-in1k", "vit", "vit_small_patch16_224.augreg_in1k", 78.846,
       "ImageNet-1k only (AugReg)"),
    _t("vit-b16-224", "vit", "vit_base_patch16_224.augreg2_in21k_ft_in1k", 85.096,
       "ImageNet-21k, fine-tuned ImageNet-1k (AugReg, extra fine-tune)"),
    _t("vit-b16-224-augreg", "vit", "vit_base_patch16_224.augreg_in21k_ft_in1k", 84.532, IN21K_FT),
    _t("vit-b16-384", "vit", "vit_base_patch16_384.augreg_in21k_ft_in1k", 85.996, IN21K_FT),
    _t("vit-l16-224", "vit", "vit_large_patch16_224.augreg_in21k_ft_in1k", 85.834, IN21K_FT),
    _t("vit-l16-384", "vit", "vit_large_patch16_384.augreg_in21k_ft_in1k", 87.084, IN21K_FT),
    _t("deit-ti", "deit", "deit_tiny_patch16_224.fb_in1k", 72.172, "ImageNet-1k only (DeiT recipe)"),
    _t("deit-s", "deit", "deit_small_patch16_224.fb_in1k", 79.844, "ImageNet-1k only (DeiT recipe)"),
    _t("deit-b", "deit", "deit_base_patch16_224.fb_in1k", 81.992, "ImageNet-1k only (DeiT recipe)"),
    _t("deit-b-384", "deit", "deit_base_patch16_384.fb_in1k", 83.106, "ImageNet-1k only (DeiT recipe)"),
    _t("deit-ti-dist", "deit", "deit_tiny_distilled_patch16_224.fb_in1k", 74.500,
       "ImageNet-1k only, distilled from a RegNetY-16GF teacher"),
    _t("deit-s-dist", "deit", "deit_small_distilled_patch16_224.fb_in1k", 81.218,
       "ImageNet-1k only, distilled from a RegNetY-16GF teacher"),
    _t("deit-b-dist", "deit", "deit_base_distilled_patch16_224.fb_in1k", 83.386,
       "ImageNet-1k only, distilled from a RegNetY-16GF teacher"),
    _t("swin-t", "swin", "swin_tiny_patch4_window7_224.ms_in1k", 81.376, "ImageNet-1k only"),
    _t("swin-s", "swin", "swin_small_patch4_window7_224.ms_in1k", 83.208, "ImageNet-1k only"),
    _t("swin-b", "swin", "swin_base_patch4_window7_224.ms_in1k", 83.606, "ImageNet-1k only"),
    _t("swin-b-22k", "swin", "swin_base_patch4_window7_224.ms_in22k_ft_in1k", 85.272,
       "ImageNet-22k, fine-tuned ImageNet-1k"),
    _t("beit-b", "beit", "beit_base_patch16_224.in22k_ft_in22k_in1k", 85.212,
       "BEiT self-supervised (ImageNet-22k), fine-tuned 22k then 1k"),
    _t("dinov2-s", "dinov2", "vit_small_patch14_dinov2.lvd142m", 81.1,
       "DINOv2 self-supervised, LVD-142M (distilled from ViT-g)",
       top1_source="DINOv2 paper (Oquab et al. 2023), linear probe on frozen features",
       top1_protocol="linear_probe", notes="backbone only; timm builds it at 518 px"),
    _t("dinov2-b", "dinov2", "vit_base_patch14_dinov2.lvd142m", 84.5,
       "DINOv2 self-supervised, LVD-142M (distilled from ViT-g)",
       top1_source="DINOv2 paper (Oquab et al. 2023), linear probe on frozen features",
       top1_protocol="linear_probe", notes="backbone only; timm builds it at 518 px"),
    _t("eva02-s", "eva02", "eva02_small_patch14_224.mim_in22k", None,
       "EVA-02 masked image modelling on ImageNet-22k (CLIP teacher)", notes="backbone only, no 1k head"),
    _t("eva02-b", "eva02", "eva02_base_patch14_224.mim_in22k", None,
       "EVA-02 masked image modelling on ImageNet-22k (CLIP teacher)", notes="backbone only, no 1k head"),
    _t("eva02-s-336", "eva02", "eva02_small_patch14_336.mim_in22k_ft_in1k", 85.716,
       "EVA-02 MIM on ImageNet-22k, fine-tuned ImageNet-1k"),
    # Hugging Face checkpoints (configs match the hub's config.json; built without network)
    _h("hf-vit-b16-in21k", "vit", "google/vit-base-patch16-224-in21k", "ViTModel",
       {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
        "image_size": 224, "patch_size": 16}, None, None, "ImageNet-21k",
       num_classes=0, notes="backbone with pooler; no ImageNet-1k head"),
    _h("hf-vit-b16", "vit", "google/vit-base-patch16-224", "ViTForImageClassification",
       {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
        "image_size": 224, "patch_size": 16, "num_labels": 1000}, None, None,
       "ImageNet-21k, fine-tuned ImageNet-1k"),
    _h("hf-deit-s", "deit", "facebook/deit-small-patch16-224", "ViTForImageClassification",
       {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "intermediate_size": 1536,
        "image_size": 224, "patch_size": 16, "num_labels": 1000}, 79.8,
       "DeiT paper (Touvron et al. 2021), Table 1", "ImageNet-1k only (DeiT recipe)"),
    _h("hf-swin-t", "swin", "microsoft/swin-tiny-patch4-window7-224", "SwinForImageClassification",
       {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7,
        "image_size": 224, "patch_size": 4, "num_labels": 1000}, 81.3,
       "Swin paper (Liu et al. 2021), Table 1", "ImageNet-1k only"),
    _h("hf-beit-b", "beit", "microsoft/beit-base-patch16-224", "BeitForImageClassification",
       {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "intermediate_size": 3072,
        "image_size": 224, "patch_size": 16, "use_relative_position_bias": True,
        "use_absolute_position_embeddings": False, "use_shared_relative_position_bias": False,
        "layer_scale_init_value": 0.1, "use_mean_pooling": True, "num_labels": 1000}, 85.2,
       "BEiT paper (Bao et al. 2022), ImageNet-22k intermediate fine-tuning, 224 px",
       "BEiT self-supervised (ImageNet-22k), fine-tuned 22k then 1k"),
    _h("hf-dinov2-s", "dinov2", "facebook/dinov2-small", "Dinov2Model",
       {"hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6, "mlp_ratio": 4,
        "image_size": 518, "patch_size": 14, "layerscale_value": 1.0}, 81.1,
       "DINOv2 paper (Oquab et al. 2023), linear probe on frozen features",
       "DINOv2 self-supervised, LVD-142M", num_classes=0, top1_protocol="linear_probe"),
    _h("hf-dinov2-b", "dinov2", "facebook/dinov2-base", "Dinov2Model",
       {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12, "mlp_ratio": 4,
        "image_size": 518, "patch_size": 14, "layerscale_value": 1.0}, 84.5,
       "DINOv2 paper (Oquab et al. 2023), linear probe on frozen features",
       "DINOv2 self-supervised, LVD-142M", num_classes=0, top1_protocol="linear_probe"),
]


# --------------------------------------------------------------------------------------------------
# Reading (no torch)

def from_dict(d: dict[str, Any]) -> ModelInfo:
    known = {f.name for f in fields(ModelInfo)}
    kw = {k: (tuple(v) if k.startswith("stage_") else v) for k, v in d.items() if k in known}
    return ModelInfo(**kw)


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[ModelInfo, ...]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return tuple(from_dict(d) for d in data["models"])


def load_catalog(path: str | Path | None = None) -> list[ModelInfo]:
    """Every catalogued model, in file order. Reads JSON only."""
    return list(_load(str(path or CATALOG_PATH)))


def find(key_or_id: str, catalog: list[ModelInfo] | None = None) -> ModelInfo | None:
    """Look a model up by key, full id, or a timm name without its pretrained tag (first match)."""
    models = catalog if catalog is not None else load_catalog()
    q = key_or_id.strip()
    for m in models:
        if q in (m.key, m.id):
            return m
    ql = q.lower()
    for m in models:
        if ql in (m.key.lower(), m.id.lower()):
            return m
    base = ql.split(".", 1)[0]
    for m in models:
        if m.source == "timm" and m.timm_base == base:
            return m
    return None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--rebuild" in argv:  # builds with torch, so in its own process: this module never imports torch
        return subprocess.call([sys.executable, "-m", "vittui.models.catalog_build"])
    for m in load_catalog():
        top1 = f"{m.imagenet_top1:.1f}" if m.imagenet_top1 is not None else "  -  "
        print(f"{m.key:18s} {m.source:4s} {m.params_m:7.1f}M {m.gflops:7.1f} GFLOPs {m.resolution:4d}px "
              f"top1 {top1}  {m.id}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

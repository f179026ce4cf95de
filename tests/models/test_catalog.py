"""The catalogue is data read without torch, and its computed fields match real builds on meta."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vittui.models.catalog import CATALOG_PATH, SPECS, find, load_catalog


def test_catalog_has_the_families_and_sources():
    models = load_catalog()
    assert len(models) >= 20
    families = {m.family for m in models}
    assert {"vit", "deit", "swin", "beit", "dinov2", "eva02"} <= families
    assert {m.source for m in models} == {"timm", "hf"}
    keys = [m.key for m in models]
    assert len(keys) == len(set(keys))
    for m in models:
        assert m.params > 0 and m.gflops > 0 and abs(m.gmacs * 2 - m.gflops) < 0.01
        assert m.imagenet_top1 is None or (m.top1_source and 60 < m.imagenet_top1 < 95)


def test_file_holds_the_typed_in_facts_of_every_spec():
    """catalog.json is generated: every spec is in it, in order, with its hand-typed facts unchanged."""
    data = json.loads(CATALOG_PATH.read_text())
    assert [d["key"] for d in data["models"]] == [s["key"] for s in SPECS]
    for entry, spec in zip(data["models"], SPECS):
        for fact in ("id", "family", "source", "imagenet_top1", "top1_source", "pretraining"):
            assert entry[fact] == spec[fact], (spec["key"], fact)


def test_find_by_key_id_and_base_name():
    assert find("deit-s").id == "deit_small_patch16_224.fb_in1k"
    assert find("facebook/dinov2-small").key == "hf-dinov2-s"
    assert find("vit_tiny_patch16_224").key == "vit-ti16-224"
    assert find("no-such-model") is None


def test_known_facts():
    vit_b = find("vit-b16-224")
    assert vit_b.params == 86_567_656 and vit_b.embed_dim == 768 and vit_b.depth == 12
    assert abs(vit_b.gmacs - 17.56) < 0.05  # the ViT-B/16 "17.6 GFLOPs" of the papers are multiply-adds
    assert find("swin-t").stage_depths == (2, 2, 6, 2)
    assert find("deit-s-dist").prefix_tokens == 2


def test_loading_does_not_import_torch():
    code = ("import sys; from vittui.models.catalog import load_catalog, find; "
            "from vittui.planning.select import recommend; from vittui.planning import estimate; "
            "load_catalog(); recommend(500, 5, 'high', 8.0, None); "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


def vit_forward_flops(d: int, depth: int, patch: int, res: int, classes: int, prefix: int = 1,
                      heads_out: int = 1) -> int:
    """Matmul FLOPs of a plain ViT's forward pass for one image, 2 per multiply-add, worked out by hand:
    per block and token, qkv (3 d²), proj (d²) and the MLP (2 · 4 d²) make 24 d² FLOPs, and the attention
    scores and the weighted sum 2 T d each make 4 T² d a block; the patch embedding maps 3 p² to d for each
    of the N patches; the head maps d to the classes (two heads when distilled)."""
    n = (res // patch) ** 2
    t = n + prefix
    return depth * (t * 24 * d * d + 4 * t * t * d) + 2 * n * 3 * patch * patch * d + heads_out * 2 * d * classes


# key -> how to build it for real, and its shape as published (timm model cards, the HF config.json)
REAL_BUILDS = {
    "vit-ti16-224": ("timm", "vit_tiny_patch16_224", dict(d=192, depth=12, heads=3, patch=16, res=224)),
    "deit-s": ("timm", "deit_small_patch16_224", dict(d=384, depth=12, heads=6, patch=16, res=224)),
    "deit-s-dist": ("timm", "deit_small_distilled_patch16_224",
                    dict(d=384, depth=12, heads=6, patch=16, res=224, prefix=2, heads_out=2)),
    "hf-deit-s": ("hf", "facebook/deit-small-patch16-224", dict(d=384, depth=12, heads=6, patch=16, res=224)),
}


@pytest.mark.parametrize("key", list(REAL_BUILDS))
def test_catalogue_numbers_match_a_real_build(key):
    """Params counted here on a real timm / transformers build (meta device, no weights) and FLOPs by the
    formula above: neither comes from the catalogue's own counting code."""
    import torch

    source, name, shape = REAL_BUILDS[key]
    with torch.device("meta"):
        if source == "timm":
            import timm

            model = timm.create_model(name, pretrained=False)
        else:
            from transformers import ViTConfig, ViTForImageClassification

            model = ViTForImageClassification(ViTConfig(
                hidden_size=shape["d"], num_hidden_layers=shape["depth"], num_attention_heads=shape["heads"],
                intermediate_size=4 * shape["d"], image_size=shape["res"], patch_size=shape["patch"],
                num_labels=1000))
    params = sum(p.numel() for p in model.parameters())
    info = find(key)
    assert info.params == params
    assert (info.embed_dim, info.depth, info.heads, info.patch, info.resolution) == (
        shape["d"], shape["depth"], shape["heads"], shape["patch"], shape["res"])
    flops = vit_forward_flops(shape["d"], shape["depth"], shape["patch"], shape["res"], 1000,
                              shape.get("prefix", 1), shape.get("heads_out", 1))
    assert info.gflops == pytest.approx(flops / 1e9, abs=6e-4)  # stored to 3 decimals
    assert info.gmacs == pytest.approx(flops / 2e9, abs=6e-4)


def test_hand_flops_formula_gives_the_published_vit_b_number():
    # ViT-B/16 at 224: the "17.6 GFLOPs" of the papers are multiply-adds
    assert vit_forward_flops(768, 12, 16, 224, 1000) / 2e9 == pytest.approx(17.56, abs=0.01)


@pytest.mark.parametrize("key", ["vit-ti16-224", "deit-s-dist", "vit-s16-384", "hf-deit-s"])
def test_estimator_dims_reproduce_params_and_flops(key):
    """The analytic counts the estimator uses agree with what was counted on meta."""
    from dataclasses import replace

    from vittui.planning.dims import ModelDims

    info = find(key)
    dims = replace(ModelDims.from_info(info), params_known=None)
    assert dims.params(info.num_classes) == info.params
    assert dims.forward_flops(1, info.num_classes) == pytest.approx(info.gflops * 1e9, rel=2e-3)

"""The catalogue is data read without torch, and its computed fields match real builds on meta."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from vittui.models.catalog import CATALOG_PATH, SPECS, find, load_catalog
from vittui.models.catalog_build import compute_entry


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


def test_file_matches_specs():
    data = json.loads(CATALOG_PATH.read_text())
    assert [d["key"] for d in data["models"]] == [s["key"] for s in SPECS]


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


@pytest.mark.parametrize("key", ["vit-ti16-224", "deit-s", "hf-deit-s"])
def test_rebuild_on_meta_matches_catalogue(key):
    spec = next(s for s in SPECS if s["key"] == key)
    entry = compute_entry(spec)
    info = find(key)
    assert entry["params"] == info.params
    assert entry["gflops"] == pytest.approx(info.gflops, rel=1e-6)
    assert (entry["embed_dim"], entry["depth"], entry["heads"], entry["patch"]) == (
        info.embed_dim, info.depth, info.heads, info.patch)


@pytest.mark.parametrize("key", ["vit-ti16-224", "deit-s-dist", "vit-s16-384", "hf-deit-s"])
def test_estimator_dims_reproduce_params_and_flops(key):
    """The analytic counts the estimator uses agree with what was counted on meta."""
    from dataclasses import replace

    from vittui.planning.dims import ModelDims

    info = find(key)
    dims = replace(ModelDims.from_info(info), params_known=None)
    assert dims.params(info.num_classes) == info.params
    assert dims.forward_flops(1, info.num_classes) == pytest.approx(info.gflops * 1e9, rel=2e-3)

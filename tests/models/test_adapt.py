from __future__ import annotations

import re
from dataclasses import replace

import pytest
import torch

from tiny import TINY_TIMM

from vittui.models.adapt import ParamReport, apply_adaptation, head_names, lora_targets, param_report
from vittui.models.build import build_model
from vittui.models.structure import is_hf, transformer_blocks, unwrap
from vittui.models.weights import save_pretrained_local
from vittui.models.errors import ModelError
from vittui.recipe import AdaptSection, ModelSection

DEPTH, DIM, R = 3, 64, 4
TINY = {**TINY_TIMM, "depth": DEPTH, "embed_dim": DIM}
TIMM = ModelSection(name="vit_tiny_patch16_224", **TINY)
HF_VIT = ModelSection(name="google/vit-base-patch16-224", **TINY)
X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))

# How each family spells its parts, written out here independently of vittui's own discovery.
LAYOUT = {
    "timm": dict(section=TIMM, block="blocks.{}.", embed=("cls_token", "pos_embed", "patch_embed."),
                 norm=("norm.",), head="head", lora=("qkv",), lora_out=3 * DIM),
    "hf": dict(section=HF_VIT, block="hf.vit.layers.{}.", embed=("hf.vit.embeddings.",),
               norm=("hf.vit.layernorm.",), head="hf.classifier", lora=("q_proj", "v_proj"), lora_out=DIM),
}


def names_of(model):
    return [n for n, _ in model.named_parameters()]


def trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def part(name, lay):
    """'embed', 'block<i>', 'norm', 'head' from the layout table."""
    if name.startswith(lay["head"] + "."):
        return "head"
    if name.startswith(lay["norm"]):
        return "norm"
    for i in range(DEPTH):
        if name.startswith(lay["block"].format(i)):
            return f"block{i}"
    assert name.startswith(lay["embed"]), name
    return "embed"


def expected(model, lay, parts):
    got = {n for n in names_of(model) if part(n, lay) in parts}
    assert got  # the layout table still describes the model
    return got


@pytest.fixture(params=["timm", "hf"])
def family(request):
    lay = LAYOUT[request.param]
    return request.param, lay, build_model(lay["section"], 10)


def test_parts_cover_the_model(family):
    _, lay, model = family
    assert {part(n, lay) for n in names_of(model)} == {"embed", "norm", "head"} | {f"block{i}" for i in range(DEPTH)}
    assert len(transformer_blocks(model)) == DEPTH


@pytest.mark.parametrize(
    "freeze,k,parts",
    [
        ("none", 0, {"embed", "block0", "block1", "block2", "norm", "head"}),
        ("linear_probe", 0, {"head"}),
        ("first_n", 1, {"block1", "block2", "norm", "head"}),
        ("first_n", 2, {"block2", "norm", "head"}),
        ("all_but_last_n", 1, {"block2", "norm", "head"}),
        ("all_but_last_n", 2, {"block1", "block2", "norm", "head"}),
    ],
)
def test_freezing_strategies(family, freeze, k, parts):
    _, lay, model = family
    out, report = apply_adaptation(model, AdaptSection(freeze=freeze, freeze_blocks=k))
    assert out is model
    assert trainable(out) == expected(model, lay, parts)
    n_trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report.trainable == n_trainable and report.total == sum(p.numel() for p in model.parameters())
    assert report.frozen_blocks == DEPTH - len([p for p in parts if p.startswith("block")])
    assert not report.lora
    # an optimizer over requires_grad params trains exactly these
    out(X).sum().backward()
    assert {n for n, p in out.named_parameters() if p.grad is not None} == trainable(out)


def test_freeze_blocks_out_of_range(family):
    _, _, model = family
    with pytest.raises(ModelError, match="freeze_blocks"):
        apply_adaptation(model, AdaptSection(freeze="first_n", freeze_blocks=DEPTH + 1))


def test_head_names_and_lora_targets(family):
    kind, lay, model = family
    assert head_names(model) == [lay["head"]]
    assert lora_targets(model) == list(lay["lora"])
    assert is_hf(model) == (kind == "hf")


@pytest.mark.parametrize("freeze,k,blocks", [("none", 0, range(DEPTH)), ("first_n", 2, [2]),
                                              ("all_but_last_n", 2, [1, 2])])
def test_lora_trainable_exactly_adapters_and_head(family, freeze, k, blocks):
    kind, lay, model = family
    head_numel = sum(p.numel() for n, p in model.named_parameters() if part(n, lay) == "head")
    wrapped, report = apply_adaptation(model, AdaptSection(freeze=freeze, freeze_blocks=k, lora=True, lora_r=R))
    pre = "base_model.model."
    want = {f"{pre}{lay['head']}.modules_to_save.default.{w}" for w in ("weight", "bias")}
    for i in blocks:
        for t in lay["lora"]:
            mod = {"timm": f"blocks.{i}.attn.{t}", "hf": f"hf.vit.layers.{i}.attention.{t}"}[kind]
            want |= {f"{pre}{mod}.lora_A.default.weight", f"{pre}{mod}.lora_B.default.weight"}
    assert trainable(wrapped) == want
    per_module = R * (DIM + lay["lora_out"])
    assert report.trainable == len(blocks) * len(lay["lora"]) * per_module + head_numel
    assert report.lora and report.frozen_blocks == DEPTH - len(blocks)
    out = wrapped(X)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    out.sum().backward()
    assert {n for n, p in wrapped.named_parameters() if p.grad is not None} == want
    # the helpers see through the peft wrapper
    assert len(transformer_blocks(wrapped)) == DEPTH and is_hf(wrapped) == (kind == "hf")
    assert head_names(wrapped) == [pre + lay["head"]]


def test_lora_custom_targets_and_errors():
    model = build_model(TIMM, 10)
    wrapped, report = apply_adaptation(model, AdaptSection(lora=True, lora_r=R, lora_targets=("fc1",)))
    lora = {n for n in trainable(wrapped) if "lora_" in n}
    assert len(lora) == 2 * DEPTH and all(".mlp.fc1." in n for n in lora)
    with pytest.raises(ModelError, match="lora_targets"):
        apply_adaptation(build_model(TIMM, 10), AdaptSection(lora=True, lora_targets=("nope",)))
    with pytest.raises(ModelError, match="linear_probe"):
        apply_adaptation(build_model(TIMM, 10), AdaptSection(lora=True, freeze="linear_probe"))


def test_lora_model_saves_merged(tmp_path):
    model = build_model(TIMM, 10)
    wrapped, _ = apply_adaptation(model, AdaptSection(lora=True, lora_r=R))
    with torch.no_grad():  # make the adapters do something
        for n, p in wrapped.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    wrapped.eval()
    save_pretrained_local(wrapped, tmp_path / "merged")
    restored = build_model(replace(TIMM, pretrained=True, weights=str(tmp_path / "merged")), 10).eval()
    with torch.no_grad():
        torch.testing.assert_close(restored(X), wrapped(X), atol=1e-5, rtol=0)
    assert type(unwrap(wrapped)).__name__ == "VisionTransformer"


def test_param_report_text():
    r = ParamReport(total=1_234_567, trainable=12_345, frozen_blocks=2, lora=False)
    assert str(r) == "trainable 12,345 / 1,234,567 (1.0%)"
    assert r.fraction == pytest.approx(12_345 / 1_234_567)
    model = build_model(TIMM, 10)
    rep = param_report(model)
    assert rep.trainable == rep.total and rep.fraction == 1.0 and rep.frozen_blocks == 0
    assert re.fullmatch(r"trainable [\d,]+ / [\d,]+ \(100\.0%\)", str(rep))

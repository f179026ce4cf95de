
import pytest
import torch

from vittui.analysis.gradients import branch_of, find_blocks, flow_flags, grad_flow
from vittui.runs.events import GradFlow, decode


def tiny_timm(depth=2):
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=depth, embed_dim=64,
                             num_heads=2, num_classes=10)


def tiny_hf():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, num_hidden_layers=2, hidden_size=64,
                                               num_attention_heads=2, intermediate_size=128, num_labels=10))


def ref_norm(params):
    grads = [p.grad.flatten() for p in params if p.grad is not None]
    return float(torch.cat(grads).norm()) if grads else 0.0


def backward(model, out_fn=lambda o: o):
    x = torch.randn(4, 3, 32, 32)
    y = torch.randint(0, 10, (4,))
    loss = torch.nn.functional.cross_entropy(out_fn(model(x)), y)
    loss.backward()


def test_grad_flow_timm_matches_reference():
    model = tiny_timm()
    backward(model)
    ev = grad_flow(model, list(model.blocks), step=7)
    assert isinstance(ev, GradFlow) and ev.step == 7
    assert ev.names == ["block0", "block1"]
    for i, blk in enumerate(model.blocks):
        assert ev.attn[i] == pytest.approx(ref_norm(blk.attn.parameters()), rel=1e-5)
        assert ev.mlp[i] == pytest.approx(ref_norm(blk.mlp.parameters()), rel=1e-5)
        assert ev.attn[i] > 0 and ev.mlp[i] > 0
    embed = [model.patch_embed.proj.weight, model.patch_embed.proj.bias, model.cls_token, model.pos_embed]
    assert ev.other["embed"] == pytest.approx(ref_norm(embed), rel=1e-5)
    assert ev.other["head"] == pytest.approx(ref_norm(model.head.parameters()), rel=1e-5)
    assert ev.other["total"] == pytest.approx(ref_norm(model.parameters()), rel=1e-5)
    assert decode(ev.to_json()).attn == ev.attn


def test_grad_flow_discovers_blocks_and_hf_branches():
    model = tiny_hf()
    backward(model, lambda o: o.logits)
    ev = grad_flow(model)
    assert ev.names == ["vit.layers.0", "vit.layers.1"]
    for i, layer in enumerate(model.vit.layers):
        assert ev.attn[i] == pytest.approx(ref_norm(layer.attention.parameters()), rel=1e-5)
        assert ev.mlp[i] == pytest.approx(ref_norm(layer.mlp.parameters()), rel=1e-5)
    assert ev.other["head"] == pytest.approx(ref_norm(model.classifier.parameters()), rel=1e-5)
    assert ev.other["embed"] == pytest.approx(ref_norm(model.vit.embeddings.parameters()), rel=1e-5)

    from vittui.models.hf import HFClassifier

    assert [n for n, _ in find_blocks(HFClassifier(model))] == ["vit.layers.0", "vit.layers.1"]


def test_branch_names():
    assert branch_of("attn.qkv.weight") == "attn"
    assert branch_of("attn.qkv.lora_A.default.weight") == "attn"
    assert branch_of("attention.output.dense.weight") == "attn"  # transformers 4 naming
    assert branch_of("intermediate.dense.weight") == "mlp"
    assert branch_of("output.dense.weight") == "mlp"
    assert branch_of("mlp.fc1.weight") == "mlp"
    assert branch_of("norm1.weight") == "other"
    assert branch_of("ls1.gamma") == "other"


def test_flags_vanishing_exploding_and_frozen():
    names = [f"b{i}" for i in range(6)]
    flags = flow_flags(names, [1.0, 1.0, 1.0, 1e-4, 1e3, None])
    assert len(flags) == 2
    assert flags[0].startswith("b3: vanishing")
    assert flags[1].startswith("b4: exploding")
    assert flow_flags(names[:2], [None, None]) == []
    assert flow_flags(names[:3], [1.0, 2.0, 0.015]) == []  # median 1: 0.015 is above 1/100
    assert flow_flags(names[:3], [1.0, 2.0, 0.009])[0].startswith("b2: vanishing")


def test_frozen_block_reports_zero_and_no_flag():
    model = tiny_timm(depth=3)
    for p in model.blocks[0].parameters():
        p.requires_grad_(False)
    backward(model)
    ev = grad_flow(model)
    assert ev.names == ["blocks.0", "blocks.1", "blocks.2"]
    assert ev.attn[0] == 0.0 and ev.mlp[0] == 0.0
    assert not any(f.startswith("blocks.0") for f in ev.flags)


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("totals, flagged", [
    ([NAN] * 12, list(range(12))),                   # every block NaN: the median is NaN
    ([1.0, NAN, 1.0, NAN], [1, 3]),                  # half NaN
    ([1.0, INF], [1]),                               # 1 of 2 inf: the median is inf
    ([INF, 1.0, INF, 1.0], [0, 2]),                  # 2 of 4 inf
    ([1.0, 1.0, -INF], [2]),
])
def test_non_finite_blocks_are_flagged_whatever_the_median(totals, flagged):
    names = [f"blocks.{i}" for i in range(len(totals))]
    flags = flow_flags(names, totals)
    hit = [i for i in range(len(totals)) if any(f.startswith(f"blocks.{i}: non-finite gradient in block {i}")
                                                for f in flags)]
    assert hit == flagged
    assert not any("vanishing" in f or "exploding" in f for f in flags)  # the finite ones are all equal


def test_non_finite_flag_names_the_branch_and_finite_blocks_still_compare():
    names = [f"blocks.{i}" for i in range(5)]
    flags = flow_flags(names, [1.0, 1.0, NAN, 1.0, 1e3], attn=[0.7, 0.7, NAN, 0.7, 1e3], mlp=[0.7, 0.7, 0.5, 0.7, 1])
    assert flags[0].startswith("blocks.2: non-finite gradient in block 2 attn (")
    assert flags[1].startswith("blocks.4: exploding")


def test_grad_flow_flags_a_nan_injected_block_and_says_when_it_measured():
    model = tiny_timm(depth=3)
    backward(model)
    model.blocks[1].attn.qkv.weight.grad[0, 0] = float("nan")
    g = grad_flow(model, step=5, clip_grad=1.0)
    assert any(f.startswith("blocks.1: non-finite gradient in block 1 attn") for f in g.flags)
    assert g.measured == "after clipping to max norm 1"
    assert grad_flow(model, before_clip=True).measured == "before clipping"
    assert grad_flow(model, clip_grad=0.0).measured == "no clipping"
    assert "not stated" in grad_flow(model).measured
    back = decode(json_line(g))  # NaN norms survive events.jsonl
    assert back.flags == g.flags and back.measured == g.measured


def json_line(event) -> str:
    return event.to_json()  # what EventWriter writes to events.jsonl

"""The attention probe on every model family the catalogue offers, built tiny from its config (no weights):
the loop's call (`vittui.analysis.attention.probe` on what `build_model` returns, HF wrapper included)
against attention recomputed here by hand from each block's own q and k projections (float64), to 1e-6.

Checked per family: the prefix-token count (from the embeddings: CLS, distillation, registers), the patch
grid, rows summing to 1, the map's query (CLS row, or the mean of patch queries without a CLS token) and the
rollout, both from the probe's tensor and from the saved probe file the dashboard reads."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from tiny import TINY_TIMM

from vittui.analysis import attention as A
from vittui.analysis.attention_stats import QUERY_CLS, QUERY_PATCH_MEAN
from vittui.models.build import build_model
from vittui.models.hf import HFClassifier
from vittui.recipe import ModelSection

TINY = TINY_TIMM


# ---------------------------------------------------------------------------------------------- references

def _attention_modules(net) -> list:
    if hasattr(net, "config"):  # transformers: each self-attention has its own q_proj / k_proj
        return [m for m in net.modules() if hasattr(m, "q_proj") and hasattr(m, "k_proj")]
    return [m for m in net.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")]


def _timm_qk(mod, x: torch.Tensor, kwargs: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """q (scaled), k and the additive bias of one timm attention module, float64, from its own weights."""
    b, n, _ = x.shape
    w = mod.qkv.weight.double()
    if getattr(mod, "q_bias", None) is not None:  # BEiT / EVA: separate q and v biases, k bias zero
        bias = torch.cat((mod.q_bias, mod.k_bias, mod.v_bias)).double()
    else:
        bias = None if mod.qkv.bias is None else mod.qkv.bias.double()
    qkv = torch.nn.functional.linear(x, w, bias).reshape(b, n, 3, mod.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    if hasattr(mod, "q_norm"):
        q, k = copy.deepcopy(mod.q_norm).double()(q), copy.deepcopy(mod.k_norm).double()(k)
    rope = kwargs.get("rope")
    if rope is not None:  # EVA-02: rotary embedding on the patch tokens only
        from timm.layers import apply_rot_embed_cat

        npt = mod.num_prefix_tokens
        half = getattr(mod, "rotate_half", False)
        rope = rope.double()
        q = torch.cat([q[:, :, :npt], apply_rot_embed_cat(q[:, :, npt:], rope, half=half)], dim=2)
        k = torch.cat([k[:, :, :npt], apply_rot_embed_cat(k[:, :, npt:], rope, half=half)], dim=2)
    add = None
    if getattr(mod, "relative_position_bias_table", None) is not None:  # BEiT
        add = mod._get_rel_pos_bias().double()
    if kwargs.get("shared_rel_pos_bias") is not None:
        add = kwargs["shared_rel_pos_bias"].double() + (0 if add is None else add)
    return q * mod.scale, k, add


def _hf_qk(mod, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
    b, n, _ = x.shape

    def proj(lin):
        return torch.nn.functional.linear(x, lin.weight.double(), None if lin.bias is None else lin.bias.double()).reshape(
            b, n, -1, mod.head_dim).transpose(1, 2)

    return proj(mod.q_proj) * mod.scaling, proj(mod.k_proj), None


def reference_attention(model, images: torch.Tensor) -> torch.Tensor:
    """softmax(q kᵀ / √d + bias) per block, recomputed in float64 from each attention module's input (captured
    by a hook in an ordinary eval forward) and its own projection weights: (L, B, H, T, T)."""
    net = A.unwrap(model)
    mods = _attention_modules(net)
    assert mods, f"no attention modules found in {type(net).__name__}"
    inputs: dict[int, tuple] = {}

    def hook(mod, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        inputs[id(mod)] = (x.detach().double(), dict(kwargs))

    handles = [m.register_forward_pre_hook(hook, with_kwargs=True) for m in mods]
    try:
        model.eval()
        with torch.no_grad():
            model(images)
    finally:
        for h in handles:
            h.remove()
    maps = []
    for mod in mods:  # under no_grad: the reference needs no autograd graph
        x, kwargs = inputs[id(mod)]
        q, k, add = _hf_qk(mod, x) if hasattr(net, "config") else _timm_qk(mod, x, kwargs)
        logits = q @ k.transpose(-2, -1)
        if add is not None:
            logits = logits + add
        maps.append(torch.softmax(logits, dim=-1))
    return torch.stack(maps).detach()


def reference_rollout(attn: np.ndarray, prefix: int, grid: tuple[int, int], query: str) -> np.ndarray:
    """Abnar & Zuidema, image by image: heads mean, (A + I) / 2 row-normalised, multiplied first to last;
    then the CLS row, or the mean of the patch rows, over the patches: (B, gh, gw)."""
    out = []
    for b in range(attn.shape[1]):
        joint = np.eye(attn.shape[-1])
        for layer in attn[:, b]:
            a = layer.mean(axis=0) + np.eye(attn.shape[-1])
            a = a / a.sum(axis=1, keepdims=True)
            joint = a @ joint
        row = joint[0, prefix:] if query == QUERY_CLS else joint[prefix:, prefix:].mean(axis=0)
        out.append(row.reshape(grid))
    return np.stack(out)


# ---------------------------------------------------------------------------------------------- families

def _timm(name: str, **extra):
    def build():
        if not extra:  # through the recipe, as the loop builds it
            return build_model(ModelSection(name=name, source="timm", **TINY), 3)
        import timm

        return timm.create_model(name, pretrained=False, num_classes=3, **TINY, **extra)
    return build


def _hf_recipe(name: str):
    return lambda: build_model(ModelSection(name=name, source="hf", **TINY), 3)


def _hf_direct(config_cls: str, model_cls: str, **extra):
    def build():
        import transformers as tf

        cfg = getattr(tf, config_cls)(image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, intermediate_size=128, num_labels=3, **extra)
        return HFClassifier(getattr(tf, model_cls)._from_config(cfg, attn_implementation="sdpa"))
    return build


# name: (builder, prefix tokens, has CLS)
FAMILIES = {
    "timm-vit": (_timm("vit_tiny_patch16_224"), 1, True),
    "timm-deit-distilled": (_timm("deit_tiny_distilled_patch16_224"), 2, True),
    "timm-vit-reg4-gap": (_timm("vit_medium_patch16_reg4_gap_256"), 4, False),
    "timm-vit-gap": (_timm("vit_tiny_patch16_224", class_token=False, global_pool="avg"), 0, False),
    "timm-dinov2": (_timm("vit_small_patch14_dinov2"), 1, True),
    "timm-dinov2-reg4": (_timm("vit_small_patch14_reg4_dinov2"), 5, True),
    "timm-beit": (_timm("beit_base_patch16_224"), 1, True),
    "timm-eva02": (_timm("eva02_tiny_patch14_224"), 1, True),
    "hf-vit": (_hf_recipe("google/vit-base-patch16-224"), 1, True),
    "hf-deit-distilled": (_hf_recipe("facebook/deit-tiny-distilled-patch16-224"), 2, True),
    "hf-deit-with-teacher": (_hf_direct("DeiTConfig", "DeiTForImageClassificationWithTeacher"), 2, True),
    "hf-beit": (_hf_recipe("microsoft/beit-base-patch16-224"), 1, True),
    "hf-dinov2": (_hf_recipe("facebook/dinov2-small"), 1, True),
    "hf-dinov2-registers": (_hf_direct("Dinov2WithRegistersConfig", "Dinov2WithRegistersForImageClassification",
                                       num_register_tokens=4), 5, True),
}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def check_probe(model, images: torch.Tensor, prefix: int, has_cls: bool, tmp_path) -> None:
    from vittui.ui import probeview

    torch.manual_seed(0)
    attn, summary, event = A.probe(model, images, tmp_path / "attention", step=7)
    ref = reference_attention(model, images)
    grid = (4, 4)
    query = QUERY_CLS if has_cls else QUERY_PATCH_MEAN
    assert A.num_prefix_tokens(model) == prefix
    assert attn.shape == ref.shape == (2, 2, 2, prefix + 16, prefix + 16)
    assert torch.allclose(attn.double(), ref, atol=1e-6, rtol=0), float((attn.double() - ref).abs().max())
    assert torch.allclose(attn.sum(-1), torch.ones(()), atol=1e-6)
    assert A.geometry(model, images.shape, attn.shape[-1]) == (grid, (8, 8), prefix)
    assert event is not None and event.query == query
    assert all(math.isfinite(v) for row in summary.entropy for v in row)
    # the probe file, as the dashboard loads it (float16 storage: 1e-3)
    loaded = probeview.load(tmp_path, event.path)
    assert (loaded.grid, loaded.prefix, loaded.query) == (grid, prefix, query)
    want = reference_rollout(ref.numpy(), prefix, grid, query)
    from vittui.analysis.attention_stats import rollout_map

    np.testing.assert_allclose(rollout_map(attn, prefix, grid, query=query), want, atol=1e-6, rtol=0)
    np.testing.assert_allclose(loaded.rollout, want, atol=2e-3, rtol=0)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_probe_matches_hand_recomputed_attention(family, images, tmp_path):
    build, prefix, has_cls = FAMILIES[family]
    check_probe(build(), images, prefix, has_cls, tmp_path)


def test_hf_model_at_non_native_size_probes_with_interpolated_positions(images, tmp_path):
    """A pretrained HF ViT saved at 64 px, fine-tuned at 32 px: `build_model` wraps it with
    interpolate_pos_encoding=True and the probe must call it the same way."""
    import transformers as tf

    folder = tmp_path / "vit64"
    cfg = tf.ViTConfig(image_size=64, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=128, num_labels=3)
    tf.ViTForImageClassification(cfg).save_pretrained(folder)
    model = build_model(ModelSection(name=str(folder), weights=str(folder), pretrained=True, source="hf",
                                     img_size=32), 3)
    assert isinstance(model, HFClassifier) and model.interpolate_pos_encoding
    check_probe(model, images, 1, True, tmp_path)


def test_swin_says_windowed_attention_is_not_available(images):
    import timm

    model = timm.create_model("swin_tiny_patch4_window7_224", pretrained=False, img_size=32, patch_size=4,
                              depths=(2, 2), embed_dim=32, num_heads=(2, 4), window_size=4, num_classes=3)
    with pytest.raises(A.ProbeUnavailable) as info:
        A.probe(model, images)
    line = A.probe_off_message(info.value)
    assert line.startswith(A.PROBE_OFF_PREFIX)
    assert "not available for windowed attention (SwinTransformer)" in line
    assert "ProbeUnavailable" not in line  # a plain sentence for the log and the pane


def test_hf_swin_says_windowed_attention_is_not_available(images):
    import transformers as tf

    cfg = tf.SwinConfig(image_size=32, patch_size=4, embed_dim=32, depths=[2, 2], num_heads=[2, 4],
                        window_size=4, num_labels=3)
    model = HFClassifier(tf.SwinForImageClassification(cfg))
    with pytest.raises(A.ProbeUnavailable, match="windowed attention"):
        A.extract_attention(model, images)


def test_other_failures_keep_their_type_in_the_off_line():
    assert A.probe_off_message(RuntimeError("boom")) == "attention probe off: RuntimeError: boom"

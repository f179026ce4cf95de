from __future__ import annotations

import json
import socket
from dataclasses import replace

import pytest
import torch
from torch import nn

from tiny import TINY_TIMM

from vittui.models.build import build_model
from vittui.models.checkpointing import set_grad_checkpointing
from vittui.models.errors import ModelError
from vittui.models.hf import HFClassifier
from vittui.models.resolve import resolve_source
from vittui.models.structure import block_index_map, block_index_of, is_hf, transformer_blocks, unwrap
from vittui.models.weights import load_report, save_pretrained_local

from vittui.recipe import ModelSection

TINY = TINY_TIMM
TIMM = ModelSection(name="vit_tiny_patch16_224", **TINY)
HF_VIT = ModelSection(name="google/vit-base-patch16-224", **TINY)
HF_DEIT = ModelSection(name="facebook/deit-tiny-patch16-224", **TINY)

X = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


@pytest.fixture
def network_attempts(monkeypatch) -> list:
    """Every attempt to open a connection or resolve a name, refused and recorded: "offline" means none."""
    attempts: list = []

    def refuse(name):
        def call(*args, **kwargs):
            attempts.append((name, args[1:] if name == "connect" else args))
            raise OSError(f"network use refused by the test ({name})")
        return call

    monkeypatch.setattr(socket.socket, "connect", refuse("connect"))
    monkeypatch.setattr(socket.socket, "connect_ex", refuse("connect"))
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    return attempts


def test_timm_tiny_from_overrides():
    model = build_model(TIMM, 10, drop_path=0.1, dropout=0.2)
    assert not is_hf(model)
    assert model.embed_dim == 64 and len(model.blocks) == 2
    assert model.patch_embed.patch_size == (8, 8)
    assert model.pos_embed.shape[1] == 1 + (32 // 8) ** 2
    assert model.blocks[1].drop_path1.drop_prob == pytest.approx(0.1)
    assert model.head_drop.p == pytest.approx(0.2)
    out = model(X)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    assert load_report(model) is None


@pytest.mark.parametrize("section,cfg_name", [(HF_VIT, "ViTConfig"), (HF_DEIT, "DeiTConfig")])
def test_hf_tiny_from_config_offline(section, cfg_name, network_attempts):
    model = build_model(section, 7, dropout=0.1)
    assert network_attempts == []  # built from a config written here: nothing waits on the network
    assert isinstance(model, HFClassifier) and is_hf(model)
    cfg = model.hf.config
    assert type(cfg).__name__ == cfg_name
    assert (cfg.image_size, cfg.patch_size, cfg.num_hidden_layers, cfg.hidden_size) == (32, 8, 2, 64)
    assert cfg.num_attention_heads == 2 and cfg.intermediate_size == 4 * 64  # ratio kept
    assert cfg.hidden_dropout_prob == pytest.approx(0.1)
    assert cfg._attn_implementation == "sdpa"
    out = model(X)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 7)


def test_hf_mlp_ratio_and_drop_path_where_supported():
    model = build_model(replace(HF_VIT, name="facebook/dinov2-small", mlp_ratio=2.0), 3, drop_path=0.1)
    cfg = model.hf.config
    assert type(cfg).__name__ == "Dinov2Config" and cfg.mlp_ratio == 2.0 and cfg.drop_path_rate == 0.1
    assert model(X).shape == (2, 3)


def test_hf_attentions_eager_for_one_call():
    model = build_model(HF_VIT, 4).eval()
    logits, attn = model.forward_with_attentions(X)
    assert logits.shape == (2, 4)
    assert len(attn) == 2 and attn[0].shape == (2, 2, 17, 17)
    assert torch.allclose(attn[0].sum(-1), torch.ones(2, 2, 17), atol=1e-5)
    assert model.hf.config._attn_implementation == "sdpa"
    torch.testing.assert_close(logits, model(X), atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "name,source,expected",
    [
        ("vit_tiny_patch16_224", "auto", "timm"),
        ("vit_base_patch16_224.augreg2_in21k_ft_in1k", "auto", "timm"),
        ("swin_tiny_patch4_window7_224", "auto", "timm"),
        ("timm/vit_base_patch16_224.augreg_in21k", "auto", "timm"),
        ("hf-hub:timm/vit_base_patch16_224.augreg_in21k", "auto", "timm"),
        ("google/vit-base-patch16-224", "auto", "hf"),
        ("facebook/deit-tiny-patch16-224", "auto", "hf"),
        ("some-unknown-model", "auto", "hf"),
        ("google/vit-base-patch16-224", "timm", "timm"),
        ("vit_tiny_patch16_224", "hf", "hf"),
    ],
)
def test_resolve_source_names(name, source, expected):
    assert resolve_source(name, source) == expected


def test_resolve_source_local_folders(tmp_path):
    timm_dir, hf_dir, bare, empty = (tmp_path / n for n in ("timm", "hf", "bare", "empty"))
    for d in (timm_dir, hf_dir, bare, empty):
        d.mkdir()
    (timm_dir / "config.json").write_text(json.dumps({"architecture": "vit_tiny_patch16_224"}))
    (hf_dir / "config.json").write_text(json.dumps({"architectures": ["ViTForImageClassification"],
                                                     "model_type": "vit"}))
    (bare / "model.safetensors").write_bytes(b"")
    assert resolve_source(str(timm_dir), "auto") == "timm"
    assert resolve_source(str(hf_dir), "auto") == "hf"
    assert resolve_source(str(bare), "auto") == "timm"
    with pytest.raises(ModelError, match="config.json"):
        resolve_source(str(empty), "auto")
    with pytest.raises(ModelError, match="no such folder"):
        resolve_source(str(tmp_path / "missing" / "model"), "auto")
    with pytest.raises(ModelError, match="model.source"):
        resolve_source("vit_tiny_patch16_224", "keras")


def _eval_out(model):
    model.eval()
    with torch.no_grad():
        return model(X)


def test_timm_round_trip_local_folder(tmp_path):
    model = build_model(TIMM, 10)
    save_pretrained_local(model, tmp_path / "w")
    assert {p.name for p in (tmp_path / "w").iterdir()} >= {"model.safetensors", "config.json"}

    same = build_model(replace(TIMM, pretrained=True, weights=str(tmp_path / "w")), 10)
    torch.testing.assert_close(_eval_out(same), _eval_out(model), atol=1e-6, rtol=0)
    rep = load_report(same)
    assert rep["skipped"] == [] and rep["missing"] == [] and rep["loaded"] == len(model.state_dict())

    # the folder as model.name: architecture and sizes come from its config.json
    by_name = build_model(replace(TIMM, name=str(tmp_path / "w"), pretrained=True, patch_size=None, depth=None,
                                  embed_dim=None, num_heads=None), 10)
    torch.testing.assert_close(_eval_out(by_name), _eval_out(model), atol=1e-6, rtol=0)

    # another number of classes: everything but the head is loaded, the head is new
    other = build_model(replace(TIMM, pretrained=True, weights=str(tmp_path / "w")), 5)
    sd, osd = model.state_dict(), other.state_dict()
    for k in sd:
        if k.startswith("head."):
            assert osd[k].shape[0] == 5
        else:
            torch.testing.assert_close(osd[k], sd[k], atol=1e-6, rtol=0)
    assert {s[0] for s in load_report(other)["skipped"]} == {"head.weight", "head.bias"}
    with torch.no_grad():
        feats = other.forward_head(other.forward_features(X), pre_logits=True)
        ref = model.forward_head(model.forward_features(X), pre_logits=True)
    torch.testing.assert_close(feats, ref, atol=1e-6, rtol=0)


def test_timm_weights_file_and_mismatch(tmp_path):
    model = build_model(TIMM, 10)
    save_pretrained_local(model, tmp_path / "w")
    same = build_model(replace(TIMM, pretrained=True, weights=str(tmp_path / "w" / "model.safetensors")), 10)
    torch.testing.assert_close(_eval_out(same), _eval_out(model), atol=1e-6, rtol=0)
    with pytest.raises(ModelError, match="does not exist"):
        build_model(replace(TIMM, weights=str(tmp_path / "nope")), 10)
    from safetensors.torch import save_file

    save_file({"unrelated": torch.zeros(3)}, str(tmp_path / "junk.safetensors"))
    with pytest.raises(ModelError, match="fit this model"):
        build_model(replace(TIMM, weights=str(tmp_path / "junk.safetensors")), 10)


def test_hf_round_trip_local_folder(tmp_path):
    model = build_model(HF_VIT, 10)
    save_pretrained_local(model, tmp_path / "w")
    assert (tmp_path / "w" / "config.json").is_file()
    same = build_model(replace(HF_VIT, pretrained=True, weights=str(tmp_path / "w")), 10)
    assert isinstance(same, HFClassifier)
    torch.testing.assert_close(_eval_out(same), _eval_out(model), atol=1e-6, rtol=0)
    # the folder as model.name is a transformers folder too
    assert resolve_source(str(tmp_path / "w"), "auto") == "hf"
    by_name = build_model(replace(HF_VIT, name=str(tmp_path / "w"), pretrained=True), 10)
    torch.testing.assert_close(_eval_out(by_name), _eval_out(model), atol=1e-6, rtol=0)

    other = build_model(replace(HF_VIT, pretrained=True, weights=str(tmp_path / "w")), 3)
    sd, osd = unwrap(model).state_dict(), unwrap(other).state_dict()
    assert osd["classifier.weight"].shape == (3, 64)
    for k in sd:
        if not k.startswith("classifier."):
            torch.testing.assert_close(osd[k], sd[k], atol=1e-6, rtol=0)


def _assert_fast_actionable(section, attempts: list):
    """Fails at once (offline and not cached: no download is tried, so nothing can wait on a timeout)
    with a message that says what to do."""
    with pytest.raises(ModelError) as info:
        build_model(section, 10)
    assert attempts == []
    msg = str(info.value)
    assert "model.pretrained = false" in msg and "model.weights" in msg and "download" in msg
    return msg


def test_timm_pretrained_offline_not_cached_fails_fast(network_attempts):
    msg = _assert_fast_actionable(replace(TIMM, pretrained=True), network_attempts)
    assert "timm/vit_tiny_patch16_224" in msg and "HF_HUB_OFFLINE" in msg


def test_hf_pretrained_offline_not_cached_fails_fast(network_attempts):
    msg = _assert_fast_actionable(replace(HF_VIT, pretrained=True), network_attempts)
    assert "google/vit-base-patch16-224" in msg


def test_timm_pretrained_from_hub_cache(no_hub):
    """A timm checkpoint in the Hub cache loads offline; the 1000-class head makes way for a new one."""
    from safetensors.torch import save_file

    source = build_model(TIMM, 1000)
    snap = _fake_hub_snapshot(no_hub, "timm/vit_tiny_patch16_224.augreg_in21k_ft_in1k")
    save_file(source.state_dict(), str(snap / "model.safetensors"))

    model = build_model(replace(TIMM, pretrained=True), 10)
    sd, msd = source.state_dict(), model.state_dict()
    assert msd["head.weight"].shape == (10, 64)
    for k in sd:
        if not k.startswith("head."):
            torch.testing.assert_close(msd[k], sd[k], atol=1e-6, rtol=0)


def _fake_hub_snapshot(home, repo):
    commit = "0123456789abcdef0123456789abcdef01234567"
    root = home / "hub" / ("models--" + repo.replace("/", "--"))
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(commit)
    snap = root / "snapshots" / commit
    snap.mkdir(parents=True)
    return snap


def test_hf_pretrained_from_hub_cache(no_hub):
    source = build_model(HF_VIT, 1000)
    save_pretrained_local(source, _fake_hub_snapshot(no_hub, HF_VIT.name))
    model = build_model(replace(HF_VIT, pretrained=True), 10)
    sd, msd = unwrap(source).state_dict(), unwrap(model).state_dict()
    assert msd["classifier.weight"].shape == (10, 64)
    for k in sd:
        if not k.startswith("classifier."):
            torch.testing.assert_close(msd[k], sd[k], atol=1e-6, rtol=0)


def test_timm_unknown_pretrained_tag():
    with pytest.raises(ModelError, match="no pretrained weights"):
        build_model(replace(TIMM, name="vit_tiny_patch16_224.no_such_tag", pretrained=True), 10)


def test_transformer_blocks_and_index_maps():
    import timm
    from transformers import SwinConfig, SwinForImageClassification

    timm_model = build_model(replace(TIMM, depth=3), 10)
    hf_model = build_model(replace(HF_VIT, depth=3), 10)
    assert transformer_blocks(timm_model) == list(timm_model.blocks)
    assert transformer_blocks(hf_model) == list(hf_model.hf.vit.layers)
    for model in (timm_model, hf_model):
        names = [n for n, _ in model.named_parameters()]
        mapping = block_index_map(model)
        assert mapping == {n: block_index_of(n, 3) for n in names}
        assert sorted(set(mapping.values())) == [0, 1, 2, 3, 4]

    swin = timm.create_model("swin_tiny_patch4_window7_224", img_size=32, embed_dim=16, depths=(1, 2),
                             num_heads=(1, 2), window_size=4, num_classes=3)
    assert transformer_blocks(swin) == [swin.layers[0].blocks[0], *swin.layers[1].blocks]
    smap = block_index_map(swin)
    assert smap["patch_embed.proj.weight"] == 0 and smap["layers.1.blocks.1.attn.qkv.weight"] == 3
    assert smap["head.fc.weight"] == 4 and smap["layers.1.downsample.reduction.weight"] == 1

    hf_swin = HFClassifier(SwinForImageClassification(SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[1, 2], num_heads=[1, 2], window_size=4, num_labels=3)))
    assert len(transformer_blocks(hf_swin)) == 3
    assert hf_swin(X).shape == (2, 3)


@pytest.mark.parametrize(
    "name,index",
    [
        ("cls_token", 0), ("pos_embed", 0), ("patch_embed.proj.weight", 0), ("reg_token", 0),
        ("blocks.0.attn.qkv.weight", 1), ("blocks.11.mlp.fc2.bias", 12), ("norm.weight", 13),
        ("fc_norm.bias", 13), ("head.weight", 13),
        ("hf.vit.embeddings.cls_token", 0), ("vit.embeddings.patch_embeddings.projection.weight", 0),
        ("vit.layers.0.attention.q_proj.weight", 1), ("vit.layers.5.layernorm_after.bias", 6),
        ("dinov2.encoder.layer.11.mlp.fc1.weight", 12), ("vit.layernorm.weight", 13),
        ("classifier.bias", 13), ("base_model.model.blocks.3.attn.qkv.lora_A.default.weight", 4),
    ],
)
def test_block_index_of(name, index):
    assert block_index_of(name, 12) == index


@pytest.mark.parametrize("section", [TIMM, HF_VIT], ids=["timm", "hf"])
def test_grad_checkpointing_backward(section):
    model = build_model(section, 5).train()
    assert set_grad_checkpointing(model, True) is True
    model(X).sum().backward()
    first = transformer_blocks(model)[0]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in first.parameters())
    assert set_grad_checkpointing(model, False) is True
    assert set_grad_checkpointing(nn.Linear(2, 2), True) is False

import math

import numpy as np
import pytest
import torch

from vittui.analysis import attention as A
from vittui.analysis import attention_stats as S
from vittui.runs import probes as P
from vittui.runs.events import AttentionProbe, decode


def tiny_timm():
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=64,
                             num_heads=2, num_classes=10)


def tiny_hf():
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    return ViTForImageClassification(ViTConfig(image_size=32, patch_size=8, num_hidden_layers=2, hidden_size=64,
                                               num_attention_heads=2, intermediate_size=128, num_labels=10))


def random_attn(*shape, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.random(shape) ** 3
    return a / a.sum(-1, keepdims=True)


# ---- pure statistics ---------------------------------------------------------------------------------------

def test_entropy_of_uniform_is_ln_n():
    t = 17
    a = np.full((3, t, t), 1.0 / t)
    np.testing.assert_allclose(S.entropy(a), [math.log(t)] * 3, atol=1e-6)
    np.testing.assert_allclose(S.entropy(a, normalize=True), [1.0] * 3, atol=1e-6)
    # torch input gives the same numbers
    np.testing.assert_allclose(S.entropy(torch.from_numpy(a)), [math.log(t)] * 3, atol=1e-6)


def test_entropy_matches_reference_and_one_hot_is_zero():
    a = random_attn(2, 3, 5, 5)
    ref = np.zeros((2, 3))
    for i in range(2):
        for h in range(3):
            rows = [-sum(p * math.log(p) for p in a[i, h, q] if p > 0) for q in range(5)]
            ref[i, h] = sum(rows) / 5
    np.testing.assert_allclose(S.entropy(a), ref, atol=1e-6)
    np.testing.assert_allclose(S.entropy(np.eye(5)[None]), [0.0], atol=1e-12)


def mirrored_one_hot(gh, gw, di, dj, prefix=1):
    """Each patch attends only to the patch (di, dj) away (mirrored at the border): every distance is equal."""
    n = gh * gw
    a = np.zeros((prefix + n, prefix + n))
    a[:prefix, 0] = 1.0
    for i in range(gh):
        for j in range(gw):
            ti = i + di if 0 <= i + di < gh else i - di
            tj = j + dj if 0 <= j + dj < gw else j - dj
            a[prefix + i * gw + j, prefix + ti * gw + tj] = 1.0
    return a


@pytest.mark.parametrize("di,dj,expected_patches", [(0, 1, 1.0), (1, 0, 1.0), (3, 4, 5.0), (1, 1, math.sqrt(2))])
def test_one_hot_distance_equals_offset_in_pixels(di, dj, expected_patches):
    a = mirrored_one_hot(8, 8, di, dj)
    got = S.mean_distance(a[None], (8, 8), 16)
    np.testing.assert_allclose(got, [expected_patches * 16], atol=1e-6)


def test_self_attention_distance_is_zero_and_prefix_is_dropped():
    n = 16
    a = np.zeros((2 + n, 2 + n))
    a[:, 0] = 0.5  # half the attention on CLS: dropped and renormalised away
    a[np.arange(2, 2 + n), np.arange(2, 2 + n)] = 0.5
    a[:2, 1] = 0.5
    assert S.mean_distance(a, (4, 4), 8, num_prefix_tokens=2) == pytest.approx(0.0, abs=1e-12)


def test_mean_distance_matches_reference_loop():
    gh, gw, ps, prefix = 3, 4, 8, 1
    a = random_attn(2, prefix + gh * gw, prefix + gh * gw, seed=3)
    ref = []
    for h in range(2):
        total = 0.0
        for q in range(gh * gw):
            w = a[h, prefix + q, prefix:]
            w = w / w.sum()
            qi, qj = divmod(q, gw)
            total += sum(w[k] * math.hypot((qi - k // gw) * ps, (qj - k % gw) * ps) for k in range(gh * gw))
        ref.append(total / (gh * gw))
    np.testing.assert_allclose(S.mean_distance(a, (gh, gw), ps), ref, atol=1e-6)


def test_rollout_of_identity_is_identity():
    t = 5
    a = np.broadcast_to(np.eye(t), (3, 2, t, t))
    np.testing.assert_allclose(S.rollout(a), np.eye(t), atol=1e-12)


def test_rollout_matches_hand_written_loop():
    layers, heads, t = 3, 2, 5
    a = random_attn(layers, heads, t, t, seed=1)
    result = np.eye(t)
    for l in range(layers):
        m = np.zeros((t, t))
        for h in range(heads):
            m += a[l, h] / heads
        m = 0.5 * m + 0.5 * np.eye(t)
        for r in range(t):
            m[r] /= m[r].sum()
        result = m @ result
    got = S.rollout(a)
    np.testing.assert_allclose(got, result, atol=1e-6)
    np.testing.assert_allclose(got.sum(-1), np.ones(t), atol=1e-9)
    # batched form agrees per image; rollout_map is the CLS row on the grid
    batched = np.stack([a, random_attn(layers, heads, t, t, seed=2)], axis=1)
    np.testing.assert_allclose(S.rollout(batched)[0], result, atol=1e-9)
    np.testing.assert_allclose(S.rollout_map(a, 1, (2, 2)), result[0, 1:].reshape(2, 2), atol=1e-9)


def test_cls_attention_shape_and_values():
    a = random_attn(2, 17, 17)
    m = S.cls_attention(a, 1)
    assert m.shape == (2, 4, 4)
    np.testing.assert_allclose(m[1], a[1, 0, 1:].reshape(4, 4))


def test_head_diversity_and_layer_similarity():
    a = random_attn(2, 5, 5)
    same = np.stack([a[0], a[0]])
    assert S.head_diversity(same) == pytest.approx(1.0, abs=1e-9)
    v0, v1 = a[0].ravel(), a[1].ravel()
    ref = v0 @ v1 / (np.linalg.norm(v0) * np.linalg.norm(v1))
    assert S.head_diversity(a) == pytest.approx(ref, abs=1e-9)
    # disjoint one-hot heads are orthogonal
    eye, rev = np.eye(4), np.eye(4)[::-1]
    assert S.head_diversity(np.stack([eye, rev])) == pytest.approx(0.0, abs=1e-12)
    layers = np.stack([a, a, a[::-1] ** 2])
    sims = S.layer_similarity(layers)
    assert len(sims) == 2 and sims[0] == pytest.approx(1.0)
    m2 = a.mean(0).ravel()
    m3 = (a[::-1] ** 2).mean(0).ravel()
    assert sims[1] == pytest.approx(m2 @ m3 / (np.linalg.norm(m2) * np.linalg.norm(m3)))


def test_flags_thresholds():
    assert S.flags([0.5], [], [[0.5, 0.5]]) == []
    f = S.flags([0.97, 0.2], [0.995], [[0.5, 0.6], [0.99, 0.5]])
    assert any("layer 0: heads collapsed" in s for s in f)
    assert any("layers 0-1" in s for s in f)
    assert any("layer 1: heads 0 near-uniform" in s for s in f)
    # an all-uniform layer reports only that, not collapse too
    f = S.flags([0.999], [], [[0.99, 0.995]])
    assert f == [f"layer 0: all heads near-uniform (normalised entropy > {S.UNIFORM_ENTROPY})"]


def test_summarize_uniform_and_one_hot():
    t = 17
    uniform = np.full((2, 3, 2, t, t), 1.0 / t)
    s = S.summarize(uniform, (4, 4), 8)
    assert np.allclose(s.entropy, 1.0)
    assert len(s.diversity) == 2 and len(s.layer_similarity) == 1
    assert any("near-uniform" in f for f in s.flags)
    one_hot = mirrored_one_hot(4, 4, 0, 1)
    a = np.broadcast_to(one_hot, (2, 1, 2, t, t))
    s = S.summarize(a, (4, 4), 8)
    np.testing.assert_allclose(s.distance, [[8.0, 8.0], [8.0, 8.0]], atol=1e-9)


# ---- extraction from real tiny models -----------------------------------------------------------------------

def test_extract_timm_rows_sum_to_one_and_restores_flags():
    model = tiny_timm()
    model.train()
    model.blocks[1].attn.fused_attn = False  # a mixed setting must come back as it was
    before = [b.attn.fused_attn for b in model.blocks]
    x = torch.randn(3, 3, 32, 32)
    a = A.extract_attention(model, x)
    assert a.shape == (2, 3, 2, 17, 17)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 3, 2, 17), atol=1e-5, rtol=0)
    assert [b.attn.fused_attn for b in model.blocks] == before
    assert model.training and all(m.training for m in model.modules())
    grid, ps, prefix = A.geometry(model, x.shape, a.shape[-1])
    assert (grid, ps, prefix) == ((4, 4), (8, 8), 1)


def test_extract_timm_matches_manual_softmax():
    model = tiny_timm().eval()
    x = torch.randn(2, 3, 32, 32)
    a = A.extract_attention(model, x)
    with torch.no_grad():
        h = model.norm_pre(model._pos_embed(model.patch_embed(x)))
        blk = model.blocks[0]
        y = blk.norm1(h)
        B, N, C = y.shape
        qkv = blk.attn.qkv(y).reshape(B, N, 3, 2, C // 2).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        ref = ((q * blk.attn.scale) @ k.transpose(-2, -1)).softmax(-1)
    torch.testing.assert_close(a[0], ref, atol=1e-5, rtol=1e-5)


def test_extract_hf_and_wrapped():
    model = tiny_hf()
    before = model.config._attn_implementation
    x = torch.randn(2, 3, 32, 32)
    a = A.extract_attention(model, x)
    assert a.shape == (2, 2, 2, 17, 17)
    torch.testing.assert_close(a.sum(-1), torch.ones(2, 2, 2, 17), atol=1e-5, rtol=0)
    assert model.config._attn_implementation == before

    from vittui.models.hf import HFClassifier

    b = A.extract_attention(HFClassifier(model), x)
    torch.testing.assert_close(a, b)
    assert A.num_prefix_tokens(HFClassifier(model)) == 1


def test_extract_peft_timm():
    import peft  # a hard dependency: missing, this fails rather than skips
    model = tiny_timm()
    pm = peft.get_peft_model(model, peft.LoraConfig(target_modules=["qkv"], r=2))
    a = A.extract_attention(pm, torch.randn(1, 3, 32, 32))
    assert a.shape == (2, 1, 2, 17, 17)


# ---- probe files and events ----------------------------------------------------------------------------------

def test_save_load_probe_and_event(tmp_path):
    att_dir = tmp_path / "attention"
    a = torch.from_numpy(random_attn(2, 3, 2, 17, 17)).float()
    images = torch.rand(3, 3, 32, 32)
    mean, std = (0.5, 0.5, 0.5), (0.25, 0.25, 0.25)
    normed = (images - 0.5) / 0.25
    rel = P.save_probe(att_dir, 40, a, normed, grid=(4, 4), patch_size=8, num_prefix_tokens=1, mean=mean, std=std)
    assert rel == "attention/step-00000040.npz"
    p = P.load_probe(rel, run_dir=tmp_path)
    assert p.step == 40 and p.grid == (4, 4) and p.patch_size == (8, 8) and p.num_prefix_tokens == 1
    np.testing.assert_allclose(p.attention, a.numpy(), atol=1e-3)
    assert p.images.dtype == np.uint8 and p.images.shape == (3, 32, 32, 3)
    expected = np.round(images.permute(0, 2, 3, 1).numpy().astype(np.float64) * 255).astype(np.uint8)
    assert np.abs(p.images.astype(int) - expected.astype(int)).max() <= 1
    # the images are written once
    mtime = (att_dir / "images.npz").stat().st_mtime_ns
    P.save_probe(att_dir, 80, a, torch.zeros(3, 3, 32, 32))
    assert (att_dir / "images.npz").stat().st_mtime_ns == mtime

    s = S.summarize(a, (4, 4), 8)
    ev = P.make_event(40, rel, s)
    assert isinstance(ev, AttentionProbe)
    back = decode(ev.to_json())
    assert back.path == rel and back.entropy == s.entropy and back.diversity == s.diversity


def test_probe_end_to_end(tmp_path):
    model = tiny_timm()
    attn, summary, event = A.probe(model, torch.randn(2, 3, 32, 32), tmp_path / "attention", step=5)
    assert attn.shape == (2, 2, 2, 17, 17)
    assert event.step == 5 and (tmp_path / event.path).exists()
    assert len(summary.entropy) == 2 and len(summary.entropy[0]) == 2


def test_register_tokens_are_prefix_tokens():
    import timm

    model = timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=2, embed_dim=64,
                              num_heads=2, num_classes=10, reg_tokens=4)
    x = torch.randn(1, 3, 32, 32)
    attn, summary, _ = A.probe(model, x)
    assert attn.shape == (2, 1, 2, 21, 21)
    assert A.geometry(model, x.shape, 21) == ((4, 4), (8, 8), 5)
    assert S.cls_attention(attn[0], 5).shape == (2, 4, 4)
    assert S.rollout_map(attn, 5).shape == (1, 4, 4)
    # the summary's distance, worked out here: the 5 prefix tokens (CLS + 4 registers) dropped, each patch
    # query's weights over the 16 patches renormalised, distances in pixels between 8 px patch centres
    a = attn.detach().double().numpy()[:, 0]  # (L, H, T, T), one image
    pos = np.array([(i * 8.0, j * 8.0) for i in range(4) for j in range(4)])
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    w = a[..., 5:, 5:] / a[..., 5:, 5:].sum(axis=-1, keepdims=True)
    np.testing.assert_allclose(summary.distance, (w * dist).sum(axis=-1).mean(axis=-1), atol=1e-6)


def test_summary_distance_of_a_known_map():
    """Two heads over a 2x2 grid of 8 px patches with CLS + 4 register tokens: every patch gives half its
    attention to the registers (dropped) and half to one other patch, its row neighbour (8 px away) in
    head 0 and the patch diagonally across (8 * sqrt 2 px) in head 1."""
    prefix, t = 5, 9
    a = np.zeros((1, 2, t, t))  # (L, H, T, T)
    a[..., :, 1:5] = 0.125  # half over the 4 registers
    a[..., :prefix, 0] = 0.5  # prefix queries: not counted
    for q in range(4):
        i, j = divmod(q, 2)
        a[0, 0, prefix + q, prefix + i * 2 + (1 - j)] = 0.5  # same row, other column
        a[0, 1, prefix + q, prefix + (1 - i) * 2 + (1 - j)] = 0.5  # diagonally across
    np.testing.assert_allclose(a.sum(axis=-1), 1.0)
    summary = S.summarize(a, (2, 2), 8, num_prefix_tokens=prefix)
    np.testing.assert_allclose(summary.distance, [[8.0, 8.0 * math.sqrt(2)]], atol=1e-9)

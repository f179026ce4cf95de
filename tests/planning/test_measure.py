"""The measuring harness (`vittui.planning.measure`), which the memory estimator is judged against, on cases
whose saved-tensor bytes are known in closed form. Every expectation is written out by hand (fp32: 4 bytes)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from vittui.planning.measure import SavedTensors, measure_step
from vittui.recipe import Recipe

F32 = 4


def _leaf(*shape: int, grad: bool = True) -> torch.Tensor:
    return torch.randn(*shape).requires_grad_(grad)


def test_a_linear_layer_saves_its_input():
    torch.manual_seed(0)
    lin = nn.Linear(8, 4)
    x = torch.randn(5, 8)
    with SavedTensors(exclude=lin.parameters()) as saved:
        y = lin(x)
    assert saved.bytes == 5 * 8 * F32  # batch x in: what the weight's gradient needs
    assert saved.by_shape() == {"(5, 8) float32": 5 * 8 * F32}
    y.sum().backward()  # the graph is intact: the hooks hand every tensor back
    assert lin.weight.grad.shape == (4, 8)


def test_parameters_are_left_out_only_when_excluded():
    lin = nn.Linear(8, 4)
    x = torch.randn(5, 8, requires_grad=True)  # now the input's gradient needs the weight too
    with SavedTensors(exclude=lin.parameters()) as saved:
        lin(x)
    assert saved.bytes == 5 * 8 * F32
    with SavedTensors() as saved:
        lin(x)
    assert saved.bytes == 5 * 8 * F32 + 4 * 8 * F32


def test_a_matmul_chain_saves_each_intermediate_once():
    B, n, m, k = 3, 5, 7, 2
    a, c = _leaf(n, m), _leaf(m, k)
    x = torch.randn(B, n)
    with SavedTensors(exclude=[a, c]) as saved:
        h = x @ a  # saves x (for a's gradient)
        y = h @ c  # saves h (for c's gradient) and c (excluded)
        y.sum()
    assert saved.bytes == B * n * F32 + B * m * F32

    x = _leaf(B, n)  # with every operand needing a gradient and nothing excluded: x, a, h and c
    with SavedTensors() as saved:
        (x @ a) @ c
    assert saved.bytes == F32 * (B * n + n * m + B * m + m * k)


def test_views_of_one_storage_count_once():
    B, d = 4, 6
    w = _leaf(3, 2 * d)
    x = torch.randn(B, 3)
    with SavedTensors(exclude=[w]) as saved:
        qk = x @ w
        q, k = qk[:, :1], qk[:, 1:2]  # two one-column views of qk, both saved by the product
        (q * k).sum()
    # a view keeps its whole storage alive: qk counts in full, once
    assert saved.bytes == B * 3 * F32 + B * 2 * d * F32


def _block(d: int, h: int) -> nn.Module:
    return nn.Sequential(nn.Linear(d, h), nn.ReLU(), nn.Linear(h, d))


def test_a_block_saves_its_input_and_hidden_activation():
    B, d, h = 4, 6, 10
    blk = _block(d, h)
    x = torch.randn(B, d)
    with SavedTensors(exclude=blk.parameters()) as saved:
        blk(x)
    # fc1 saves x; ReLU saves its output, which fc2 saves too (one storage)
    assert saved.bytes == B * d * F32 + B * h * F32


@pytest.mark.parametrize("reentrant", [False, True], ids=["non-reentrant", "reentrant"])
def test_a_checkpointed_block_keeps_only_its_input(reentrant):
    B, d, h = 4, 6, 10
    torch.manual_seed(0)
    blocks = nn.ModuleList([_block(d, h), _block(d, h)])
    x = torch.randn(B, d, requires_grad=reentrant)  # the reentrant variant needs an input that wants grad

    def forward(x):
        for blk in blocks:
            x = checkpoint(blk, x, use_reentrant=reentrant)
        return x

    with SavedTensors(exclude=blocks.parameters(), checkpointed=blocks) as saved:
        y = forward(x)
    assert saved.bytes == 2 * B * d * F32  # x and block 0's output (block 1's input); nothing inside
    y.sum().backward()
    grads = [p.grad.clone() for p in blocks.parameters()]

    # the same gradients as without checkpointing (the harness's hooks change nothing)
    blocks.zero_grad()
    y = x
    for blk in blocks:
        y = blk(y)
    y.sum().backward()
    torch.testing.assert_close([p.grad for p in blocks.parameters()], grads)


def test_a_frozen_checkpointed_block_on_a_frozen_input_keeps_nothing():
    import gc
    import weakref

    blk = _block(6, 10).requires_grad_(False)
    x = torch.randn(4, 6)
    alive = weakref.ref(x)
    with SavedTensors(checkpointed=[blk]) as saved:
        checkpoint(blk, x, use_reentrant=False)
    assert saved.bytes == 0  # torch hands x to the saved-tensor hooks, but no graph keeps it:
    del x, saved
    gc.collect()
    assert alive() is None  # nothing holds the input once the block has returned


def test_a_frozen_block_before_a_trained_one():
    B, d, h = 4, 6, 10
    frozen, trained = _block(d, h).requires_grad_(False), _block(d, h)
    x = torch.randn(B, d)
    with SavedTensors(exclude=[*frozen.parameters(), *trained.parameters()], checkpointed=[frozen, trained]) as s:
        checkpoint(trained, checkpoint(frozen, x, use_reentrant=False), use_reentrant=False)
    assert s.bytes == B * d * F32  # the trained block's input only


def test_hooks_are_removed_on_exit():
    blk = _block(6, 10)
    with SavedTensors(checkpointed=[blk]) as saved:
        pass
    blk(torch.randn(4, 6))
    assert saved.bytes == 0 and not blk._forward_pre_hooks


# ---- the Recipe entry point ----------------------------------------------------------------------


def _vit_params(D: int, depth: int, patch: int, tokens: int, classes: int, mlp: int = 4) -> int:
    """A timm ViT's parameter count by hand (class token, no register tokens, qkv with bias)."""
    embed = 3 * patch * patch * D + D + D + tokens * D  # patch projection + bias, cls token, position
    block = 2 * D + (D * 3 * D + 3 * D) + (D * D + D) + 2 * D + (D * mlp * D + mlp * D) + (mlp * D * D + D)
    return embed + depth * block + 2 * D + D * classes + classes


def _tiny_vit(B: int, D: int, depth: int, img: int, patch: int, extra: dict | None = None) -> Recipe:
    """vit_tiny's architecture at these sizes with 2 heads, batch B, no drop path or label smoothing; `extra` on top."""
    return Recipe().with_overrides({
        "model.name": "vit_tiny_patch16_224", "model.img_size": img, "model.patch_size": patch,
        "model.depth": depth, "model.embed_dim": D, "model.num_heads": 2, "data.batch_size": B,
        "regularize.drop_path": 0.0, "regularize.label_smoothing": 0.0, **(extra or {})})


def test_measure_step_of_a_linear_probe_in_closed_form():
    B, D, depth, patch, img, C = 4, 32, 2, 4, 16, 10
    T = 1 + (img // patch) ** 2
    recipe = _tiny_vit(B, D, depth, img, patch, {"adapt.freeze": "linear_probe", "regularize.ema": True,
                                                 "optim.name": "adamw"})
    m = measure_step(recipe, num_classes=C, device="cpu")
    total, head = _vit_params(D, depth, patch, T, C), D * C + C
    assert (m.total_params, m.trainable_params) == (total, head)
    assert m.params_bytes == m.ema_bytes == total * F32
    assert m.grads_bytes == head * F32
    assert m.optimizer_bytes == 2 * head * F32  # AdamW: exp_avg and exp_avg_sq (the step count is 0-d)
    # Only the head needs a gradient. It saves its input, the class token: a view of the final norm's
    # (B, T, D) output, whose whole storage stays alive. Cross-entropy keeps the log-softmax (B, C), the
    # int64 targets and nll_loss's scalar total weight.
    assert m.activations_bytes == B * T * D * F32 + B * C * F32 + B * 8 + F32
    assert m.recompute_bytes == 0
    assert m.total_bytes == (2 * total + 3 * head) * F32 + m.activations_bytes


def test_measure_step_with_checkpointing_in_closed_form():
    B, D, depth, img, patch, C = 2, 32, 3, 16, 4, 10
    T = 1 + (img // patch) ** 2
    recipe = _tiny_vit(B, D, depth, img, patch, {"compute.grad_checkpointing": True})
    m = measure_step(recipe, num_classes=C, device="cpu")
    tokens = B * T * D * F32
    assert m.activations_bytes == (
        B * 3 * img * img * F32  # the patch embedding's convolution keeps the image
        + depth * tokens  # each checkpointed block keeps its input, nothing inside
        + tokens + 2 * B * T * F32  # the final LayerNorm: its input, mean and rstd
        + tokens  # the head's input, the class token: a view of the norm's whole output
        + B * C * F32 + B * 8 + F32  # cross-entropy: log-softmax, int64 targets, total weight
    )
    # one block at a time is recomputed in backward: more than its input, less than the whole model's
    plain = measure_step(recipe.with_overrides({"compute.grad_checkpointing": False}), num_classes=C, device="cpu")
    assert tokens < m.recompute_bytes < plain.activations_bytes
    assert m.activations_peak_bytes < plain.activations_bytes


def test_measure_step_frozen_checkpointed_blocks_keep_nothing():
    B, D, depth, img, patch, C = 2, 32, 3, 16, 4, 10
    full = measure_step(_tiny_vit(B, D, depth, img, patch, {"compute.grad_checkpointing": True}),
                        num_classes=C, device="cpu")
    frozen = measure_step(_tiny_vit(B, D, depth, img, patch, {"compute.grad_checkpointing": True,
                                                              "adapt.freeze": "first_n", "adapt.freeze_blocks": 1}),
                          num_classes=C, device="cpu")
    # the frozen patch embedding keeps no image and frozen block 0 no input; block 1 on keep theirs
    T = 1 + (img // patch) ** 2
    assert full.activations_bytes - frozen.activations_bytes == B * 3 * img * img * F32 + B * T * D * F32

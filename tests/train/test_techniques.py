"""Each training technique the loop offers, trained for real on the tiny recipe, checked for its effect.

Every test observes the real `train()` through the least invasive hook it can: a wrapper around
`build_optimizer` (train/build.py's own reference, patched for the test) that registers torch's documented
optimizer step hooks and module forward hooks on what the loop built, a recording subclass of a loss
the loop looks up at call time, or the weights the run saved (safetensors). Expected values are computed
here by hand from the saved weights, the data, or the recipe.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import tiny_recipe, write_digit_folder

import vittui.train.build as build
from vittui.runs import events as ev
from vittui.runs.launcher import prepare_run
from vittui.train.loop import train


@dataclass
class Spy:
    """What the loop built and what it did with it, recorded through public torch hooks."""

    model: torch.nn.Module | None = None
    optimizer: torch.optim.Optimizer | None = None
    names: dict[int, str] = field(default_factory=dict)  # id(param) -> name
    initial: dict[str, torch.Tensor] = field(default_factory=dict)  # weights before the first step
    log: list[str] = field(default_factory=list)  # "F" per training forward, "S" per optimizer step
    grads: list[dict[str, torch.Tensor]] = field(default_factory=list)  # at each step (after clipping)
    group_lrs: list[list[tuple[float, list[str]]]] = field(default_factory=list)  # at each step
    inputs: list[torch.Tensor] = field(default_factory=list)  # training batches as the model got them
    hooks: dict = field(default_factory=dict)  # extra per-test hooks: name -> callable(model)


@pytest.fixture
def spy(monkeypatch) -> Spy:
    s = Spy()
    real = build.build_optimizer

    def build_optimizer(model, recipe, *args, **kwargs):
        opt = real(model, recipe, *args, **kwargs)
        s.model, s.optimizer = model, opt
        s.names = {id(p): n for n, p in model.named_parameters()}
        s.initial = {n: p.detach().clone() for n, p in model.named_parameters()}

        def pre_step(o, _args, _kwargs):
            s.log.append("S")
            s.grads.append({s.names[id(p)]: p.grad.detach().clone() for g in o.param_groups for p in g["params"]
                            if p.grad is not None})
            s.group_lrs.append([(g["lr"], [s.names[id(p)] for p in g["params"]]) for g in o.param_groups])

        def pre_forward(m, args):
            if m.training:
                s.log.append("F")
                s.inputs.append(args[0].detach().clone())

        opt.register_step_pre_hook(pre_step)
        model.register_forward_pre_hook(pre_forward)
        for hook in s.hooks.values():
            hook(model)
        return opt

    monkeypatch.setattr(build, "build_optimizer", build_optimizer)
    return s


def _train(tmp_path: Path, *overrides: str, name: str = "t"):
    r = tiny_recipe(*overrides)
    run = prepare_run(r, tmp_path, name)
    result = train(r, run.path)
    return run, result


def _steps(run) -> list[ev.Step]:
    return [e for e in ev.read_all(run.events_path) if isinstance(e, ev.Step)]


def _saved(run, step: int, ema: bool = False) -> dict[str, torch.Tensor]:
    return load_file(str(run.path / "checkpoints" / f"step-{step:08d}" / ("ema" if ema else "model")) + ".safetensors")


def _changed(a: torch.Tensor, b: torch.Tensor) -> bool:
    return not torch.equal(a, b)


# ---- EMA ------------------------------------------------------------------------------------------


def test_ema_follows_the_update_rule_with_the_configured_decay(tmp_path):
    decay = 0.7
    run, result = _train(tmp_path, "regularize.ema=true", f"regularize.ema_decay={decay}", "schedule.max_steps=3",
                         "run.checkpoint_every=1", "run.keep_last=5")
    assert result.step == 3
    # E_n = decay * E_{n-1} + (1 - decay) * W_n, from the weights and EMA weights saved at steps 1, 2, 3
    for n in (2, 3):
        prev_ema, live, got = _saved(run, n - 1, ema=True), _saved(run, n), _saved(run, n, ema=True)
        assert got.keys() == live.keys()
        for k in live:
            want = decay * prev_ema[k] + (1 - decay) * live[k]
            torch.testing.assert_close(got[k], want, rtol=1e-5, atol=1e-7, msg=f"{k} at step {n}")
    # it is a lagging average: not the live weights, and closer to them than it was a step ago
    e2, e3, w3 = _saved(run, 2, ema=True), _saved(run, 3, ema=True), _saved(run, 3)
    assert any(_changed(e3[k], w3[k]) for k in w3)
    dist = lambda a: math.sqrt(sum(float((a[k] - w3[k]).pow(2).sum()) for k in w3))  # noqa: E731
    assert 0 < dist(e3) < dist(e2)


# ---- mixup / cutmix ---------------------------------------------------------------------------------


def test_mixup_cutmix_feed_the_loss_soft_targets_mixing_two_labels(tmp_path, monkeypatch):
    import timm.loss

    import vittui.data.transforms as transforms

    labels_in, targets = [], []
    real_build_mixup = transforms.build_mixup

    def build_mixup(recipe, num_classes):
        mixup = real_build_mixup(recipe, num_classes)

        def recording(x, y):
            labels_in.append(y.clone())
            return mixup(x, y)
        return recording

    class RecordingSoftTarget(timm.loss.SoftTargetCrossEntropy):
        def forward(self, x, target):
            targets.append(target.detach().clone())
            return super().forward(x, target)

    monkeypatch.setattr(transforms, "build_mixup", build_mixup)
    monkeypatch.setattr(timm.loss, "SoftTargetCrossEntropy", RecordingSoftTarget)
    run, result = _train(tmp_path, "augment.mixup=0.8", "augment.cutmix=1.0", "regularize.label_smoothing=0",
                         "schedule.max_steps=3")
    assert result.step == 3
    assert len(targets) == len(labels_in) == 3  # one mixed batch per step, each reaching the loss
    mixed_rows = 0
    for y, t in zip(labels_in, targets):
        assert t.shape == (len(y), 10) and t.dtype.is_floating_point
        torch.testing.assert_close(t.sum(1), torch.ones(len(y)))
        # batch mode: row i is lam * onehot(y_i) + (1 - lam) * onehot(y_{n-1-i}), one lam per batch
        i = next(i for i in range(len(y)) if y[i] != y.flip(0)[i])  # a pair of different labels
        lam = float(t[i, y[i]])
        onehot = torch.nn.functional.one_hot(y, 10).float()
        assert 0 < lam < 1, lam
        torch.testing.assert_close(t, lam * onehot + (1 - lam) * onehot.flip(0))
        mixed_rows += int((t.max(1).values < 1).sum())
    assert mixed_rows > 0


# ---- gradient accumulation ----------------------------------------------------------------------------


def test_accumulation_takes_one_optimizer_step_per_n_batches(tmp_path, spy):
    run, result = _train(tmp_path, "compute.accumulation=3", "schedule.max_steps=2")
    assert result.step == 2 and [e.step for e in _steps(run)] == [1, 2]
    assert "".join(spy.log) == "FFFSFFFS"


def test_no_accumulation_steps_every_batch(tmp_path, spy):
    _train(tmp_path, "schedule.max_steps=2")
    assert "".join(spy.log) == "FSFS"


# ---- freezing and LoRA ----------------------------------------------------------------------------------


def test_frozen_blocks_are_byte_identical_and_the_rest_trains(tmp_path, spy):
    run, result = _train(tmp_path, "adapt.freeze=all_but_last_n", "adapt.freeze_blocks=1", "schedule.max_steps=2")
    final = _saved(run, 2)
    assert final.keys() == spy.initial.keys()
    # depth 2, all but the last 1 block frozen: the embeddings and block 0 stay; block 1, norm, head train
    trains = ("blocks.1.", "norm.", "head.")
    frozen = [k for k in final if not k.startswith(trains)]
    trained = [k for k in final if k.startswith(trains)]
    assert {"cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.0.attn.qkv.weight"} <= set(frozen)
    assert {"blocks.1.attn.qkv.weight", "norm.weight", "head.weight", "head.bias"} <= set(trained)
    for k in frozen:
        assert torch.equal(final[k], spy.initial[k]), f"frozen {k} changed"
    for k in trained:
        assert _changed(final[k], spy.initial[k]), f"trainable {k} did not move"


def test_lora_moves_the_adapters_and_leaves_base_weights(tmp_path, spy):
    run, result = _train(tmp_path, "adapt.lora=true", "schedule.max_steps=2")
    final = _saved(run, 2)
    assert final.keys() == spy.initial.keys()
    adapters = [k for k in final if "lora_A" in k or "lora_B" in k]
    head = [k for k in final if "modules_to_save" in k]  # the classifier trains in full
    base = [k for k in final if k not in adapters and k not in head]
    assert adapters and head and any("qkv.base_layer.weight" in k for k in base)
    assert all("blocks." in k for k in adapters)
    for k in base:
        assert torch.equal(final[k], spy.initial[k]), f"base weight {k} changed"
    for k in adapters + head:
        assert _changed(final[k], spy.initial[k]), f"{k} did not move"
    # the optimizer holds exactly the adapters and the head
    held = {spy.names[id(p)] for g in spy.optimizer.param_groups for p in g["params"]}
    assert held == set(adapters + head)


# ---- gradient checkpointing --------------------------------------------------------------------------------


def test_grad_checkpointing_recomputes_blocks_and_gives_the_same_gradients(tmp_path, spy):
    block_calls: list[int] = []

    def count_blocks(model):
        for blk in model.blocks:
            blk.register_forward_pre_hook(lambda m, a: block_calls.append(1) if m.training else None)

    spy.hooks["blocks"] = count_blocks
    _train(tmp_path, "schedule.max_steps=1", name="plain")
    plain_grads, plain_calls = spy.grads[0], len(block_calls)
    spy.grads.clear()
    block_calls.clear()
    _train(tmp_path, "schedule.max_steps=1", "compute.grad_checkpointing=true", name="ckpt")
    assert plain_calls == 2  # 2 blocks, one forward
    assert len(block_calls) == 4  # each block run again in backward: checkpointing is really on
    assert spy.grads[0].keys() == plain_grads.keys()
    torch.testing.assert_close(spy.grads[0], plain_grads)


# ---- bf16 autocast ----------------------------------------------------------------------------------------


def test_bf16_runs_the_matmuls_in_bf16_and_keeps_fp32_weights(tmp_path, spy):
    dtypes: dict[str, set] = {}

    def record(model):
        for name, mod in model.named_modules():
            if isinstance(mod, torch.nn.Linear):
                mod.register_forward_hook(
                    lambda m, a, out, name=name: dtypes.setdefault(name, set()).add(out.dtype) if m.training else None)

    spy.hooks["linear"] = record
    run, _ = _train(tmp_path, "compute.precision=bf16", "schedule.max_steps=2")
    assert "blocks.0.attn.qkv" in dtypes and "head" in dtypes
    assert all(d == {torch.bfloat16} for d in dtypes.values()), dtypes
    assert all(t.dtype == torch.float32 for t in _saved(run, 2).values())
    dtypes.clear()
    _train(tmp_path, "schedule.max_steps=1", name="fp32")  # the same hook sees fp32 without autocast
    assert dtypes and all(d == {torch.float32} for d in dtypes.values()), dtypes


# ---- SGD with gradient clipping ----------------------------------------------------------------------------


def test_sgd_steps_with_the_gradient_clipped_to_the_norm(tmp_path, spy):
    clip = 0.05
    run, _ = _train(tmp_path, "optim.name=sgd", f"optim.clip_grad={clip}", "schedule.max_steps=3")
    assert type(spy.optimizer.optimizer if hasattr(spy.optimizer, "optimizer") else spy.optimizer) is torch.optim.SGD
    steps = _steps(run)
    assert len(steps) == len(spy.grads) == 3
    for s, grads in zip(steps, spy.grads):
        norm = float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads.values()])))
        assert s.grad_norm > clip  # the raw norm the step reported: clipping had work to do
        assert norm == pytest.approx(min(s.grad_norm, clip), rel=1e-4)


# ---- weighted loss ------------------------------------------------------------------------------------------


def test_weighted_loss_uses_inverse_class_frequencies(tmp_path, monkeypatch):
    # train/ holds 24 zeros, 8 ones, 8 twos: inverse frequencies 1/24, 1/8, 1/8, scaled to mean 1
    root = tmp_path / "data"
    write_digit_folder(root / "train", [0], 24)
    write_digit_folder(root / "train", [1, 2], 8)
    write_digit_folder(root / "val", [0, 1, 2], 3, start=30)
    inv = [1 / 24, 1 / 8, 1 / 8]
    want = torch.tensor([w * 3 / sum(inv) for w in inv])  # = 3/7, 9/7, 9/7

    used = []

    class RecordingCE(torch.nn.CrossEntropyLoss):
        def forward(self, input, target):
            used.append(None if self.weight is None else self.weight.detach().clone())
            return super().forward(input, target)

    monkeypatch.setattr(build.nn, "CrossEntropyLoss", RecordingCE)
    _train(tmp_path, "data.source=imagefolder", f"data.path={root}", "data.limit=0", "data.batch_size=8",
           "data.class_balance=weighted_loss", "schedule.max_steps=2", name="weighted")
    assert len(used) == 2
    for w in used:
        torch.testing.assert_close(w, want)
    used.clear()
    _train(tmp_path, "data.source=imagefolder", f"data.path={root}", "data.limit=0", "data.batch_size=8",
           "schedule.max_steps=1", name="plain")
    assert used == [None]


# ---- layer-wise lr decay --------------------------------------------------------------------------------------


def test_layer_decay_lr_per_depth_during_training(tmp_path, spy):
    decay = 0.75
    _train(tmp_path, f"optim.layer_decay={decay}", "schedule.max_steps=2")

    def depth(name: str) -> int:
        """0 embeddings, 1 + i for block i, 3 the head (depth-2 model); timm's ViT grouping puts the
        final norm with the last block."""
        if name.startswith("blocks."):
            return 1 + int(name.split(".")[1])
        if name.startswith("norm."):
            return 2
        return 0 if name.startswith(("cls_token", "pos_embed", "patch_embed")) else 3

    for groups in spy.group_lrs:
        top = max(lr for lr, _ in groups)
        assert top > 0
        for lr, names in groups:
            for n in names:
                assert lr == pytest.approx(top * decay ** (3 - depth(n)), rel=1e-6), n


# ---- augmentation in the data -------------------------------------------------------------------------------


def test_random_erasing_erases_one_rectangle_per_image(tmp_path, spy):
    _train(tmp_path, "schedule.max_steps=1", name="plain")
    plain = spy.inputs[0]
    spy.inputs.clear()
    _train(tmp_path, "schedule.max_steps=1", "augment.re_prob=1.0", name="erased")
    erased = spy.inputs[0]
    assert erased.shape == plain.shape
    for i in range(len(plain)):  # the crops are the same draw; only the erased box differs
        diff = (erased[i] != plain[i]).any(0)
        rows, cols = diff.any(1).nonzero().flatten(), diff.any(0).nonzero().flatten()
        assert len(rows) and len(cols), f"image {i} not erased"
        box = diff[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        assert bool(box.all()) and int(diff.sum()) == box.numel(), f"image {i}: not one rectangle"


def test_auto_augment_runs_on_every_training_image(tmp_path, spy, monkeypatch):
    from timm.data import auto_augment

    calls = []
    real_call = auto_augment.RandAugment.__call__

    def counting(self, img):
        calls.append(1)
        return real_call(self, img)

    monkeypatch.setattr(auto_augment.RandAugment, "__call__", counting)
    _train(tmp_path, "schedule.max_steps=1", name="plain")
    plain = spy.inputs[0]
    assert calls == []
    spy.inputs.clear()
    _train(tmp_path, "schedule.max_steps=1", "augment.auto_augment=rand-m9-mstd0.5-inc1", name="aa")
    assert len(calls) >= 16  # every image of the one 16-image training batch (eval images never)
    assert not torch.equal(spy.inputs[0], plain)

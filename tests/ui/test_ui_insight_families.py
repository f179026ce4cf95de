"""The attention pane on probes saved by the real probe from a GAP ViT (no CLS token) and a Hugging Face
distilled DeiT (CLS + distillation token), and the pane's line when probing switched off."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ui_helpers import SIZE, attention_pane, shown_map, wait_for

from tiny import TINY_TIMM

from vittui.analysis import attention as A
from vittui.models.build import build_model
from vittui.recipe import ModelSection
from vittui.runs.events import Log
from vittui.ui.app import create_app
from vittui.ui.heatmap import ascii_heatmap
from vittui.ui.widgets.attention_pane import AttentionPane

pytestmark = pytest.mark.anyio

TINY = TINY_TIMM


def pane(app) -> AttentionPane:
    return attention_pane(app)


def save_real_probe(model, fake_run) -> np.ndarray:
    """Probe `model` as the loop does, emit its event, return the attention (L, B, H, T, T) as saved."""
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    _, _, event = A.probe(model, images, fake_run.path / "attention", step=20)
    fake_run.emit(event)
    with np.load(fake_run.path / event.path) as z:
        return z["attention"].astype(np.float64)


def by_hand_patch_mean(attn: np.ndarray, prefix: int) -> np.ndarray:
    """Layer 0, image 0, head 0: the attention each patch receives, averaged over the patch queries."""
    a = attn[0, 0, 0]
    return np.array([[a[prefix:, prefix + 4 * r + c].mean() for c in range(4)] for r in range(4)])


def by_hand_cls(attn: np.ndarray, prefix: int) -> np.ndarray:
    return attn[0, 0, 0, 0, prefix:].reshape(4, 4)


async def test_gap_vit_probe_shows_the_patch_mean_map_and_says_so(runs_root, fake_run, no_gpu, monkeypatch):
    import timm

    monkeypatch.setenv("NO_COLOR", "1")
    fake_run.started()
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, class_token=False,
                              global_pool="avg", **TINY)
    attn = save_real_probe(model, fake_run)
    assert attn.shape[-1] == 16  # no prefix token at all
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: pane(app).view.probe is not None, what="probe drawn")
        text = pane(app).text
        assert "map: attention received per patch (mean over patch queries)" in text
        assert "CLS" not in text
        want = by_hand_patch_mean(attn, 0)
        assert shown_map(app) == ascii_heatmap(want, 16, 8)
        assert len(set("".join(shown_map(app)))) > 2  # a real map, not a blank
        await pilot.press("o")
        assert "map: rollout from the mean of patch queries" in pane(app).text


async def test_hf_distilled_deit_probe_shows_the_cls_map_over_16_patches(runs_root, fake_run, no_gpu, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    fake_run.started()
    torch.manual_seed(0)
    model = build_model(ModelSection(name="facebook/deit-tiny-distilled-patch16-224", source="hf", **TINY), 3)
    attn = save_real_probe(model, fake_run)
    assert attn.shape[-1] == 18  # CLS + distillation + 4x4 patches
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: pane(app).view.probe is not None, what="probe drawn")
        text = pane(app).text
        assert "map: CLS attention" in text
        assert pane(app).view.probe.prefix == 2 and pane(app).view.probe.grid == (4, 4)
        assert shown_map(app) == ascii_heatmap(by_hand_cls(attn, 2), 16, 8)
        await pilot.press("o")
        assert "map: rollout from CLS" in pane(app).text


async def test_pane_says_why_probing_switched_off(runs_root, fake_run, no_gpu, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    fake_run.started()
    line = A.probe_off_message(A.ProbeUnavailable(A.windowed_message(torch.nn.Linear(1, 1))))
    fake_run.emit(Log(level="warning", message=line, step=5))
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "attention probe off" in pane(app).text, what="off line")
        text = pane(app).text
        assert "OFF attention probe off: not available for windowed attention" in text
        assert text.count("attention probe off") == 1
        assert "no attention probe yet" not in text


async def test_nan_injected_step_shows_the_non_finite_flag(runs_root, fake_run, no_gpu):
    """A real GradFlow from a model with a NaN in block 1's attention gradient, through events.jsonl."""
    import timm

    from vittui.analysis.gradients import grad_flow
    from vittui.runs.events import GradFlow, decode
    from vittui.ui.widgets.grad_pane import GradPane

    fake_run.started()
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=3, **TINY)
    torch.nn.functional.cross_entropy(model(torch.randn(2, 3, 32, 32)), torch.tensor([0, 1])).backward()
    model.blocks[1].attn.qkv.weight.grad[0, 0] = float("nan")
    fake_run.emit(grad_flow(model, step=20, clip_grad=1.0))
    lines = (fake_run.path / "events.jsonl").read_text().splitlines()
    written = [e for e in map(decode, lines) if isinstance(e, GradFlow)]
    assert written and written[0].flags[0].startswith("blocks.1: non-finite gradient in block 1 attn")
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        grads = app.screen.query_one(GradPane)
        await wait_for(pilot, lambda: grads.flow is not None)
        text = grads.text
        assert "FLAG blocks.1: non-finite gradient in block 1 attn" in text
        assert "norms after clipping to max norm 1" in text
        row1 = next(line for line in text.splitlines() if line.replace("!", " ").split()[:1] == ["1"])
        assert row1.startswith("!") and "NaN/Inf" in row1

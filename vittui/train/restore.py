"""A trained model back from its run directory: the recipe rebuilds the network (with LoRA adapters
when the run used them), the checkpoint fills in the weights. Used by eval, predict and export."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from vittui.recipe import Recipe, load
from vittui.runs.events import RunStarted, read_all
from vittui.runs.store import RunDir
from vittui.train import checkpoint as ckpt


@dataclass
class RestoredModel:
    model: nn.Module
    recipe: Recipe
    classes: list[str]
    checkpoint: Path
    ema: bool


def run_classes(run: RunDir) -> list[str] | None:
    """Class names as the worker saw them (from the run's first RunStarted event)."""
    for e in read_all(run.events_path):
        if isinstance(e, RunStarted):
            return list(e.classes)
    return None


def restore(run_path: str | Path, which: str = "best", *, ema: bool | None = None) -> RestoredModel:
    """`which`: best | last | a step number. EMA weights are used when the run kept them (ema=None)."""
    from vittui.models.adapt import apply_adaptation
    from vittui.models.build import build_model

    run = RunDir(run_path)
    recipe = load(run.recipe_path)
    found = ckpt.find(run.checkpoints, which) or (ckpt.find(run.checkpoints, "last") if which == "best" else None)
    if found is None:
        raise ckpt.CheckpointError(f"no {which!r} checkpoint in {run.checkpoints}")
    classes = run_classes(run)
    if classes is None:
        from vittui.data.sources import build_data

        classes = list(build_data(recipe, for_eval=True).classes)
    # weights come from the checkpoint: never reach for pretrained weights here
    from dataclasses import replace

    arch = replace(recipe.model, pretrained=False, weights="")
    model = build_model(arch, len(classes))
    model, _ = apply_adaptation(model, recipe.adapt)
    use_ema = (found / "ema.safetensors").exists() if ema is None else ema
    ckpt.load_weights(model, found, ema=use_ema)
    model.eval()
    return RestoredModel(model=model, recipe=recipe, classes=classes, checkpoint=found, ema=use_ema)

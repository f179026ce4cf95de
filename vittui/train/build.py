"""Everything the training loop trains with, made once from the Recipe: `build()` returns a `Built`
(accelerator, data, model and its uncompiled self, EMA, optimizer, schedule, loss, step counts).

Keep the order of the steps: the model's initial weights, dropout and augmentation come from the
seeded RNGs, and a run's losses for a seed (which the exported script reproduces, tests/planning)
depend on what draws from them first.
"""

from __future__ import annotations

import hashlib
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from vittui.recipe import Recipe, RecipeError
from vittui.runs import events as ev
from vittui.train.events_out import Emitter
from vittui.train.optim import build_optimizer, build_scheduler

PROBE_IMAGES = 4  # validation images whose attention the dashboard shows, fixed for the whole run


@dataclass
class Built:
    """Everything the loop trains with, made once from the Recipe."""

    recipe: Recipe
    run_path: Path
    acc: Any  # accelerate.Accelerator: device, precision, several processes
    out: Emitter  # events.jsonl and status.json
    data: Any  # vittui.data.sources.Data: datasets, loaders, mixup, classes
    model: nn.Module  # what trains: prepared by accelerate, compiled when the recipe says so
    raw_model: nn.Module  # the module itself: checkpoints, probes and EMA see its parameter names
    ema: Any  # timm ModelEmaV3, or None
    optimizer: torch.optim.Optimizer
    scheduler: Any  # timm CosineLRScheduler, stepped per update
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    train_loader: Any  # sharded by accelerate with several processes
    trainable: list[nn.Parameter]
    params: Any  # vittui.models.adapt report: total and trainable parameter counts
    accum: int  # micro-batches per optimizer step
    steps_per_epoch: int
    total_steps: int
    probe_images: torch.Tensor  # the fixed validation images of the attention probe

    @property
    def batches_per_epoch(self) -> int:
        return self.steps_per_epoch * self.accum


def build(recipe: Recipe, run_path: Path, on_event: Callable[[ev.Event], None] | None = None, *,
          record: bool = True) -> Built:
    """Accelerator, data, model, EMA, optimizer, loss, schedule; the order keeps the seeded RNG draws.
    `record=False` writes nothing under `run_path` (the finders build a recipe without a run directory)."""
    from vittui.data.samplers import seed_per_image
    from vittui.data.sources import build_data

    acc = _accelerator(recipe)
    if recipe.compute.threads:
        torch.set_num_threads(recipe.compute.threads)
    out = Emitter(run_path, enabled=record and acc.is_main_process, on_event=on_event, notify=recipe.run.notify)
    data = build_data(recipe)  # splits and samplers carry their own seeds
    out.watch_skips(data)
    seed_everything(recipe.run.seed)  # after the data: its first build may draw from the global RNGs
    model, params = _model(recipe, len(data.classes), acc.device, out)
    optimizer = build_optimizer(model, recipe, acc.device.type)
    ema = None
    if recipe.regularize.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=recipe.regularize.ema_decay)
    criterion = _criterion(recipe, data, acc.device)
    # Several processes: accelerate wraps the model in DDP and shards the training batches. Every rank
    # evaluates the whole validation set, so rank 0's numbers are the full set's.
    train_loader = data.train_loader
    if acc.num_processes > 1:
        # accelerate's loader reads a batch ahead: crops from per-image seeds keep resume exact (data/samplers.py)
        seed_per_image(train_loader)
        model, optimizer, train_loader = acc.prepare(model, optimizer, train_loader)
    else:
        model, optimizer = acc.prepare(model, optimizer)
    raw_model = acc.unwrap_model(model)  # before compiling: its names have no "_orig_mod."
    if recipe.compute.compile:
        model = torch.compile(model)
    accum = recipe.compute.accumulation
    if len(train_loader) < accum:
        raise RecipeError(f"compute.accumulation = {accum} is more than the {len(train_loader)} batches of an "
                          "epoch: lower it or data.batch_size")
    steps_per_epoch = len(train_loader) // accum
    total_steps = recipe.schedule.epochs * steps_per_epoch
    if recipe.schedule.max_steps:
        total_steps = min(total_steps, recipe.schedule.max_steps)
    return Built(recipe=recipe, run_path=run_path, acc=acc, out=out, data=data, model=model, raw_model=raw_model,
                 ema=ema, optimizer=optimizer, criterion=criterion, train_loader=train_loader,
                 scheduler=build_scheduler(optimizer, recipe, total_steps, steps_per_epoch),
                 trainable=[q for q in model.parameters() if q.requires_grad], params=params, accum=accum,
                 steps_per_epoch=steps_per_epoch, total_steps=total_steps,
                 probe_images=_probe_batch(data.val_loader, PROBE_IMAGES).to(acc.device))


def _model(recipe: Recipe, num_classes: int, device, out: Emitter):
    from vittui.models.adapt import apply_adaptation
    from vittui.models.build import build_model
    from vittui.models.checkpointing import set_grad_checkpointing

    model = build_model(recipe.model, num_classes, drop_path=recipe.regularize.drop_path,
                        dropout=recipe.regularize.dropout)
    model, params = apply_adaptation(model, recipe.adapt)
    if recipe.compute.grad_checkpointing and not set_grad_checkpointing(model, True):
        out.log("warning", "gradient checkpointing is not supported by this model; training without it")
    if recipe.compute.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.to(device), params


def _criterion(recipe: Recipe, data, device) -> nn.Module:
    if data.mixup is not None:
        from timm.loss import SoftTargetCrossEntropy

        return SoftTargetCrossEntropy()  # mixup's targets are soft (and already smoothed)
    weight = None
    if recipe.data.class_balance == "weighted_loss":
        from vittui.data.transforms import class_weights

        weight = torch.tensor(class_weights(data.class_counts), dtype=torch.float32, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=recipe.regularize.label_smoothing)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_step(seed: int, rank: int, step: int) -> None:
    """Several processes: each rank seeds its RNGs from (run.seed, rank, step) before every optimizer step.
    Mixup's lambdas and the drop-path and dropout masks then differ between ranks (timm seeds seed + rank for
    the same reason), and a resume still repeats every rank's draws exactly although a checkpoint, written by
    rank 0 alone, holds only rank 0's RNG (no gather at each save, which would hang the OOM save of one rank)."""
    digest = hashlib.blake2b(f"{seed}/{rank}/{step}".encode(), digest_size=8).digest()
    seed_everything(int.from_bytes(digest, "little") >> 1)


def _accelerator(recipe: Recipe):
    from accelerate import Accelerator

    c = recipe.compute
    cpu = c.device == "cpu" or (c.device == "auto" and not torch.cuda.is_available())
    if c.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compute.device = 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    precision = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[c.precision]
    if int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps process-wide state; a second run in one process (tests, notebooks) may
        # ask for another precision, which is only allowed on a fresh state.
        from accelerate.state import AcceleratorState, GradientState

        AcceleratorState._reset_state(reset_partial_state=True)
        GradientState._reset_state()
    return Accelerator(cpu=cpu, mixed_precision=precision)


def _probe_batch(loader, n: int) -> torch.Tensor:
    """The first `n` validation images (the val loader is in a fixed order), the same at every probe."""
    images = []
    with torch.random.fork_rng(devices=[]):
        for batch in loader:
            images.append(batch[0])
            if sum(len(b) for b in images) >= n:
                break
    return torch.cat(images)[:n] if images else torch.empty(0)



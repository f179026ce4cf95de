"""The training loop, top to bottom on one page.

Everything it does comes from the Recipe. The extras — events, control, EMA, probes, checkpoints —
are single calls at marked points, so a reader can follow a step from batch to optimizer update.
Resuming restores weights, optimizer, EMA, scaler, RNG states and the position inside the epoch, so
N steps + resume + N steps gives the same losses as 2N straight.
"""

from __future__ import annotations

import math
import os
import random
import time
from itertools import islice
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from vittui.recipe import Recipe
from vittui.runs import events as ev
from vittui.train import checkpoint as ckpt
from vittui.train.control_point import CommandSource, ControlPoint
from vittui.train.events_out import Emitter
from vittui.train.optim import apply_lr_scale, build_optimizer, build_scheduler, current_lr

NAN_HOOK_ENV = "VITTUI_TEST_NAN_AT_STEP"  # test hook: poison the loss once at this step
OOM_HOOK_ENV = "VITTUI_TEST_OOM_AT_STEP"  # test hook: raise CUDA out-of-memory at this step
PROBE_IMAGES = 4  # validation images whose attention the dashboard shows, fixed for the whole run


@dataclass
class TrainResult:
    state: str  # finished | stopped
    step: int
    best_top1: float | None
    last_top1: float | None
    wall_time: float


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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


@torch.no_grad()
def evaluate(model: nn.Module, loader, device, autocast,
             skipped: set[str] | None = None) -> tuple[float, float, float]:
    """Mean loss, top-1 and top-5 (%) on the loader; runs under a forked RNG so it never shifts training.
    The identifiers of unreadable images the loader dropped are added to `skipped`."""
    was_training = model.training
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    with torch.random.fork_rng(devices=[]):
        for batch in loader:
            if skipped is not None and len(batch) > 2:
                skipped.update(map(str, batch[2]))
            x, y = batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True)
            if len(y) == 0:
                continue
            with autocast():
                logits = model(x)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            k = min(5, logits.shape[1])
            topk = logits.topk(k, dim=1).indices
            top1 += (topk[:, 0] == y).sum().item()
            top5 += (topk == y[:, None]).any(dim=1).sum().item()
            n += len(y)
    model.train(was_training)
    if n == 0:
        return float("nan"), 0.0, 0.0
    return loss_sum / n, 100.0 * top1 / n, 100.0 * top5 / n


def train(recipe: Recipe, run_path: str | Path, control: CommandSource | None = None, *, resume: bool = False,
          on_event: Callable[[ev.Event], None] | None = None, control_point: ControlPoint | None = None) -> TrainResult:
    from vittui.data.samplers import seed_per_image
    from vittui.data.sources import build_data
    from vittui.data.transforms import class_weights
    from vittui.models.adapt import apply_adaptation
    from vittui.models.build import build_model
    from vittui.models.checkpointing import set_grad_checkpointing

    run_path = Path(run_path)
    acc = _accelerator(recipe)
    if recipe.compute.threads:
        torch.set_num_threads(recipe.compute.threads)
    out = Emitter(run_path, enabled=acc.is_main_process, on_event=on_event)

    # ---- data, model, optimizer ------------------------------------------------------------------
    data = build_data(recipe)  # splits and samplers carry their own seeds
    out.watch_skips(data)
    seed_everything(recipe.run.seed)  # after the data: its first build may draw from the global RNGs
    model = build_model(recipe.model, len(data.classes), drop_path=recipe.regularize.drop_path,
                        dropout=recipe.regularize.dropout)
    model, report = apply_adaptation(model, recipe.adapt)
    if recipe.compute.grad_checkpointing and not set_grad_checkpointing(model, True):
        out.log("warning", "gradient checkpointing is not supported by this model; training without it")
    if recipe.compute.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(acc.device)
    optimizer = build_optimizer(model, recipe, acc.device.type)
    ema = None
    if recipe.regularize.ema:
        from timm.utils import ModelEmaV3

        ema = ModelEmaV3(model, decay=recipe.regularize.ema_decay)
    if recipe.data.class_balance == "weighted_loss":
        weight = torch.tensor(class_weights(data.class_counts), dtype=torch.float32, device=acc.device)
    else:
        weight = None
    if data.mixup is not None:
        from timm.loss import SoftTargetCrossEntropy

        criterion: nn.Module = SoftTargetCrossEntropy()
    else:
        criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=recipe.regularize.label_smoothing)
    # Several processes: accelerate wraps the model in DDP and shards the training batches. Every rank
    # evaluates the whole validation set, so rank 0's numbers are the full set's.
    train_loader, val_loader = data.train_loader, data.val_loader
    if acc.num_processes > 1:
        # accelerate's loader reads a batch ahead: crops from per-image seeds keep resume exact (data/samplers.py)
        seed_per_image(train_loader)
        model, optimizer, train_loader = acc.prepare(model, optimizer, train_loader)
    else:
        model, optimizer = acc.prepare(model, optimizer)
    # the uncompiled module: checkpoints, probes and EMA see its own parameter names (not "_orig_mod.…")
    raw_model = acc.unwrap_model(model)
    if recipe.compute.compile:
        model = torch.compile(model)
    accum = recipe.compute.accumulation
    steps_per_epoch = max(len(train_loader) // accum, 1)
    total_steps = recipe.schedule.epochs * steps_per_epoch
    if recipe.schedule.max_steps:
        total_steps = min(total_steps, recipe.schedule.max_steps)
    scheduler = build_scheduler(optimizer, recipe, total_steps, steps_per_epoch)
    trainable = [p for p in model.parameters() if p.requires_grad]

    # ---- resume ----------------------------------------------------------------------------------
    pos = ckpt.Position(step=0, epoch=0, batch=0)
    best_top1: float | None = None
    last_top1: float | None = None
    rng_to_restore = None
    if resume:
        found = ckpt.find(out.run.checkpoints, "last")
        if found is None:
            raise ckpt.CheckpointError(f"nothing to resume: no checkpoint in {out.run.checkpoints}")
        state = ckpt.load_state(found)
        ckpt.load_weights(raw_model, found)
        if ema is not None and (found / "ema.safetensors").exists():
            ckpt.load_weights(ema.module, found, ema=True)
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state and acc.scaler is not None:
            acc.scaler.load_state_dict(state["scaler"])
        pos = ckpt.Position(**state["position"])
        best_top1, last_top1 = state.get("best_top1"), state.get("last_top1")
        rng_to_restore = state["rng"]
        out.log("info", f"resumed from {found.name} at step {pos.step}")
    scheduler.step_update(pos.step)

    def autocast():
        return acc.autocast()

    val_skipped: set[str] = set()  # unreadable validation images, each counted once however many evals

    def run_eval() -> None:
        nonlocal last_top1
        seen = set(val_skipped)
        loss, top1, top5 = evaluate(model, val_loader, acc.device, autocast, skipped=val_skipped)
        out.count_skipped(sorted(val_skipped - seen))
        ema_top1 = evaluate(ema.module, val_loader, acc.device, autocast)[1] if ema is not None else None
        last_top1 = top1
        out.emit(ev.Eval(step=pos.step, epoch=pos.epoch + pos.batch / (steps_per_epoch * accum),
                         loss=loss, top1=top1, top5=top5, ema_top1=ema_top1))
        out.status(last_top1=top1, best_top1=max(top1, best_top1 or 0.0))

    def save_checkpoint() -> None:
        nonlocal best_top1
        if not acc.is_main_process:
            return
        is_best = last_top1 is not None and (best_top1 is None or last_top1 >= best_top1)
        if is_best:
            best_top1 = last_top1
        state = {
            "optimizer": optimizer.state_dict(),
            "position": {"step": pos.step, "epoch": pos.epoch, "batch": pos.batch},
            "rng": ckpt.rng_state(),
            "best_top1": best_top1,
            "last_top1": last_top1,
        }
        if acc.scaler is not None:
            state["scaler"] = acc.scaler.state_dict()
        path = ckpt.save(out.run.checkpoints, pos.step, model=raw_model,
                         ema=ema.module if ema is not None else None, state=state,
                         keep_last=recipe.run.keep_last, best=is_best, metric=last_top1)
        out.emit(ev.CheckpointSaved(step=pos.step, path=str(path.relative_to(run_path)), best=is_best,
                                    metric=last_top1))
        out.status(last_checkpoint_step=pos.step, best_top1=best_top1)

    cp = control_point or ControlPoint(source=control)
    cp.ack = lambda cmd, step, ok, detail: out.emit(
        ev.ControlAck(command=cmd.command, id=cmd.id, step=step, ok=ok, detail=detail))
    cp.set_state = lambda state, reason: out.set_state(state, pos.step, reason)
    cp.do_checkpoint, cp.do_eval = save_checkpoint, run_eval
    boundary = {"step": 0, "epoch": 0, "batch": 0}  # position at the last optimizer-step boundary

    def emergency_checkpoint() -> None:
        """After an out-of-memory error: drop the half-accumulated gradients and save the weights as of
        the last completed step (the RNG has moved on, so this resume is not bit-exact)."""
        optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        pos.step, pos.epoch, pos.batch = boundary["step"], boundary["epoch"], boundary["batch"]
        save_checkpoint()

    cp.emergency_checkpoint = emergency_checkpoint
    cp.knobs.eval_every = cp.knobs.eval_every or recipe.run.eval_every
    cp.knobs.probe_every = cp.knobs.probe_every or recipe.run.probe_every
    if acc.num_processes > 1:
        from accelerate.utils import broadcast_object_list

        cp.broadcast = lambda cmds: broadcast_object_list([cmds])[0]

    out.emit(ev.RunStarted(
        name=run_path.name, model=recipe.model.name, params_total=report.total, params_trainable=report.trainable,
        num_classes=len(data.classes), classes=list(data.classes), train_size=data.train_size,
        val_size=data.val_size, steps_per_epoch=steps_per_epoch, total_steps=total_steps,
        device=str(acc.device), resumed_from_step=pos.step))
    out.log("info", f"{recipe.model.name}: {report}")
    out.status(total_steps=total_steps, pid=os.getpid())
    probe_images = _probe_batch(val_loader, PROBE_IMAGES).to(acc.device)

    def run_probe() -> None:
        """Attention maps of the fixed probe images, eager path on this call only; a few ms."""
        if not acc.is_main_process or probe_images.numel() == 0:
            return
        from vittui.analysis.attention import probe

        try:
            with torch.random.fork_rng(devices=[]):
                _, _, event = probe(raw_model, probe_images, out.run.attention, pos.step,
                                    mean=recipe.data.mean, std=recipe.data.std)
        except Exception as e:  # noqa: BLE001 - an exotic model must not kill the run for a plot
            out.log("warning", f"attention probe off: {type(e).__name__}: {e}")
            cp.knobs.probe_every = 0
            return
        out.emit(event)
    out.set_state("running", pos.step, "started")
    if rng_to_restore is not None:
        ckpt.set_rng_state(rng_to_restore)

    # ---- the loop --------------------------------------------------------------------------------
    nan_at = int(os.environ.get(NAN_HOOK_ENV, "0") or 0)
    oom_at = int(os.environ.get(OOM_HOOK_ENV, "0") or 0)
    t_start = time.time()
    model.train()
    stop = pos.step >= total_steps
    while not stop:
        batches_per_epoch = steps_per_epoch * accum
        t_step = t_data = time.perf_counter()
        data_time, micro, loss_sum, seen = 0.0, 0, 0.0, 0
        epoch_start_batch, rows = pos.batch, 0
        for x, y, skipped in islice(_epoch(acc, train_loader, pos.epoch, pos.batch), batches_per_epoch - pos.batch):
            out.count_skipped(skipped)
            if micro == 0:
                boundary.update(step=pos.step, epoch=pos.epoch, batch=pos.batch)
            pos.batch += 1
            if len(y) == 0:  # every image of this batch was unreadable
                t_data = time.perf_counter()
                continue
            rows += len(y)
            data_time += time.perf_counter() - t_data
            x, y = x.to(acc.device, non_blocking=True), y.to(acc.device, non_blocking=True)
            if recipe.compute.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if data.mixup is not None:
                x, y = data.mixup(x, y)
            if oom_at and pos.step + 1 == oom_at:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (injected by " + OOM_HOOK_ENV + ")")
            with autocast():
                logits = model(x)
                loss = criterion(logits, y)
            if nan_at and pos.step + 1 == nan_at:
                loss = loss * float("nan")
                nan_at = 0
            acc.backward(loss / accum)
            loss_sum += loss.item()
            seen += len(x)
            micro += 1
            if micro < accum:
                t_data = time.perf_counter()
                continue

            # ---- optimizer step ----
            step_loss = loss_sum / accum
            if acc.num_processes > 1:  # every rank must agree on a NaN pause
                step_loss = acc.reduce(torch.tensor(step_loss, device=acc.device), "mean").item()
            if not math.isfinite(step_loss):
                optimizer.zero_grad(set_to_none=True)
                out.emit(ev.Fault(fault="nan", step=pos.step + 1, quantity="loss", message=(
                    f"loss is {step_loss} at step {pos.step + 1}; the update was skipped and the run paused"),
                    suggestion="resume with a lower lr (vittui ctl RUN resume --lr-scale 0.5) or stop"))
                cp.pause(f"non-finite loss at step {pos.step + 1}")
            else:
                grad_norm = acc.clip_grad_norm_(trainable, recipe.optim.clip_grad or float("inf"))
                probing = cp.knobs.probe_every and (pos.step + 1) % cp.knobs.probe_every == 0
                if probing and acc.is_main_process:
                    from vittui.analysis.gradients import grad_flow

                    out.emit(grad_flow(raw_model, step=pos.step + 1))
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                pos.step += 1
                scheduler.step_update(pos.step)
                apply_lr_scale(optimizer, cp.knobs.lr_scale)
                if ema is not None:
                    ema.update(raw_model, step=pos.step)
                step_time = time.perf_counter() - t_step
                if pos.step % recipe.run.log_every == 0 or pos.step == total_steps:
                    out.emit(ev.Step(
                        step=pos.step, epoch=pos.epoch + pos.batch / batches_per_epoch, loss=step_loss,
                        lr=current_lr(optimizer), grad_norm=float(grad_norm), images_per_s=seen / step_time,
                        data_time=data_time, step_time=step_time, **_cuda_memory()))
                if probing:
                    run_probe()
                if cp.knobs.eval_every and pos.step % cp.knobs.eval_every == 0:
                    run_eval()
                if recipe.run.checkpoint_every and pos.step % recipe.run.checkpoint_every == 0:
                    save_checkpoint()
            stop = cp(pos.step) or pos.step >= total_steps
            micro, loss_sum, seen, data_time = 0, 0.0, 0, 0.0
            if stop:
                break
            t_step = t_data = time.perf_counter()
        else:
            pos.batch = batches_per_epoch  # the epoch's batches are all consumed
        if rows == 0 and pos.batch > epoch_start_batch:
            from vittui.data.errors import DataError

            raise DataError(f"every training image of epoch {pos.epoch + 1} was unreadable "
                            f"({out.skipped} skipped, e.g. {', '.join(map(str, out.skipped_examples[:2]))})")
        if pos.batch >= batches_per_epoch:
            pos.epoch, pos.batch = pos.epoch + 1, 0
            if not cp.stop_now:
                run_eval()
                save_checkpoint()
        elif not cp.stop_now:  # stopped or finished mid-epoch
            if pos.step >= total_steps:
                run_eval()
            save_checkpoint()
        stop = stop or pos.step >= total_steps

    state = "finished" if pos.step >= total_steps else "stopped"
    wall = time.time() - t_start
    out.emit(ev.Finished(step=pos.step, best_top1=best_top1, wall_time=wall))
    out.set_state(state, pos.step, "")
    out.close()
    acc.end_training()
    return TrainResult(state=state, step=pos.step, best_top1=best_top1, last_top1=last_top1, wall_time=wall)


def _probe_batch(loader, n: int) -> torch.Tensor:
    """The first `n` validation images (the val loader is in a fixed order), the same at every probe."""
    images = []
    with torch.random.fork_rng(devices=[]):
        for batch in loader:
            images.append(batch[0])
            if sum(len(b) for b in images) >= n:
                break
    return torch.cat(images)[:n] if images else torch.empty(0)


def _epoch(acc, loader, epoch: int, start: int):
    """The batches of `epoch` from micro-batch `start` on; the seeded samplers make this exact."""
    from vittui.data.samplers import iterate_from

    if acc.num_processes > 1:
        loader.set_epoch(epoch)
        return iter(acc.skip_first_batches(loader, start) if start else loader)
    return iterate_from(loader, epoch, start)


def _cuda_memory() -> dict[str, int]:
    if not torch.cuda.is_available():
        return {}
    return {"torch_allocated": torch.cuda.memory_allocated(), "torch_reserved": torch.cuda.memory_reserved()}

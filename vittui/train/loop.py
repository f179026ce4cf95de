"""The training loop, read top to bottom like nanoGPT's train.py:

    train() = build() -> resume_from_last() or step 0 -> _loop() -> _finish()

`build` (train/build.py) makes everything the Recipe asks for into one `Built`. `_loop` runs one
optimizer step per iteration: `accum` micro-batches, then the update, then the extras (Step event,
probe, eval, checkpoint, control point) as plain calls to the functions below it. Resuming
(train/resume.py) restores weights, optimizer, EMA, scaler, RNG states and the position inside the epoch,
so N steps + resume + N steps gives the same losses as 2N straight; the divergence guard's rewind goes
through the same code. What the loop carries between steps is a `Progress` (train/progress.py).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Callable

import torch

from vittui.recipe import Recipe
from vittui.runs import events as ev
from vittui.train import checkpoint as ckpt
from vittui.train.build import Built, build, seed_step
from vittui.train.control_point import CommandSource, ControlPoint, Knobs, StopRequest
from vittui.train.evaluate import evaluate
from vittui.train.faults import Faults, is_out_of_memory
from vittui.train.guard import DivergenceRule, better, metric_of
from vittui.train.optim import apply_lr_multiplier, current_lr
from vittui.train.progress import Progress, TrainResult, TrialPruned
from vittui.train.resume import resume_from_last, rewind


def train(recipe: Recipe, run_path: str | Path, control: CommandSource | None = None, *, resume: bool = False,
          on_event: Callable[[ev.Event], None] | None = None, stop: StopRequest | None = None,
          faults: Faults | None = None) -> TrainResult:
    """Train `recipe` into `run_path`. `control` delivers commands, `stop` is set by signal handlers,
    `faults` (tests only) poisons the loss or runs out of memory at a chosen step."""
    b = build(recipe, Path(run_path), on_event)
    p, rng = resume_from_last(b) if resume else (Progress(), None)
    s = recipe.schedule
    p.stopper.patience, p.stopper.metric, p.stopper.min_delta = (s.early_stop_patience, s.early_stop_metric,
                                                                  s.early_stop_min_delta)
    p.knobs.eval_every, p.knobs.probe_every = recipe.run.eval_every, recipe.run.probe_every
    p.guard.factor, p.guard.steps = recipe.run.divergence_factor, recipe.run.divergence_steps
    b.scheduler.step_update(p.pos.step)
    apply_lr_multiplier(b.optimizer, p.knobs.lr_multiplier)  # a resumed run keeps its multiplier
    if faults is not None:
        b.criterion = faults.wrap(b.criterion, step=lambda: p.pos.step + 1)
    cp = ControlPoint(
        source=control, stop=stop or StopRequest(),
        ack=lambda cmd, step, ok, detail, changes: b.out.emit(
            ev.ControlAck(command=cmd.command, id=cmd.id, step=step, ok=ok, detail=detail, changes=changes)),
        set_state=lambda state, reason: b.out.set_state(state, p.pos.step, reason),
        checkpoint=lambda: save_checkpoint(b, p), eval=lambda: run_eval(b, p), broadcast=_broadcast(b.acc),
        knobs=p.knobs)
    _announce(b, p)
    if rng is not None:
        ckpt.set_rng_state(rng)  # the last thing before the first step: nothing else draws from them
    t_start = time.time()
    try:
        _loop(b, p, cp)
    except TrialPruned as e:  # final: no checkpoint, the run ends here
        return _finish(b, p, time.time() - t_start, pruned=str(e))
    except Exception as e:
        if is_out_of_memory(e):
            emergency_checkpoint(b, p)
        raise
    return _finish(b, p, time.time() - t_start, suspended=cp.suspended and not cp.stop.now,
                   suspend_reason=cp.suspend_reason)


def _loop(b: Built, p: Progress, cp: ControlPoint) -> None:
    """One optimizer step per iteration: `accum` micro-batches, the update, then the extras."""
    pos, guard, batches = p.pos, p.guard, None
    while pos.step < b.total_steps:
        if b.acc.num_processes > 1:  # each rank draws its own masks and mixup, repeatable from the step alone
            seed_step(b.recipe.run.seed, b.acc.process_index, pos.step + 1)
        if batches is None or pos.batch == 0:
            batches = _epoch(b.acc, b.train_loader, pos.epoch, pos.batch)
        t_step = time.perf_counter()
        loss_sum, rows, data_time = forward_backward(b, batches)
        pos.batch += b.accum
        if pos.batch == b.batches_per_epoch:
            pos.epoch, pos.batch = pos.epoch + 1, 0

        step_loss = _mean_loss(b, loss_sum)  # the step's one .item(); every process gets the same number
        why, good_step = guard.check(pos.step + 1, step_loss) if rows else ("", 0)  # NaN/Inf or a spike
        if rows == 0:
            _no_readable_image(b, p)
        elif why:  # run.on_divergence: pause, or rewind to the checkpoint before it (train/guard.py)
            if _on_divergence(b, p, cp, guard, step_loss, why, good_step):
                batches = None  # rewound: the position moved back to the checkpoint's
                continue
        else:
            grad_norm = _update(b, p, cp.knobs)
            _log_step(b, p, step_loss, grad_norm, rows, data_time, t_step)
            if _due(cp.knobs.probe_every, pos.step):
                run_probe(b, p, cp.knobs)
            if _due(cp.knobs.eval_every, pos.step):
                run_eval(b, p)
            if _due(b.recipe.run.checkpoint_every, pos.step) or p.stopper.unsaved_best:  # early stop: keep the best
                save_checkpoint(b, p)

        stop = cp(pos.step) or pos.step >= b.total_steps or bool(p.early_stop)  # commands; blocks while paused
        if (pos.batch == 0 or stop) and not cp.stop.now:  # an epoch's end, or the run's
            if (pos.batch == 0 or pos.step >= b.total_steps) and not p.early_stop and p.eval_step != pos.step:
                run_eval(b, p)  # (not again when run.eval_every or a command just evaluated this step)
            save_checkpoint(b, p)
        if stop or p.early_stop:  # early stopping: schedule.early_stop_patience evals without improvement
            break


# ---- the step's parts ----------------------------------------------------------------------------------


def forward_backward(b: Built, batches) -> tuple[torch.Tensor, int, float]:
    """`accum` micro-batches from `batches`, forward and backward: their gradients add up. Returns the
    summed loss (on the device), the images used and the seconds spent waiting for data. Shared with the
    lr and batch-size finders (train/lr_find.py, train/batch_find.py), so they step exactly as training does."""
    data_time, loss_sum, rows = 0.0, torch.zeros((), device=b.acc.device), 0
    for _ in range(b.accum):  # gradient accumulation: the gradients of `accum` batches add up
        t_data = time.perf_counter()
        x, y = _next_batch(b, batches)
        data_time += time.perf_counter() - t_data
        if len(y) == 0:  # every image of this batch was unreadable
            continue
        with b.acc.autocast():
            loss = b.criterion(b.model(x), y)
        b.acc.backward(loss / b.accum)
        loss_sum, rows = loss_sum + loss.detach(), rows + len(y)
    return loss_sum, rows, data_time


def _next_batch(b: Built, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """The next micro-batch on the device (channels-last, mixed when the recipe says so), counting the
    unreadable images the loader dropped; empty when all of them were."""
    x, y, skipped = next(batches)
    b.out.count_skipped(skipped)
    if len(y) == 0:
        return x, y
    x, y = x.to(b.acc.device, non_blocking=True), y.to(b.acc.device, non_blocking=True)
    if b.recipe.compute.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    if b.data.mixup is not None:
        x, y = b.data.mixup(x, y)
    return x, y


def _mean_loss(b: Built, loss_sum: torch.Tensor) -> float:
    loss = loss_sum / b.accum
    if b.acc.num_processes > 1:  # every rank must agree on a NaN pause
        loss = b.acc.reduce(loss, "mean")
    return loss.item()


def _update(b: Built, p: Progress, knobs: Knobs) -> torch.Tensor:
    """Clip, the gradient-flow probe when due, the optimizer step, the scheduled lr times the user's
    multiplier, EMA. Returns the gradient norm before clipping."""
    grad_norm = b.acc.clip_grad_norm_(b.trainable, b.recipe.optim.clip_grad or float("inf"))
    if _due(knobs.probe_every, p.pos.step + 1) and b.acc.is_main_process:
        from vittui.analysis.gradients import grad_flow

        b.out.emit(grad_flow(b.raw_model, step=p.pos.step + 1, clip_grad=b.recipe.optim.clip_grad))
    b.optimizer.step()
    b.optimizer.zero_grad(set_to_none=True)
    p.pos.step += 1
    p.unreadable_steps = 0
    b.scheduler.step_update(p.pos.step)
    apply_lr_multiplier(b.optimizer, knobs.lr_multiplier)
    if b.ema is not None:
        b.ema.update(b.raw_model, step=p.pos.step)
    return grad_norm


def _on_divergence(b: Built, p: Progress, cp: ControlPoint, guard: DivergenceRule, loss: float, why: str,
                   good_step: int) -> bool:
    """A non-finite loss or a spike (train/guard.py): show which blocks' gradients went non-finite (NaN),
    drop the gradients and skip the update (its batches stay consumed); then rewind to the newest
    checkpoint at or before `good_step` (`run.on_divergence = "rewind"`, while rewinds are left) or pause.
    Returns True when it rewound."""
    step, run = p.pos.step + 1, b.recipe.run
    nan = not math.isfinite(loss)
    if nan and b.acc.is_main_process:
        from vittui.analysis.gradients import grad_flow

        b.out.emit(grad_flow(b.raw_model, step=step, before_clip=True))
    b.optimizer.zero_grad(set_to_none=True)
    # "divergence" in the reason: run.notify tells the user (runs/notify.py)
    fault, pause_why = ("nan", f"divergence: non-finite loss at step {step}") if nan else (
        "spike", f"divergence: loss spike at step {step}")
    if run.on_divergence == "rewind":
        found = ckpt.find_at_or_before(b.out.run.checkpoints, good_step)
        if found is not None and guard.rewinds < run.max_rewinds:
            rewind(b, p, cp, found, step=step, reason=why)  # the guard's mean back to the checkpoint's too
            guard.rewinds += 1
            return True
        fault = "divergence"
        why += (f"; no checkpoint at or before step {good_step} to rewind to" if found is None else
                f"; {guard.rewinds} rewind(s) done, the most run.max_rewinds allows")
    b.out.emit(ev.Fault(fault=fault, step=step, quantity="loss", message=(
        f"{why}; the update was skipped and the run paused"),
        suggestion="resume with a lower lr (vittui ctl RUN resume --lr-multiplier 0.5) or stop"))
    cp.pause(pause_why)
    return False


def _no_readable_image(b: Built, p: Progress) -> None:
    """A step whose batches were all unreadable takes no update; an epoch's worth of them is an error."""
    p.unreadable_steps += 1
    if p.unreadable_steps >= b.steps_per_epoch:
        from vittui.data.errors import DataError

        out = b.out
        raise DataError(f"every training image of {b.batches_per_epoch} batches in a row (an epoch's worth) was "
                        f"unreadable ({out.skipped} skipped, e.g. {', '.join(map(str, out.skipped_examples[:2]))})")


def _log_step(b: Built, p: Progress, loss: float, grad_norm: torch.Tensor, rows: int, data_time: float,
              t_step: float) -> None:
    step = p.pos.step
    if step % b.recipe.run.log_every and step != b.total_steps:
        return
    step_time = time.perf_counter() - t_step
    b.out.emit(ev.Step(step=step, epoch=_epoch_progress(b, p), loss=loss, lr=current_lr(b.optimizer),
                       grad_norm=float(grad_norm), images_per_s=rows / step_time, data_time=data_time,
                       step_time=step_time, **_cuda_memory()))


def _due(every: int, step: int) -> bool:
    return bool(every) and step % every == 0


def _epoch_progress(b: Built, p: Progress) -> float:
    return p.pos.epoch + p.pos.batch / b.batches_per_epoch


# ---- eval, checkpoint, probe: at marked points of the loop and on command ------------------------------


def run_eval(b: Built, p: Progress) -> None:
    seen = set(p.val_skipped)
    loss, top1, top5 = evaluate(b.model, b.data.val_loader, b.acc.device, b.acc.autocast, skipped=p.val_skipped)
    b.out.count_skipped(sorted(p.val_skipped - seen))
    ema_top1 = None
    if b.ema is not None:
        ema_top1 = evaluate(b.ema.module, b.data.val_loader, b.acc.device, b.acc.autocast).top1
    p.last_top1, p.eval_step = top1, p.pos.step
    b.out.emit(ev.Eval(step=p.pos.step, epoch=_epoch_progress(b, p), loss=loss, top1=top1, top5=top5,
                       ema_top1=ema_top1))
    b.out.status(last_top1=top1, best_top1=max(top1, p.best_top1 or 0.0))
    p.last_metric = metric_of(p.stopper.metric, top1, loss)
    if p.stopper.after_eval(p.last_metric):  # schedule.early_stop_patience evals without improvement
        p.early_stop = (f"early stop at step {p.pos.step}: no improvement in {p.stopper.patience} evals "
                        f"(best {p.stopper.metric} {p.stopper.best:.4g})")
        b.out.log("info", p.early_stop)
    pruned = b.out.pruned  # sweep: the trial's pruner said stop (reported by the emitter, vittui/sweep/report.py)
    if b.acc.num_processes > 1:  # only rank 0 reports to the study: every rank ends at this eval, or the
        pruned = _broadcast(b.acc)([pruned])[0]  # others wait in their next collective for a rank that left
    if pruned:
        raise TrialPruned(pruned)


def save_checkpoint(b: Built, p: Progress) -> None:
    if not b.acc.is_main_process:
        return
    # the best checkpoint follows schedule.early_stop_metric (top-1 by default): the latest wins a tie, except
    # under early stopping, where best is what the stopper calls an improvement (beyond early_stop_min_delta)
    st = p.stopper
    tie = p.last_metric == p.best_metric and not st.patience
    is_best = p.last_metric is not None and (tie or better(st.metric, p.last_metric, p.best_metric, st.min_delta))
    if is_best:
        p.best_top1, p.best_metric = p.last_top1, p.last_metric
    st.unsaved_best = False
    pos = p.pos
    state = ckpt.TrainState(
        optimizer=b.optimizer.state_dict(), position=ckpt.Position(pos.step, pos.epoch, pos.batch),
        rng=ckpt.rng_state(), best_top1=p.best_top1, last_top1=p.last_top1, best_metric=p.best_metric,
        last_metric=p.last_metric, early_stop=p.stopper.state(), divergence=p.guard.state(),
        lr_multiplier=p.knobs.lr_multiplier, scaler=b.acc.scaler.state_dict() if b.acc.scaler is not None else None)
    path = ckpt.save(b.out.run.checkpoints, pos.step, model=b.raw_model,
                     ema=b.ema.module if b.ema is not None else None, state=state,
                     keep_last=b.recipe.run.keep_last, best=is_best, metric=p.last_top1)
    b.out.emit(ev.CheckpointSaved(step=pos.step, path=str(path.relative_to(b.run_path)), best=is_best,
                                  metric=p.last_top1))
    b.out.status(last_checkpoint_step=pos.step, best_top1=p.best_top1)


def emergency_checkpoint(b: Built, p: Progress) -> None:
    """After an out-of-memory error: drop the half-accumulated gradients and save the weights as of the
    last completed step, where the position still stands (the RNG has moved on: not a bit-exact resume)."""
    try:
        b.optimizer.zero_grad(set_to_none=True)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        save_checkpoint(b, p)
    except Exception as e:  # noqa: BLE001 - the checkpoint is a courtesy; the fault is what matters
        b.out.log("warning", f"no checkpoint after the out-of-memory error: {type(e).__name__}: {e}")


def run_probe(b: Built, p: Progress, knobs: Knobs) -> None:
    """Attention maps of the fixed probe images, eager path on this call only; a few ms."""
    if not b.acc.is_main_process or b.probe_images.numel() == 0:
        return
    from vittui.analysis.attention import probe
    from vittui.runs.events import probe_off_message

    try:
        with torch.random.fork_rng(devices=[]):
            _, _, event = probe(b.raw_model, b.probe_images, b.out.run.attention, p.pos.step,
                                mean=b.recipe.data.mean, std=b.recipe.data.std)
    except Exception as e:  # noqa: BLE001 - an exotic model must not kill the run for a plot
        b.out.log("warning", probe_off_message(e))  # once: the pane shows why
        knobs.probe_every = 0
        return
    b.out.emit(event)


# ---- start and finish -------------------------------------------------------------------


def _announce(b: Built, p: Progress) -> None:
    r, data = b.recipe, b.data
    b.out.emit(ev.RunStarted(
        name=b.run_path.name, model=r.model.name, params_total=b.params.total, params_trainable=b.params.trainable,
        num_classes=len(data.classes), classes=list(data.classes), train_size=data.train_size,
        val_size=data.val_size, steps_per_epoch=b.steps_per_epoch, total_steps=b.total_steps,
        device=str(b.acc.device), resumed_from_step=p.pos.step))
    b.out.log("info", f"{r.model.name}: {b.params}")
    b.out.status(total_steps=b.total_steps, pid=os.getpid())
    b.out.set_state("running", p.pos.step, "started")


def _finish(b: Built, p: Progress, wall: float, *, suspended: bool = False, suspend_reason: str = "",
            pruned: str = "") -> TrainResult:
    """The run's last state. Suspended (checkpointed at this step, to be resumed by a new worker) writes
    no Finished event: the run is not over. Pruned (a sweep trial stopped by its pruner) is final."""
    if pruned:
        state, reason = "pruned", pruned
    elif p.pos.step >= b.total_steps or p.early_stop:
        state, reason = "finished", p.early_stop
    elif suspended:
        who = suspend_reason or "suspended by user"
        state, reason = "suspended", f"{who}: checkpoint at step {p.pos.step}, worker exited"
    else:
        state, reason = "stopped", ""
    if state != "suspended":
        b.out.emit(ev.Finished(step=p.pos.step, best_top1=p.best_top1, wall_time=wall))
    b.out.set_state(state, p.pos.step, reason)
    b.out.close()
    b.acc.end_training()
    return TrainResult(state=state, step=p.pos.step, best_top1=p.best_top1, last_top1=p.last_top1, wall_time=wall)


def _broadcast(acc) -> Callable | None:
    """With several processes, rank 0's commands (and its pruner's answer) reach every rank, so all pause
    (or end) at the same step."""
    if acc.num_processes == 1:
        return None
    from accelerate.utils import broadcast_object_list

    return lambda cmds: broadcast_object_list([cmds])[0]


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

"""Back to a checkpoint inside a live build: `--resume` (`resume_from_last`) and the divergence guard's
rewind (`rewind`) restore through the same `_restore`, so a rewound run continues exactly as a resumed one.

A checkpoint holds weights, EMA, optimizer, scaler, the position inside the epoch, the scores, the early
stopper's counters, the spike rule's running mean, the lr multiplier and every RNG state; the RNG states are set last, just before the
next step, because nothing else may draw from them in between."""

from __future__ import annotations

from pathlib import Path

from vittui.runs import events as ev
from vittui.train import checkpoint as ckpt
from vittui.train.build import Built
from vittui.train.control_point import ControlPoint
from vittui.train.optim import apply_lr_multiplier
from vittui.train.progress import Progress

START_OVER = "no checkpoint yet: starting over from step 0"


def resume_from_last(b: Built) -> tuple[Progress, dict | None]:
    """Weights, EMA, optimizer and scaler from the last checkpoint; the position, the scores and the RNG
    states to restore just before the first step. A run killed before its first checkpoint starts over
    from step 0 with its recipe (the same build, so the same seeds: the losses an uninterrupted run logs);
    its earlier events stay in the log, marked by a warning, and the fold rewinds them at the new
    RunStarted (runs/history.py)."""
    found = ckpt.find(b.out.run.checkpoints, "last")
    if found is None:
        b.out.emit(ev.Log(level="warning", message=START_OVER, step=0))
        b.out.status(best_top1=None, last_top1=None, last_checkpoint_step=None)
        return Progress(), None
    p, rng = _restore(b, found)
    b.out.log("info", f"resumed from {found.name} at step {p.pos.step}")
    return p, rng


def rewind(b: Built, p: Progress, cp: ControlPoint, found: Path, *, step: int, reason: str) -> None:
    """Back to checkpoint `found` exactly as `--resume` restores it (weights, EMA, optimizer, scaler,
    position, scores, RNG), with the lr multiplier scaled by `run.rewind_lr_factor`; the checkpoints after
    it are dropped (their steps are redone), and a `Rewound` event says so."""
    restored, rng = _restore(b, found)
    p.pos.step, p.pos.epoch, p.pos.batch = restored.pos.step, restored.pos.epoch, restored.pos.batch
    p.best_top1, p.last_top1 = restored.best_top1, restored.last_top1
    p.last_metric, p.best_metric = restored.last_metric, restored.best_metric
    p.stopper.load(restored.stopper.state())
    p.guard.load(restored.guard.state())  # the spike rule's running mean as of the checkpoint
    p.early_stop, p.unreadable_steps = "", 0
    if b.acc.is_main_process:
        ckpt.drop_after(b.out.run.checkpoints, p.pos.step)
    cp.knobs.lr_multiplier *= b.recipe.run.rewind_lr_factor
    b.scheduler.step_update(p.pos.step)
    apply_lr_multiplier(b.optimizer, cp.knobs.lr_multiplier)
    b.out.emit(ev.Rewound(step=step, to_step=p.pos.step, lr_multiplier=cp.knobs.lr_multiplier, reason=reason))
    b.out.status(step=p.pos.step, last_top1=p.last_top1, best_top1=p.best_top1, last_checkpoint_step=p.pos.step)
    ckpt.set_rng_state(rng)  # the last thing before the next step, as after a resume


def _restore(b: Built, found: Path) -> tuple[Progress, dict]:
    """Checkpoint `found` into the built objects; its Progress and RNG states (set just before the next
    step). One code path for `--resume` and the divergence guard's rewind."""
    state = ckpt.load_state(found)
    ckpt.load_weights(b.raw_model, found)
    if b.ema is not None and (found / "ema.safetensors").exists():
        ckpt.load_weights(b.ema.module, found, ema=True)
    b.optimizer.load_state_dict(state.optimizer)
    if state.scaler is not None and b.acc.scaler is not None:
        b.acc.scaler.load_state_dict(state.scaler)
    pos = state.position
    if pos.batch >= b.batches_per_epoch:  # saved at an epoch's last step, before it rolled over
        pos = ckpt.Position(step=pos.step, epoch=pos.epoch + 1, batch=0)
    p = Progress(pos=pos, best_top1=state.best_top1, last_top1=state.last_top1, last_metric=state.last_metric,
                 best_metric=state.best_metric)
    p.stopper.load(state.early_stop)
    p.guard.load(state.divergence)
    p.knobs.lr_multiplier = state.lr_multiplier
    return p, state.rng

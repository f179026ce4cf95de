"""Checkpoints written atomically and loaded safely.

    checkpoints/step-00001234/
      model.safetensors   weights (the trained model; LoRA adapters included)
      ema.safetensors     EMA weights when the recipe uses EMA
      state.pt            a TrainState (below): optimizer, scaler, RNG states, data position, metrics,
                          early stopping, the spike rule's mean, the lr knob — loaded with
                          weights_only=True, so a crafted pickle cannot run code
    checkpoints/last.json, best.json   pointers, rewritten atomically

A step folder is written under a temporary name and renamed into place, so a crash or a full disk
leaves the previous checkpoint whole.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model, save_model

from vittui.runs.store import atomic_write_text


class CheckpointError(RuntimeError):
    pass


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "python": _to_lists(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _to_lists(x):
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x):
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    random.setstate(_to_tuples(state["python"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Position:
    step: int  # optimizer steps done
    epoch: int  # epoch in progress
    batch: int  # micro-batches of that epoch already consumed


@dataclass
class TrainState:
    """What state.pt holds beside the weights: one schema for the loop that saves it (loop.save_checkpoint)
    and the resume that reads it (resume._restore). Checkpoints from before a field existed lack it;
    `from_dict` gives each its default here, in one place."""

    optimizer: dict[str, Any]
    position: Position
    rng: dict[str, Any]  # rng_state() of rank 0 (several ranks reseed per step: build.seed_step)
    best_top1: float | None = None
    last_top1: float | None = None
    best_metric: float | None = None  # schedule.early_stop_metric; top-1 in checkpoints older than it
    last_metric: float | None = None
    early_stop: dict[str, Any] | None = None  # EarlyStop.state()
    divergence: dict[str, Any] | None = None  # the spike rule's running mean, DivergenceRule.state()
    lr_multiplier: float = 1.0  # the live knob
    scaler: dict[str, Any] | None = None  # fp16's GradScaler

    def to_dict(self) -> dict[str, Any]:
        d = {f: getattr(self, f) for f in self.__dataclass_fields__ if f != "scaler"}
        d["position"] = {"step": self.position.step, "epoch": self.position.epoch, "batch": self.position.batch}
        if self.scaler is not None:
            d["scaler"] = self.scaler
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainState":
        return cls(optimizer=d["optimizer"], position=Position(**d["position"]), rng=d["rng"],
                   best_top1=d.get("best_top1"), last_top1=d.get("last_top1"),
                   best_metric=d.get("best_metric", d.get("best_top1")),
                   last_metric=d.get("last_metric", d.get("last_top1")),
                   early_stop=d.get("early_stop"), divergence=d.get("divergence"),
                   lr_multiplier=float(d.get("lr_multiplier", 1.0)), scaler=d.get("scaler"))


def save(ckpt_dir: Path, step: int, *, model, ema=None, state: TrainState, keep_last: int,
         best: bool = False, metric: float | None = None) -> Path:
    ckpt_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    final = ckpt_dir / f"step-{step:08d}"
    tmp = ckpt_dir / f".tmp-step-{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(mode=0o700)
    try:
        save_model(model, str(tmp / "model.safetensors"))
        if ema is not None:
            save_model(ema, str(tmp / "ema.safetensors"))
        torch.save(state.to_dict(), tmp / "state.pt")
        for f in tmp.iterdir():  # torch and safetensors follow the umask; a run is owner-only
            os.chmod(f, 0o600)
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        free = shutil.disk_usage(ckpt_dir).free
        if isinstance(e, Exception) and (_is_enospc(e) or free < (1 << 20)):
            raise CheckpointError(
                f"no space left on the disk of {ckpt_dir} writing the step {step} checkpoint "
                f"({free / (1 << 20):.1f} MiB free); the previous checkpoint is intact") from e
        raise
    pointer = json.dumps({"step": step, "path": final.name, "metric": metric})
    atomic_write_text(ckpt_dir / "last.json", pointer)
    if best:
        atomic_write_text(ckpt_dir / "best.json", pointer)
    prune(ckpt_dir, keep_last)
    return final


def _is_enospc(e: BaseException | None) -> bool:
    while e is not None:
        if getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e):
            return True
        e = e.__cause__ or e.__context__
    return False


def _pointer(ckpt_dir: Path, which: str) -> dict | None:
    try:
        return json.loads((ckpt_dir / f"{which}.json").read_text())
    except (FileNotFoundError, ValueError):
        return None


def prune(ckpt_dir: Path, keep_last: int) -> None:
    """Keep the newest `keep_last` step folders and the best one."""
    best = _pointer(ckpt_dir, "best")
    keep = {best["path"]} if best else set()
    steps = sorted(p for p in ckpt_dir.glob("step-*") if p.is_dir())
    keep |= {p.name for p in steps[-keep_last:]}
    for p in steps:
        if p.name not in keep:
            shutil.rmtree(p, ignore_errors=True)


def find(ckpt_dir: Path, which: str = "last") -> Path | None:
    """`last`, `best`, or a step number; falls back to the newest complete folder if a pointer is gone."""
    if which.isdigit():
        p = ckpt_dir / f"step-{int(which):08d}"
        return p if p.exists() else None
    ptr = _pointer(ckpt_dir, which)
    if ptr and (ckpt_dir / ptr["path"] / "state.pt").exists():
        return ckpt_dir / ptr["path"]
    complete = sorted(p for p in ckpt_dir.glob("step-*") if (p / "state.pt").exists())
    return complete[-1] if complete and which == "last" else None


def find_at_or_before(ckpt_dir: Path, step: int) -> Path | None:
    """The newest complete checkpoint at or before `step` (the divergence guard's last good one)."""
    complete = [p for p in ckpt_dir.glob("step-*") if (p / "state.pt").exists() and int(p.name[5:]) <= step]
    return max(complete, default=None)


def drop_after(ckpt_dir: Path, step: int) -> None:
    """Forget the checkpoints after `step` (a rewind redoes those steps): their folders go, `last` points
    at `step`'s folder, and a `best` pointer to a dropped folder goes with it."""
    for p in ckpt_dir.glob("step-*"):
        if int(p.name[5:]) > step:
            shutil.rmtree(p, ignore_errors=True)
    kept = ckpt_dir / f"step-{step:08d}"
    last = _pointer(ckpt_dir, "last")
    if last is not None and not (ckpt_dir / last["path"]).exists() and kept.exists():
        atomic_write_text(ckpt_dir / "last.json", json.dumps({"step": step, "path": kept.name, "metric": None}))
    best = _pointer(ckpt_dir, "best")
    if best is not None and not (ckpt_dir / best["path"]).exists():
        (ckpt_dir / "best.json").unlink(missing_ok=True)


def load_state(path: Path) -> TrainState:
    """The training state; weights_only=True refuses anything but tensors and plain containers."""
    try:
        d = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
    except Exception as e:  # pickle.UnpicklingError and friends
        raise CheckpointError(f"refusing to load {path / 'state.pt'}: {e}") from None
    try:
        return TrainState.from_dict(d)
    except (KeyError, TypeError) as e:
        raise CheckpointError(f"{path / 'state.pt'} is not a vittui training state (missing {e})") from None


def load_weights(model, path: Path, ema: bool = False) -> None:
    f = path / ("ema.safetensors" if ema else "model.safetensors")
    missing, unexpected = load_model(model, str(f), strict=False)
    if unexpected or missing:
        raise CheckpointError(f"{f} does not match the model: missing {missing[:3]}, unexpected {unexpected[:3]}")

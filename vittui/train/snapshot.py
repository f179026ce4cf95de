"""Everything a finder changes, saved before and put back after, so `find_lr(built)` and
`find_batch(built)` can run in the middle of a session and leave it exactly as it was.

A finder takes real optimizer steps: they move the weights, the optimizer's moments and step counts, the
param groups' lr, the gradients, the mixed-precision scaler, the global RNGs (dropout, augmentation,
mixup) and the train loader (its sampler counts epochs, its generator draws a seed per iteration).
Lightning's lr finder restores the weights from a checkpoint but not the rest (#6675); this puts back
every one of them, byte for byte. Copies live on the CPU, so a GPU search has the device to itself.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from vittui.train import checkpoint as ckpt

_SAMPLER_FIELDS = ("epoch", "_skip")  # vittui.data.samplers: the sampler's own epoch counter and skip


def _to_cpu(x: Any) -> Any:
    """A deep copy with every tensor cloned to the CPU (optimizer state holds tensors in dicts and lists)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", copy=True)
    if isinstance(x, dict):
        return {k: _to_cpu(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_cpu(v) for v in x)
    return copy.deepcopy(x)


@dataclass
class Snapshot:
    model: dict[str, torch.Tensor]
    grads: list[torch.Tensor | None]
    modes: list[bool]  # each module's `training` flag
    optimizer: dict
    scaler: dict | None
    rng: dict
    sampler: dict[str, Any]
    loader_generator: torch.Tensor | None


def take(b) -> Snapshot:
    """Copies of what a finder's steps change (`b` is a vittui.train.build.Built)."""
    loader = b.train_loader
    sampler = getattr(loader, "sampler", None)
    gen = getattr(loader, "generator", None)
    return Snapshot(
        model=_to_cpu(b.raw_model.state_dict()),
        grads=[None if p.grad is None else _to_cpu(p.grad) for p in b.raw_model.parameters()],
        modes=[m.training for m in b.raw_model.modules()],
        optimizer=_to_cpu(b.optimizer.state_dict()),
        scaler=_to_cpu(b.acc.scaler.state_dict()) if b.acc.scaler is not None else None,
        rng=ckpt.rng_state(),
        sampler={k: getattr(sampler, k) for k in _SAMPLER_FIELDS if hasattr(sampler, k)},
        loader_generator=gen.get_state() if gen is not None else None,
    )


def restore(b, s: Snapshot) -> None:
    """Put back everything `take` saved; the RNGs last, after anything that might draw from them."""
    b.optimizer.zero_grad(set_to_none=True)
    b.raw_model.load_state_dict(s.model)
    for p, g in zip(b.raw_model.parameters(), s.grads):
        p.grad = None if g is None else g.to(p.device, copy=True)
    for m, training in zip(b.raw_model.modules(), s.modes):
        m.training = training
    b.optimizer.load_state_dict(copy.deepcopy(s.optimizer))  # torch moves the state to each param's device
    if s.scaler is not None:
        b.acc.scaler.load_state_dict(s.scaler)
    sampler = getattr(b.train_loader, "sampler", None)
    for k, v in s.sampler.items():
        setattr(sampler, k, v)
    if s.loader_generator is not None:
        b.train_loader.generator.set_state(s.loader_generator)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    ckpt.set_rng_state(s.rng)

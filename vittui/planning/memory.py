"""How much memory a Recipe will need, and how long a step takes relative to a plain fine-tune.

Pure Python (no torch at import): the dashboard calls ``estimate`` on every edit of the recipe.

Where the bytes go, per training step:

* **weights** — every parameter in fp32 (autocast keeps fp32 master weights);
* **gradients** — fp32, trainable parameters only;
* **optimizer** — AdamW keeps two fp32 moments per trainable parameter, SGD with momentum one;
* **EMA** — a full fp32 copy of the model (timm ``ModelEmaV3``);
* **activations** — what autograd saves for backward. The per-block formula below was derived by counting
  the tensors PyTorch saves for a timm ``Block`` (``vittui.planning.measure`` does that with
  ``saved_tensors_hooks``) and is checked against it by ``benchmarks/estimator.py``;
* **workspace** — transient buffers of backward (the gradient of the largest activation and its input),
  plus, on a GPU, a CUDA context and allocator slack. The CPU harness cannot see these, so they are kept
  apart: ``measurable`` is everything else, and that is what the harness checks.

Saved tensors of one timm ViT block (B images, T tokens, C width, H heads, M MLP width; ``a`` = bytes of
the compute dtype, 4 in fp32 and 2 under bf16/fp16 autocast; the residual stream and LayerNorm stay fp32
under autocast, ``s`` = 4). Rules: a Linear saves its input when its weight trains and its weight when its
input needs a gradient (under autocast that weight is a bf16 copy, so it counts; in fp32 it is the
parameter itself); a LayerNorm saves input, mean and rstd when anything needs a gradient through it.
With everything trainable::

    norm1      s·BTC + 8BT          (input, mean, rstd)
    qkv        a·BTC                (normed input)            + a·3C² weight copy (autocast)
    attention  a·3BTC + a·BTC + 4BHT (q, k, v share qkv's storage; output; logsumexp)   fused SDPA
               a·3BTC + a·BHT² + a·BTC                 (q·scale, kᵀ, v, softmax output, proj input copy)
    proj       (input = attention output, counted once)   + a·C² weight copy (autocast)
    norm2      s·BTC + 8BT
    fc1        a·BTC                                      + a·CM weight copy (autocast)
    GELU       a·BTM                (its input)
    fc2        a·BTM                (GELU output)         + a·MC weight copy (autocast)

That is 16·BTC·4 bytes per block in fp32 with M = 4C, plus the softmax matrix when attention is not fused.
timm uses ``F.scaled_dot_product_attention`` (fused) by default and that is what the estimate assumes;
``fused_attn=False`` estimates the explicit path (what ``timm.utils.AttentionExtract`` needs).
Outside the blocks: the patch embedding saves the image (if it trains), the final norm its input, and the
head its input — with the class token that input is a view of the final norm's output in fp32, so the
whole (B, T, C) storage stays alive.

Frozen blocks at the front store nothing: no tensor there needs a gradient. LoRA freezes the base but its
adapters need gradients, so from the first adapter on every block keeps what its input gradient needs
(LayerNorm inputs, attention tensors, the GELU input, and under autocast the bf16 copies of the frozen
weights). With gradient checkpointing (timm checkpoints every block) only each block's input is kept
(s·BTC) and one block is recomputed in backward, so its saved tensors are added once to the peak.
Autocast's weight cache is dropped on leaving autocast (before backward), so with checkpointing the bf16
weight copies live only during forward, when gradients do not exist yet; the peak is in backward.

Step time is counted in FLOPs: forward 1×; backward 1× for weight gradients of trainable layers plus 1×
for input gradients wherever something earlier needs them (so a frozen prefix costs forward only and a
LoRA model still pays input gradients through every block after the first adapter); a checkpointed block
runs its forward again. ``relative_step_time`` is that over 3× the forward (a full fine-tune step).
Swin (windowed attention, four stages) is estimated with the same block formula per stage and window
tokens in attention; it is not checked by the harness, so treat it as approximate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from vittui.hardware import fmt_bytes
from vittui.planning.block_memory import BlockShape, StepSetup, block_saved
from vittui.planning.dims import ModelDims, dims_for

if TYPE_CHECKING:
    from vittui.recipe import AdaptSection, Recipe

GIB = 1024 ** 3
MIB = 1024 ** 2
CUDA_CONTEXT_BYTES = 512 * MIB  # CUDA context + cuBLAS workspace, not in torch's allocator counts
ALLOCATOR_SLACK = 0.05  # caching-allocator fragmentation on a GPU


@dataclass
class MemoryEstimate:
    weights: int
    gradients: int
    optimizer: int
    ema: int
    activations: int  # kept from forward to backward
    recompute: int  # one checkpointed block re-run in backward
    workspace: int  # transient backward buffers + (GPU) context and allocator slack
    peak: int
    fits: bool | None
    total_params: int
    trainable_params: int
    forward_flops: int  # per step (whole batch)
    step_flops: int
    relative_step_time: float
    dims: ModelDims
    notes: list[str] = field(default_factory=list)
    gpu_free_bytes: int | None = None

    @property
    def measurable(self) -> int:
        """Everything the CPU harness can count: peak without workspace."""
        return self.weights + self.gradients + self.optimizer + self.ema + self.activations + self.recompute

    @property
    def activations_peak(self) -> int:
        return self.activations + self.recompute

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "weights", "gradients", "optimizer", "ema", "activations", "recompute", "workspace", "peak",
            "fits", "total_params", "trainable_params", "forward_flops", "step_flops", "relative_step_time")}

    def table(self) -> str:
        rows = [("weights", self.weights), ("gradients", self.gradients), ("optimizer state", self.optimizer),
                ("EMA copy", self.ema), ("activations", self.activations),
                ("recompute (1 block)", self.recompute), ("workspace", self.workspace), ("peak", self.peak)]
        lines = [f"model {self.dims.name or 'custom'}: {self.total_params / 1e6:.2f} M params, "
                 f"{self.trainable_params / 1e6:.2f} M trainable, {self.dims.tokens} tokens"]
        for name, value in rows:
            lines.append(f"  {name:<20s} {fmt_bytes(value):>10s}")
        if self.gpu_free_bytes is not None:
            verdict = "fits" if self.fits else "does NOT fit"
            lines.append(f"  {'GPU free':<20s} {fmt_bytes(self.gpu_free_bytes):>10s}  -> {verdict}")
        lines.append(f"  step ≈ {self.step_flops / 1e9:.1f} GFLOP "
                     f"({self.relative_step_time:.2f}× a full fine-tune step of this model)")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------ the estimate


def estimate(recipe: Recipe, model_info_or_dims: Any = None, num_classes: int = 10,
             gpu_free_bytes: int | None = None, fused_attn: bool = True,
             device: str | None = None) -> MemoryEstimate:
    """Estimate memory and relative step cost of one training step of ``recipe``.

    ``model_info_or_dims``: a catalogue ``ModelInfo`` or ``ModelDims``; default: the catalogue entry for
    ``recipe.model.name`` (or the timm name's standard size), with the recipe's shape overrides applied.
    ``gpu_free_bytes``: compare the peak with it (``fits``); the GPU context and allocator slack are then
    added to the workspace. ``device``: "cuda" adds them too; default: when ``gpu_free_bytes`` is given or
    the recipe asks for CUDA.
    """
    dims = dims_for(recipe, model_info_or_dims)
    setup = StepSetup.of(recipe, dims, fused_attn)
    parts = _trainable_parts(recipe.adapt, sum(st[0] for st in dims.stages()))
    total_params, trainable = _param_counts(dims, parts, setup, num_classes)
    walk = _walk_blocks(dims, parts, setup, recipe.compute.grad_checkpointing)
    activations, recompute = _activations(dims, parts, setup, walk, recipe.compute.grad_checkpointing,
                                          num_classes)
    weights, gradients, optimizer, ema = _persistent_state(recipe, total_params, trainable)

    on_gpu = device == "cuda" or gpu_free_bytes is not None or recipe.compute.device == "cuda"
    workspace = 2 * walk.largest_transient
    measurable = weights + gradients + optimizer + ema + activations + recompute
    if on_gpu:
        workspace += CUDA_CONTEXT_BYTES + int(ALLOCATOR_SLACK * measurable)
    peak = measurable + workspace
    fits = None if gpu_free_bytes is None else peak <= gpu_free_bytes

    fwd_total, step = _step_cost(dims, parts, setup, walk, num_classes)
    rel = step / (3 * fwd_total)
    return MemoryEstimate(
        weights=weights, gradients=gradients, optimizer=optimizer, ema=ema, activations=activations,
        recompute=recompute, workspace=workspace, peak=peak, fits=fits, total_params=total_params,
        trainable_params=trainable, forward_flops=fwd_total, step_flops=step, relative_step_time=rel,
        dims=dims, notes=_notes(recipe, dims, setup.batch), gpu_free_bytes=gpu_free_bytes,
    )


@dataclass(frozen=True)
class _Trainable:
    """Which parts train: the freezing strategy ("lora" when LoRA is on), each block, and the rest."""

    freeze: str
    blocks: list[bool]
    embed: bool
    head: bool
    final_norm: bool


def _trainable_parts(adapt: AdaptSection, n_blocks: int) -> _Trainable:
    """The freezing rules of `vittui.models.adapt`, on the block count alone."""
    freeze = "lora" if adapt.lora else adapt.freeze
    if freeze == "none":
        return _Trainable(freeze, [True] * n_blocks, embed=True, head=True, final_norm=True)
    if freeze == "first_n":
        k = min(adapt.freeze_blocks, n_blocks)
        return _Trainable(freeze, [i >= k for i in range(n_blocks)], embed=False, head=True, final_norm=True)
    if freeze == "all_but_last_n":
        k = min(adapt.freeze_blocks, n_blocks)
        return _Trainable(freeze, [i >= n_blocks - k for i in range(n_blocks)], embed=False, head=True,
                          final_norm=True)
    # linear_probe, lora: only the head (and LoRA's adapters)
    return _Trainable(freeze, [False] * n_blocks, embed=False, head=True, final_norm=False)


def _last_width(dims: ModelDims) -> int:
    return dims.stage_dims[-1] if dims.stage_dims else dims.embed_dim


def _param_counts(dims: ModelDims, parts: _Trainable, setup: StepSetup, num_classes: int) -> tuple[int, int]:
    """(all parameters including LoRA's adapters, the trainable ones)."""
    stages = dims.stages()
    total_params = dims.params(num_classes)
    c_last = _last_width(dims)
    head_p = dims.head_params(num_classes) + (2 * c_last if dims.global_pool == "avg" else 0)
    lora_params = 0
    if parts.freeze == "lora":
        for d, _t, c, _h, m, _sp in stages:
            shapes = {"qkv": (c, 3 * c), "proj": (c, c), "fc1": (c, 2 * m if dims.mlp == "swiglu" else m),
                      "fc2": (m, c)}
            lora_params += d * sum(setup.lora_r * (i + o) for name, (i, o) in shapes.items()
                                   if name in setup.lora_targets)
        total_params += lora_params
    block_p = []
    for d, _t, c, _h, m, _sp in stages:
        block_p += [dims.block_params(c, m)] * d
    if parts.freeze == "none":
        trainable = total_params
    elif parts.freeze == "first_n":
        trainable = total_params - dims.embed_params() - sum(p for p, t in zip(block_p, parts.blocks) if not t)
    elif parts.freeze == "all_but_last_n":
        trainable = sum(p for p, t in zip(block_p, parts.blocks) if t) + 2 * c_last + head_p
    else:
        trainable = head_p + lora_params
    return total_params, trainable


@dataclass
class _BlockWalk:
    """The blocks in order: what each saves, recomputes and keeps as input, and the step's block FLOPs."""

    saves: list[int] = field(default_factory=list)
    recompute: list[int] = field(default_factory=list)  # saved minus the input, which recompute keeps
    inputs: list[int] = field(default_factory=list)  # bytes of each block's input
    needs: list[bool] = field(default_factory=list)  # does backward run through the block?
    fwd_flops: int = 0
    bwd_flops: int = 0
    ckpt_flops: int = 0
    largest_transient: int = 0
    grad_out: bool = False  # does the stream leaving the last block need a gradient?


def _walk_blocks(dims: ModelDims, parts: _Trainable, setup: StepSetup, ckpt: bool) -> _BlockWalk:
    B, a, s = setup.batch, setup.a, setup.s
    walk = _BlockWalk()
    grad = parts.embed  # does the residual stream entering the next block need a gradient?
    i = 0
    for stage in dims.stages():
        blk = BlockShape.of(B, stage, dims.mlp)
        blk_fwd = sum(blk.f_lin.values()) + blk.f_attn
        for _ in range(stage[0]):
            wt = parts.blocks[i]
            input_saved = s * B * blk.t * blk.c if (grad or wt) else 0  # norm1's input
            saved, grad_out, bwd = block_saved(setup, blk, grad, wt)
            needs = grad or wt or bool(setup.lora_targets)
            walk.saves.append(saved)
            walk.recompute.append(saved - input_saved)  # in recompute the input is the one kept
            walk.inputs.append(s * B * blk.t * blk.c)
            walk.needs.append(needs)
            walk.fwd_flops += blk_fwd
            walk.bwd_flops += bwd
            if ckpt and needs:
                walk.ckpt_flops += blk_fwd
            walk.largest_transient = max(walk.largest_transient, a * B * blk.t * blk.m,
                                         (a * B * blk.h * blk.t * blk.span) if not setup.fused_attn else 0)
            grad = grad_out
            i += 1
    walk.grad_out = grad
    return walk


def _outside_blocks(dims: ModelDims, parts: _Trainable, setup: StepSetup, grad_out: bool,
                    num_classes: int) -> int:
    """Bytes saved outside the blocks: the image (patch embedding), the final norm, pooling, head, loss."""
    B, a, s, autocast = setup.batch, setup.a, setup.s, setup.autocast
    c_last, t_last = _last_width(dims), dims.stages()[-1][1]
    saved = a * B * dims.in_chans * dims.img_size ** 2 if parts.embed else 0
    if grad_out or parts.final_norm:
        saved += s * B * t_last * c_last + 8 * B * t_last
    if parts.head:
        if dims.global_pool == "avg":
            saved += s * B * c_last + 8 * B  # fc_norm input (+ stats)
            saved += a * B * c_last if autocast else 0
            if not autocast:
                saved += s * B * c_last  # fc_norm output saved by the head
        elif autocast:
            saved += a * B * c_last
        else:
            saved += s * B * t_last * c_last  # view of the final norm's output
    if autocast and (grad_out or parts.final_norm):
        saved += a * c_last * num_classes
    return saved + 4 * B * num_classes + 48  # fp32 log-softmax of the logits (+ targets)


def _activations(dims: ModelDims, parts: _Trainable, setup: StepSetup, walk: _BlockWalk, ckpt: bool,
                 num_classes: int) -> tuple[int, int]:
    """(activations kept from forward to backward, one checkpointed block's recompute)."""
    outside = _outside_blocks(dims, parts, setup, walk.grad_out, num_classes)
    if not ckpt:
        return outside + sum(walk.saves), 0
    kept_inputs = sum(size for size, needs in zip(walk.inputs, walk.needs) if needs)
    recompute = max((sv for sv, nd in zip(walk.recompute, walk.needs) if nd), default=0)
    return outside + kept_inputs, recompute


def _persistent_state(recipe: Recipe, total_params: int, trainable: int) -> tuple[int, int, int, int]:
    """(weights, gradients, optimizer state, EMA copy): fp32 throughout."""
    o = recipe.optim
    opt_per = 8 if o.name == "adamw" else (4 if o.momentum > 0 else 0)
    ema = 4 * total_params if recipe.regularize.ema else 0
    return 4 * total_params, 4 * trainable, opt_per * trainable, ema


def _step_cost(dims: ModelDims, parts: _Trainable, setup: StepSetup, walk: _BlockWalk,
               num_classes: int) -> tuple[int, int]:
    """(forward FLOPs, step FLOPs): forward, backward where gradients are needed, checkpointed re-runs."""
    B = setup.batch
    extra_fwd = 2 * B * dims.grid ** 2 * dims.in_chans * dims.patch ** 2 * dims.embed_dim
    head_f = 2 * B * _last_width(dims) * num_classes
    pooled_grad = walk.grad_out or parts.final_norm
    fwd_total = walk.fwd_flops + extra_fwd + head_f
    bwd_total = walk.bwd_flops + (extra_fwd if parts.embed else 0) + (head_f * (2 if pooled_grad else 1))
    return fwd_total, fwd_total + bwd_total + walk.ckpt_flops


def _notes(recipe: Recipe, dims: ModelDims, batch: int) -> list[str]:
    notes = []
    if recipe.compute.grad_checkpointing:
        notes.append("gradient checkpointing: block inputs kept, one block recomputed in backward")
    if dims.name.startswith(("eva02", "beit", "hf-beit")):
        notes.append("rotary / relative position terms are not modelled: activations may be ~10% low")
    if dims.arch == "swin":
        notes.append("Swin is estimated with the ViT block formula per stage; not checked by the harness")
    if recipe.compute.accumulation > 1:
        notes.append(f"activations are per micro-batch of {batch}; {recipe.compute.accumulation} are accumulated")
    return notes


__all__ = ["MemoryEstimate", "estimate"]

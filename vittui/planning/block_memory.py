"""Bytes one transformer block saves for backward and its backward FLOPs, by the rules derived in the
docstring of `vittui.planning.memory` (which walks the blocks with `block_saved`). Pure Python."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vittui.planning.dims import ModelDims
    from vittui.recipe import Recipe


@dataclass(frozen=True)
class StepSetup:
    """What every block of one step shares: batch, dtypes, the attention kernel, LoRA, the block's kind."""

    batch: int
    a: int  # bytes of the compute dtype: 2 under bf16/fp16 autocast, else 4
    s: int  # bytes of the residual stream and LayerNorm, fp32 even under autocast
    autocast: bool
    fused_attn: bool
    lora_targets: frozenset[str]  # leaf names of the adapted Linear layers; empty without LoRA
    lora_r: int
    lora_dropout: float
    mlp: str
    layer_scale: bool
    drop_path: bool

    @classmethod
    def of(cls, recipe: Recipe, dims: ModelDims, fused_attn: bool) -> StepSetup:
        autocast = recipe.compute.precision in ("bf16", "fp16")
        adapt = recipe.adapt
        targets = {t.rsplit(".", 1)[-1] for t in (set(adapt.lora_targets) or {"qkv"})} if adapt.lora else set()
        return cls(batch=recipe.data.batch_size, a=2 if autocast else 4, s=4, autocast=autocast,
                   fused_attn=fused_attn, lora_targets=frozenset(targets), lora_r=adapt.lora_r,
                   lora_dropout=adapt.lora_dropout, mlp=dims.mlp, layer_scale=dims.layer_scale,
                   drop_path=recipe.regularize.drop_path > 0)


@dataclass(frozen=True)
class BlockShape:
    """One block of a stage: tokens, width, heads, MLP width, attention span, and its forward FLOPs."""

    t: int
    c: int
    h: int
    m: int
    span: int
    f_lin: dict[str, int]  # per Linear layer: qkv, proj, fc1, fc2
    f_attn: int

    @classmethod
    def of(cls, batch: int, stage: tuple[int, int, int, int, int, int], mlp: str) -> BlockShape:
        _d, t, c, h, m, span = stage
        bt = batch * t
        f_lin = {"qkv": 2 * bt * c * 3 * c, "proj": 2 * bt * c * c,
                 "fc1": 2 * bt * c * (2 * m if mlp == "swiglu" else m), "fc2": 2 * bt * m * c}
        return cls(t, c, h, m, span, f_lin, 4 * batch * t * span * c)


def _linear(rows: int, fin: int, fout: int, ig: bool, wg: bool, a: int, autocast: bool,
            count_input: bool = True) -> int:
    saved = 0
    if wg and count_input:
        saved += a * rows * fin
    if ig and autocast:
        saved += a * fin * fout  # the bf16/fp16 copy of the weight
    return saved


def _lora_saved(setup: StepSetup, bt: int, name: str, fin: int, fout: int, ig: bool, input_counted: bool) -> int:
    """peft LoRA: x -> dropout -> lora_A -> lora_B. peft casts x to the adapter's fp32 dtype first, so
    under autocast lora_A always saves a fresh copy of its input; CPU dropout keeps an fp32 noise tensor
    when its input needs a gradient."""
    if name not in setup.lora_targets:
        return 0
    a, r, autocast = setup.a, setup.lora_r, setup.autocast
    n = 0
    if setup.lora_dropout > 0 and ig:
        n += 4 * bt * fin  # dropout noise
    if autocast or setup.lora_dropout > 0 or not input_counted:
        n += a * bt * fin  # lora_A input
    n += a * bt * r  # lora_B input
    if autocast:
        n += (a * r * fin if ig else 0) + a * fout * r  # weight copies
    return n


def block_saved(setup: StepSetup, blk: BlockShape, g: bool, wt: bool) -> tuple[int, bool, int]:
    """Bytes one block saves for backward, whether its output needs a gradient, and its backward FLOPs.

    `g`: the block's input needs a gradient; `wt`: the block's own weights train."""
    B, a, s, autocast, targets = setup.batch, setup.a, setup.s, setup.autocast, setup.lora_targets
    t, c, h, m, span = blk.t, blk.c, blk.h, blk.m, blk.span
    bt = B * t
    saved = 0

    def lin_bwd(name: str, ig: bool, wg: bool) -> int:
        f = blk.f_lin[name]
        return (f if ig else 0) + (f if wg else 0)

    # norm1
    if g or wt:
        saved += s * bt * c + 8 * bt
    g1 = g or wt
    # qkv (+ LoRA)
    saved += _linear(bt, c, 3 * c, g1, wt, a, autocast)
    saved += _lora_saved(setup, bt, "qkv", c, 3 * c, g1, input_counted=wt)
    bwd = lin_bwd("qkv", g1, wt)
    q_g = g1 or "qkv" in targets
    # attention
    if q_g:
        if setup.fused_attn:
            saved += a * 4 * bt * c + 4 * B * h * t
        else:
            saved += a * 3 * bt * c + a * B * h * t * span + a * bt * c
        bwd += 2 * blk.f_attn
    # proj: in the fused path its input is the attention output, already counted
    saved += _linear(bt, c, c, q_g, wt, a, autocast, count_input=not q_g)
    saved += _lora_saved(setup, bt, "proj", c, c, q_g, input_counted=True)
    bwd += lin_bwd("proj", q_g, wt)
    p_g = q_g or wt or "proj" in targets
    if setup.layer_scale and wt:
        saved += a * bt * c
    g2 = g or p_g
    if setup.drop_path and g2:
        saved += 2 * a * B
    # norm2
    if g2 or wt:
        saved += s * bt * c + 8 * bt
    g3 = g2 or wt
    fc1_out = 2 * m if setup.mlp == "swiglu" else m
    saved += _linear(bt, c, fc1_out, g3, wt, a, autocast)
    saved += _lora_saved(setup, bt, "fc1", c, fc1_out, g3, input_counted=wt)
    bwd += lin_bwd("fc1", g3, wt)
    f1_g = g3 or "fc1" in targets
    if f1_g:
        saved += a * bt * fc1_out  # activation input (GELU) or the gate/up storage (SwiGLU)
        if setup.mlp == "swiglu":
            saved += a * bt * m  # SiLU output, kept by the product
    saved += _linear(bt, m, c, f1_g, wt, a, autocast)  # fc2 input = activation output
    saved += _lora_saved(setup, bt, "fc2", m, c, f1_g, input_counted=wt)
    bwd += lin_bwd("fc2", f1_g, wt)
    f2_g = f1_g or wt or "fc2" in targets
    if setup.layer_scale and wt:
        saved += a * bt * c
    return saved, g2 or f2_g, bwd


__all__ = ["StepSetup", "BlockShape", "block_saved"]

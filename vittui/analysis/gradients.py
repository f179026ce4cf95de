"""Gradient flow: per-block gradient norms of the attention and MLP branches, read from `p.grad` after
`backward()` (nothing is recomputed), with flags for vanishing and exploding blocks.

Parameters are sorted by name: a name with a part containing "attn"/"attention" belongs to the attention
branch (checked first, so HF's `attention.output.dense` is attention); one containing "mlp"/"intermediate"
or "output.dense" belongs to the MLP branch; norms and layer-scale parameters inside a block count in
neither branch but in the block total. Outside the blocks, "embed" gathers patch/position embeddings and
class/register tokens, "head" the classifier, and "total" is the global norm over every gradient.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from vittui.models.structure import unwrap

VANISHING_RATIO = 100.0  # a block whose norm is below median / this is "vanishing"
EXPLODING_RATIO = 100.0  # a block whose norm is above median * this is "exploding"

_ATTN_KEYS = ("attn", "attention")
_MLP_KEYS = ("mlp", "intermediate")
_EMBED_KEYS = ("embed", "cls_token", "reg_token", "dist_token", "pos_embed", "patch")
_HEAD_KEYS = ("head", "classifier")


def find_blocks(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The transformer blocks with their names relative to the unwrapped model: timm `blocks`,
    transformers `*.layers` / `*.layer`, else the longest ModuleList."""
    net = unwrap(model)
    lists = [(n, m) for n, m in net.named_modules() if isinstance(m, (nn.ModuleList, nn.Sequential)) and len(m)]
    preferred = [(n, m) for n, m in lists if n.split(".")[-1] in ("blocks", "layers", "layer")]
    pool = preferred or lists
    if not pool:
        raise ValueError(f"{type(net).__name__} has no list of blocks")
    name, blocks = max(pool, key=lambda nm: len(nm[1]))
    return [(f"{name}.{i}" if name else str(i), b) for i, b in enumerate(blocks)]


def branch_of(param_name: str) -> str:
    """'attn', 'mlp' or 'other' for a parameter name inside a block."""
    parts = param_name.lower().split(".")
    if any(k in p for p in parts for k in _ATTN_KEYS):
        return "attn"
    if any(k in p for p in parts for k in _MLP_KEYS) or "output.dense" in param_name.lower():
        return "mlp"
    return "other"


def _norm(grads: list[torch.Tensor]) -> float:
    if not grads:
        return 0.0
    norms = torch._foreach_norm([g.detach() for g in grads])
    return float(torch.linalg.vector_norm(torch.stack([n.float().cpu() for n in norms])))


def measured_label(clip_grad: float | None = None, before_clip: bool = False) -> str:
    """When the norms were read, in words for the pane and the event: "before clipping", or after
    `clip_grad_norm_` with that max norm ("after clipping to max norm 1"; "no clipping" when it is off)."""
    if before_clip:
        return "before clipping"
    if clip_grad is None:
        return "after clip_grad_norm_ (max norm not stated)"
    if not clip_grad or not math.isfinite(clip_grad):
        return "no clipping"
    return f"after clipping to max norm {clip_grad:g}"


def grad_flow(model: nn.Module, blocks: Sequence[nn.Module] | None = None, step: int = 0,
              names: Sequence[str] | None = None, *, clip_grad: float | None = None, before_clip: bool = False):
    """A `GradFlow` event from the gradients already in `p.grad`.

    `blocks` defaults to `find_blocks(model)`. Blocks without any gradient (frozen) report 0.0 and are
    left out of the median that the vanishing/exploding flags compare against; a block with a NaN/Inf
    gradient is flagged whatever the median. `clip_grad` (the recipe's max norm, 0 = off) and `before_clip`
    set the event's `measured` label: the loop calls this after `clip_grad_norm_`, so the norms are clipped
    ones unless it says `before_clip=True`."""
    from vittui.runs.events import GradFlow

    net = unwrap(model)
    if blocks is None:
        found = find_blocks(net)
        blocks = [b for _, b in found]
        names = names or [n for n, _ in found]
    names = list(names) if names is not None else [f"block{i}" for i in range(len(blocks))]

    in_block: set[int] = set()
    attn_norms: list[float] = []
    mlp_norms: list[float] = []
    totals: list[float | None] = []
    for blk in blocks:
        groups: dict[str, list[torch.Tensor]] = {"attn": [], "mlp": [], "other": []}
        for pname, p in blk.named_parameters():
            in_block.add(id(p))
            if p.grad is not None:
                groups[branch_of(pname)].append(p.grad)
        a, m, o = _norm(groups["attn"]), _norm(groups["mlp"]), _norm(groups["other"])
        attn_norms.append(a)
        mlp_norms.append(m)
        has_grad = any(groups.values())
        totals.append(math.sqrt(a * a + m * m + o * o) if has_grad else None)

    embed: list[torch.Tensor] = []
    head: list[torch.Tensor] = []
    every: list[torch.Tensor] = []
    for pname, p in net.named_parameters():
        if p.grad is None:
            continue
        every.append(p.grad)
        if id(p) in in_block:
            continue
        low = pname.lower()
        if any(k in low for k in _HEAD_KEYS):
            head.append(p.grad)
        elif any(k in low for k in _EMBED_KEYS):
            embed.append(p.grad)
    other = {"embed": _norm(embed), "head": _norm(head), "total": _norm(every)}

    return GradFlow(step=int(step), names=names, attn=attn_norms, mlp=mlp_norms, other=other,
                    flags=flow_flags(names, totals, attn_norms, mlp_norms),
                    measured=measured_label(clip_grad, before_clip))


def _finite(v: float | None) -> bool:
    return v is not None and math.isfinite(v)


def flow_flags(names: Sequence[str], totals: Sequence[float | None], attn: Sequence[float] | None = None,
               mlp: Sequence[float] | None = None) -> list[str]:
    """Flags, block by block: a non-finite (NaN/Inf) gradient first, always ("blocks.3: non-finite
    gradient in block 3 attn"), whatever the other blocks do; then, against the median of the finite live
    blocks, norms below median/100 (vanishing) or above median*100 (exploding). None = frozen."""
    out: list[str] = []
    for i, (name, t) in enumerate(zip(names, totals)):
        if t is None or math.isfinite(t):
            continue
        branches = [b for b, vals in (("attn", attn), ("mlp", mlp))
                    if vals is not None and i < len(vals) and not _finite(vals[i])]
        where = " and ".join(branches) if branches else "norm/other parameters"
        out.append(f"{name}: non-finite gradient in block {i} {where} (norm {t})")
    live = [t for t in totals if _finite(t)]
    if not live:
        return out
    med = float(sorted(live)[len(live) // 2]) if len(live) % 2 else float(
        (sorted(live)[len(live) // 2 - 1] + sorted(live)[len(live) // 2]) / 2)
    if med <= 0:
        return out
    for name, t in zip(names, totals):
        if not _finite(t):
            continue
        if t > med * EXPLODING_RATIO:
            out.append(f"{name}: exploding gradient (norm {t:.3g} > {EXPLODING_RATIO:g} x median {med:.3g})")
        elif t < med / VANISHING_RATIO:
            out.append(f"{name}: vanishing gradient (norm {t:.3g} < median {med:.3g} / {VANISHING_RATIO:g})")
    return out

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

from dataclasses import dataclass, field, replace
from typing import Any

GIB = 1024 ** 3
MIB = 1024 ** 2
CUDA_CONTEXT_BYTES = 512 * MIB  # CUDA context + cuBLAS workspace, not in torch's allocator counts
ALLOCATOR_SLACK = 0.05  # caching-allocator fragmentation on a GPU


@dataclass(frozen=True)
class ModelDims:
    """The shape the estimator needs. From the catalogue, from recipe overrides, or given directly."""

    depth: int = 12
    embed_dim: int = 192
    heads: int = 3
    patch: int = 16
    img_size: int = 224
    mlp_hidden: int | None = None  # default 4 × embed_dim
    prefix_tokens: int = 1
    in_chans: int = 3
    arch: str = "vit"  # vit | swin
    mlp: str = "gelu"  # gelu | swiglu
    layer_scale: bool = False
    global_pool: str = "token"
    stage_depths: tuple[int, ...] = ()
    stage_dims: tuple[int, ...] = ()
    stage_heads: tuple[int, ...] = ()
    window: int = 0
    params_known: int | None = None  # exact count from the catalogue (with its own head)
    classes_known: int = 1000
    distilled: bool = False  # DeiT distilled: a second head on the distillation token
    name: str = ""

    @property
    def hidden(self) -> int:
        return self.mlp_hidden if self.mlp_hidden else 4 * self.embed_dim

    @property
    def grid(self) -> int:
        return self.img_size // self.patch

    @property
    def tokens(self) -> int:
        return self.grid ** 2 + self.prefix_tokens

    @classmethod
    def from_info(cls, info: Any) -> "ModelDims":
        return cls(depth=info.depth, embed_dim=info.embed_dim, heads=info.heads, patch=info.patch,
                   img_size=info.resolution, mlp_hidden=info.mlp_hidden, prefix_tokens=info.prefix_tokens,
                   arch=info.arch, mlp=info.mlp, layer_scale=info.layer_scale, global_pool=info.global_pool,
                   stage_depths=tuple(info.stage_depths), stage_dims=tuple(info.stage_dims),
                   stage_heads=tuple(info.stage_heads), window=info.window, params_known=info.params,
                   classes_known=info.num_classes, distilled="distilled" in info.id, name=info.key)

    # ---- the stages the estimator walks: (blocks, tokens, width, heads, mlp width, attention span)
    def stages(self) -> list[tuple[int, int, int, int, int, int]]:
        if self.arch == "swin" and self.stage_depths:
            out = []
            grid = self.grid
            ratio = self.hidden / self.embed_dim
            for i, (d, c, h) in enumerate(zip(self.stage_depths, self.stage_dims, self.stage_heads)):
                g = max(grid // (2 ** i), 1)
                span = min(self.window, g) ** 2 if self.window else g * g
                out.append((d, g * g, c, h, int(c * ratio), span))
            return out
        t = self.tokens
        return [(self.depth, t, self.embed_dim, self.heads, self.hidden, t)]

    # ---- parameter counts (analytic; exact for timm ViT/DeiT)
    def block_params(self, c: int | None = None, m: int | None = None) -> int:
        c = c or self.embed_dim
        m = m or self.hidden
        fc1_out = 2 * m if self.mlp == "swiglu" else m
        n = 4 * c + (3 * c * c + 3 * c) + (c * c + c) + (c * fc1_out + fc1_out) + (m * c + c)
        return n + (2 * c if self.layer_scale else 0)

    def embed_params(self) -> int:
        c = self.embed_dim
        pos = self.tokens * c if self.arch == "vit" else 0
        return self.in_chans * self.patch ** 2 * c + c + self.prefix_tokens * c + pos

    def head_params(self, num_classes: int) -> int:
        c = self.stage_dims[-1] if self.stage_dims else self.embed_dim
        one = c * num_classes + num_classes if num_classes else 0
        return 2 * one if self.distilled else one

    def params(self, num_classes: int) -> int:
        if self.params_known is not None:
            return self.params_known - self.head_params(self.classes_known) + self.head_params(num_classes)
        blocks = sum(d * self.block_params(c, m) for d, _, c, _, m, _ in self.stages())
        c_last = self.stage_dims[-1] if self.stage_dims else self.embed_dim
        return self.embed_params() + blocks + 2 * c_last + self.head_params(num_classes)

    def forward_flops(self, batch: int = 1, num_classes: int = 1000) -> int:
        """Forward FLOPs (2 per multiply-add) of matmuls, convolution and attention, the way
        ``FlopCounterMode`` counts them."""
        total = 2 * batch * self.grid ** 2 * self.in_chans * self.patch ** 2 * self.embed_dim
        for d, t, c, _h, m, span in self.stages():
            total += d * _block_flops(batch, t, c, m, span, self.mlp)
        c_last = self.stage_dims[-1] if self.stage_dims else self.embed_dim
        return total + 2 * batch * c_last * num_classes


def _block_flops(b: int, t: int, c: int, m: int, span: int, mlp: str = "gelu") -> int:
    fc1_out = 2 * m if mlp == "swiglu" else m
    linear = 2 * b * t * (3 * c * c + c * c + c * fc1_out + m * c)
    attention = 4 * b * t * span * c
    return linear + attention


# --------------------------------------------------------------------------------------------------

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


def fmt_bytes(n: float) -> str:
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", 1024)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


# --------------------------------------------------------------------------------------------------

_TIMM_SIZES = {  # width, depth, heads of the standard timm ViT sizes, for names not in the catalogue
    "tiny": (192, 12, 3), "small": (384, 12, 6), "medium": (512, 12, 8), "base": (768, 12, 12),
    "large": (1024, 24, 16), "huge": (1280, 32, 16),
}


def _dims_from_name(name: str) -> ModelDims | None:
    import re

    base = name.split(".", 1)[0].lower()
    m = re.match(r"(?:vit|deit\d?)_(tiny|small|medium|base|large|huge)(?:_distilled)?_patch(\d+)_(\d+)", base)
    if not m:
        return None
    width, depth, heads = _TIMM_SIZES[m.group(1)]
    return ModelDims(depth=depth, embed_dim=width, heads=heads, patch=int(m.group(2)), img_size=int(m.group(3)),
                     prefix_tokens=2 if "distilled" in base else 1, distilled="distilled" in base, name=base)


def dims_for(recipe: Any, model_info_or_dims: Any = None) -> ModelDims:
    """The model shape a recipe builds: catalogue entry (or given dims) with the recipe's overrides."""
    if isinstance(model_info_or_dims, ModelDims):
        dims = model_info_or_dims
    elif model_info_or_dims is not None:
        dims = ModelDims.from_info(model_info_or_dims)
    else:
        from vittui.models.catalog import find

        info = find(recipe.model.name)
        dims = ModelDims.from_info(info) if info else (_dims_from_name(recipe.model.name) or ModelDims())
    m = recipe.model
    changes: dict[str, Any] = {}
    for attr, value in (("depth", m.depth), ("embed_dim", m.embed_dim), ("heads", m.num_heads),
                        ("patch", m.patch_size)):
        if value is not None and value != getattr(dims, attr):
            changes[attr] = value
    if m.mlp_ratio is not None:
        changes["mlp_hidden"] = int(m.mlp_ratio * (changes.get("embed_dim") or dims.embed_dim))
    elif "embed_dim" in changes:
        ratio = dims.hidden / dims.embed_dim
        changes["mlp_hidden"] = int(ratio * changes["embed_dim"])
    if changes:
        changes["params_known"] = None  # the shape differs from the catalogued checkpoint
    if m.img_size and m.img_size != dims.img_size:
        if dims.params_known is not None and dims.arch == "vit" and "params_known" not in changes:
            # only the position embedding changes size
            old = dims.tokens
            new = (m.img_size // dims.patch) ** 2 + dims.prefix_tokens
            changes["params_known"] = dims.params_known + (new - old) * dims.embed_dim
        changes["img_size"] = m.img_size
    return replace(dims, **changes) if changes else dims


def _lora_targets(recipe: Any) -> set[str]:
    targets = set(recipe.adapt.lora_targets) or {"qkv"}
    return {t.rsplit(".", 1)[-1] for t in targets}


def estimate(recipe: Any, model_info_or_dims: Any = None, num_classes: int = 10,
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
    notes: list[str] = []
    B = recipe.data.batch_size
    prec = recipe.compute.precision
    autocast = prec in ("bf16", "fp16")
    a = 2 if autocast else 4
    s = 4
    ckpt = recipe.compute.grad_checkpointing
    adapt = recipe.adapt
    lora = adapt.lora
    lora_targets = _lora_targets(recipe) if lora else set()
    r = adapt.lora_r
    stages = dims.stages()
    n_blocks = sum(st[0] for st in stages)

    # --- which parts train
    freeze = "lora" if lora else adapt.freeze
    if freeze == "none":
        block_trains = [True] * n_blocks
        embed_trains = head_trains = final_norm_trains = True
    elif freeze == "linear_probe":
        block_trains = [False] * n_blocks
        embed_trains = final_norm_trains = False
        head_trains = True
    elif freeze == "first_n":
        k = min(adapt.freeze_blocks, n_blocks)
        block_trains = [i >= k for i in range(n_blocks)]
        embed_trains = False
        head_trains = final_norm_trains = True
    elif freeze == "all_but_last_n":
        k = min(adapt.freeze_blocks, n_blocks)
        block_trains = [i >= n_blocks - k for i in range(n_blocks)]
        embed_trains = False
        head_trains = final_norm_trains = True
    else:  # lora
        block_trains = [False] * n_blocks
        embed_trains = final_norm_trains = False
        head_trains = True

    # --- parameters
    total_params = dims.params(num_classes)
    c_last = dims.stage_dims[-1] if dims.stage_dims else dims.embed_dim
    head_p = dims.head_params(num_classes) + (2 * c_last if dims.global_pool == "avg" else 0)
    lora_params = 0
    if lora:
        per_block = 0
        for _d, _t, c, _h, m, _sp in stages:
            shapes = {"qkv": (c, 3 * c), "proj": (c, c), "fc1": (c, 2 * m if dims.mlp == "swiglu" else m),
                      "fc2": (m, c)}
            per_block += _d * sum(r * (i + o) for name, (i, o) in shapes.items() if name in lora_targets)
        lora_params = per_block
        total_params += lora_params
    block_p = []
    for d, _t, c, _h, m, _sp in stages:
        block_p += [dims.block_params(c, m)] * d
    if freeze == "none":
        trainable = total_params
    elif freeze == "first_n":
        trainable = total_params - dims.embed_params() - sum(p for p, t in zip(block_p, block_trains) if not t)
    elif freeze == "all_but_last_n":
        trainable = sum(p for p, t in zip(block_p, block_trains) if t) + 2 * c_last + head_p
    else:
        trainable = head_p + lora_params

    # --- activations, walking the blocks in order
    grad = embed_trains  # does the residual stream entering the next block need a gradient?
    act_outside = 0
    if embed_trains:
        act_outside += a * B * dims.in_chans * dims.img_size ** 2
    block_saves: list[int] = []
    block_needs: list[bool] = []
    block_recompute: list[int] = []
    fwd_flops_blocks = 0
    bwd_flops = 0
    ckpt_flops = 0
    largest_transient = 0
    i = 0
    for d, t, c, h, m, span in stages:
        bt = B * t
        f_lin = {"qkv": 2 * bt * c * 3 * c, "proj": 2 * bt * c * c,
                 "fc1": 2 * bt * c * (2 * m if dims.mlp == "swiglu" else m), "fc2": 2 * bt * m * c}
        f_attn = 4 * B * t * span * c
        for _ in range(d):
            wt = block_trains[i]
            input_saved = s * B * t * c if (grad or block_trains[i]) else 0  # norm1's input
            saved, grad_out, bwd = _block_saved(
                B, t, c, h, m, span, a, s, grad, wt, lora_targets, r, adapt.lora_dropout, fused_attn,
                dims.mlp, dims.layer_scale, autocast, recipe.regularize.drop_path > 0, f_lin, f_attn)
            needs = grad or wt or bool(lora_targets)
            block_saves.append(saved)
            block_recompute.append(saved - input_saved)  # in recompute the input is the one kept
            block_needs.append(needs)
            blk_fwd = sum(f_lin.values()) + f_attn
            fwd_flops_blocks += blk_fwd
            bwd_flops += bwd
            if ckpt and needs:
                ckpt_flops += blk_fwd
            largest_transient = max(largest_transient, a * bt * m,
                                    (a * B * h * t * span) if not fused_attn else 0)
            grad = grad_out
            i += 1
    # final norm, pooling, head, loss
    t_last = stages[-1][1]
    if grad or final_norm_trains:
        act_outside += s * B * t_last * c_last + 8 * B * t_last
    pooled_grad = grad or final_norm_trains
    if head_trains:
        if dims.global_pool == "avg":
            act_outside += s * B * c_last + 8 * B  # fc_norm input (+ stats)
            act_outside += a * B * c_last if autocast else 0
            if not autocast:
                act_outside += s * B * c_last  # fc_norm output saved by the head
        elif autocast:
            act_outside += a * B * c_last
        else:
            act_outside += s * B * t_last * c_last  # view of the final norm's output
    if autocast and pooled_grad:
        act_outside += a * c_last * num_classes
    act_outside += 4 * B * num_classes + 48  # fp32 log-softmax of the logits (+ targets)

    if ckpt:
        kept_inputs = 0  # only blocks that need gradients keep their input
        j = 0
        for st_d, st_t, st_c, *_rest in stages:
            for _ in range(st_d):
                if block_needs[j]:
                    kept_inputs += s * B * st_t * st_c
                j += 1
        activations = act_outside + kept_inputs
        recompute = max((sv for sv, nd in zip(block_recompute, block_needs) if nd), default=0)
        notes.append("gradient checkpointing: block inputs kept, one block recomputed in backward")
    else:
        activations = act_outside + sum(block_saves)
        recompute = 0

    # --- persistent state
    weights = 4 * total_params
    gradients = 4 * trainable
    o = recipe.optim
    opt_per = 8 if o.name == "adamw" else (4 if o.momentum > 0 else 0)
    optimizer = opt_per * trainable
    ema = 4 * total_params if recipe.regularize.ema else 0

    on_gpu = device == "cuda" or gpu_free_bytes is not None or recipe.compute.device == "cuda"
    workspace = 2 * largest_transient
    measurable = weights + gradients + optimizer + ema + activations + recompute
    if on_gpu:
        workspace += CUDA_CONTEXT_BYTES + int(ALLOCATOR_SLACK * measurable)
    peak = measurable + workspace
    fits = None if gpu_free_bytes is None else peak <= gpu_free_bytes

    # --- step cost
    extra_fwd = 2 * B * dims.grid ** 2 * dims.in_chans * dims.patch ** 2 * dims.embed_dim
    head_f = 2 * B * c_last * num_classes
    fwd_total = fwd_flops_blocks + extra_fwd + head_f
    bwd_total = bwd_flops + (extra_fwd if embed_trains else 0) + (head_f * (2 if pooled_grad else 1))
    step = fwd_total + bwd_total + ckpt_flops
    rel = step / (3 * fwd_total)
    if dims.name.startswith(("eva02", "beit", "hf-beit")):
        notes.append("rotary / relative position terms are not modelled: activations may be ~10% low")
    if dims.arch == "swin":
        notes.append("Swin is estimated with the ViT block formula per stage; not checked by the harness")
    if recipe.compute.accumulation > 1:
        notes.append(f"activations are per micro-batch of {B}; {recipe.compute.accumulation} are accumulated")
    return MemoryEstimate(
        weights=weights, gradients=gradients, optimizer=optimizer, ema=ema, activations=activations,
        recompute=recompute, workspace=workspace, peak=peak, fits=fits, total_params=total_params,
        trainable_params=trainable, forward_flops=fwd_total, step_flops=step, relative_step_time=rel,
        dims=dims, notes=notes, gpu_free_bytes=gpu_free_bytes,
    )


def _linear(rows: int, fin: int, fout: int, ig: bool, wg: bool, a: int, autocast: bool,
            count_input: bool = True) -> int:
    saved = 0
    if wg and count_input:
        saved += a * rows * fin
    if ig and autocast:
        saved += a * fin * fout  # the bf16/fp16 copy of the weight
    return saved


def _block_saved(B, t, c, h, m, span, a, s, g, wt, lora_targets, r, lora_dropout, fused, mlp, layer_scale,
                 autocast, drop_path, f_lin, f_attn) -> tuple[int, bool, int]:
    """Bytes one block saves for backward, whether its output needs a gradient, and its backward FLOPs."""
    bt = B * t
    saved = 0
    bwd = 0

    def lora(name: str, fin: int, fout: int, ig: bool, input_counted: bool) -> int:
        """peft LoRA: x -> dropout -> lora_A -> lora_B. peft casts x to the adapter's fp32 dtype first, so
        under autocast lora_A always saves a fresh copy of its input; CPU dropout keeps an fp32 noise tensor
        when its input needs a gradient."""
        if name not in lora_targets:
            return 0
        n = 0
        if lora_dropout > 0 and ig:
            n += 4 * bt * fin  # dropout noise
        if autocast or lora_dropout > 0 or not input_counted:
            n += a * bt * fin  # lora_A input
        n += a * bt * r  # lora_B input
        if autocast:
            n += (a * r * fin if ig else 0) + a * fout * r  # weight copies
        return n

    def lin_bwd(name: str, ig: bool, wg: bool) -> int:
        f = f_lin[name]
        return (f if ig else 0) + (f if wg else 0)

    # norm1
    if g or wt:
        saved += s * bt * c + 8 * bt
    g1 = g or wt
    # qkv (+ LoRA)
    saved += _linear(bt, c, 3 * c, g1, wt, a, autocast)
    saved += lora("qkv", c, 3 * c, g1, input_counted=wt)
    bwd += lin_bwd("qkv", g1, wt)
    q_g = g1 or "qkv" in lora_targets
    # attention
    if q_g:
        if fused:
            saved += a * 4 * bt * c + 4 * B * h * t
        else:
            saved += a * 3 * bt * c + a * B * h * t * span + a * bt * c
        bwd += 2 * f_attn
    # proj: in the fused path its input is the attention output, already counted
    proj_input_counted = q_g
    saved += _linear(bt, c, c, q_g, wt, a, autocast, count_input=not proj_input_counted)
    saved += lora("proj", c, c, q_g, input_counted=True)
    bwd += lin_bwd("proj", q_g, wt)
    p_g = q_g or wt or "proj" in lora_targets
    if layer_scale and wt:
        saved += a * bt * c
    g2 = g or p_g
    if drop_path and g2:
        saved += 2 * a * B
    # norm2
    if g2 or wt:
        saved += s * bt * c + 8 * bt
    g3 = g2 or wt
    fc1_out = 2 * m if mlp == "swiglu" else m
    saved += _linear(bt, c, fc1_out, g3, wt, a, autocast)
    saved += lora("fc1", c, fc1_out, g3, input_counted=wt)
    bwd += lin_bwd("fc1", g3, wt)
    f1_g = g3 or "fc1" in lora_targets
    if f1_g:
        saved += a * bt * fc1_out  # activation input (GELU) or the gate/up storage (SwiGLU)
        if mlp == "swiglu":
            saved += a * bt * m  # SiLU output, kept by the product
    saved += _linear(bt, m, c, f1_g, wt, a, autocast)  # fc2 input = activation output
    saved += lora("fc2", m, c, f1_g, input_counted=wt)
    bwd += lin_bwd("fc2", f1_g, wt)
    f2_g = f1_g or wt or "fc2" in lora_targets
    if layer_scale and wt:
        saved += a * bt * c
    return saved, g2 or f2_g, bwd


__all__ = ["ModelDims", "MemoryEstimate", "estimate", "dims_for", "fmt_bytes"]

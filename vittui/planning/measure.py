"""Measure what one real training step keeps in memory, so the estimator can be checked against it.

One step = forward, cross-entropy loss, backward and an optimizer step of a timm model built from a
Recipe's model section (timm only, pretrained never: shapes are all that matter). On the CPU there is no
allocator peak to read, so the harness counts what autograd keeps between forward and backward:

* every tensor saved for backward, seen through ``torch.autograd.graph.saved_tensors_hooks`` and
  deduplicated by the data pointer of its storage (q, k and v are views of one qkv output, for
  instance), leaving out storages that belong to parameters (``SavedTensors``, usable on its own);
* with gradient checkpointing, the saved-tensor hooks of ``torch.utils.checkpoint`` take precedence
  inside each block, so the harness counts each block's input (which the checkpoint keeps) through a
  forward pre-hook, not counting the inputs of frozen blocks on frozen inputs (no graph keeps them), and
  measures the recompute cost of one block separately (``recompute_bytes``) by running the largest block
  again under the hook;
* parameters, gradients (after backward), optimizer state (after the step) and an EMA copy.

Under CPU autocast the bf16 copies of weights that linear layers save for backward are not parameter
storages, so they are counted as activations, as they are in the estimator.

On CUDA ``torch.cuda.max_memory_allocated`` gives the real peak as well (``cuda_peak_bytes``).

Freezing and LoRA follow the Recipe's ``adapt`` section: ``linear_probe`` trains the head only,
``first_n`` freezes the patch embedding, tokens and the first N blocks, ``all_but_last_n`` trains the
last N blocks, final norm and head; ``lora`` freezes the base model, injects peft LoRA adapters into the
chosen targets (default ``qkv``) and trains the adapters and the head.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from vittui.recipe import Recipe


@dataclass
class Measurement:
    device: str
    params_bytes: int
    trainable_params: int
    total_params: int
    grads_bytes: int
    optimizer_bytes: int
    ema_bytes: int
    activations_bytes: int  # kept between forward and backward
    recompute_bytes: int  # one checkpointed block recomputed in backward (0 without checkpointing)
    cuda_peak_bytes: int | None
    step_seconds: float
    saved_by_shape: dict[str, int] = field(default_factory=dict)

    @property
    def activations_peak_bytes(self) -> int:
        return self.activations_bytes + self.recompute_bytes

    @property
    def total_bytes(self) -> int:
        """Persistent state plus activations at their peak: what the estimator's ``peak`` is checked against
        (the estimator also adds a workspace term the harness cannot see)."""
        return (self.params_bytes + self.grads_bytes + self.optimizer_bytes + self.ema_bytes
                + self.activations_peak_bytes)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["activations_peak_bytes"] = self.activations_peak_bytes
        d["total_bytes"] = self.total_bytes
        return d


def _timm_name(name: str) -> str:
    return name.split(".", 1)[0] if "." in name else name


def build_model(recipe: Recipe, num_classes: int = 10) -> nn.Module:
    """A timm model of the recipe's shape with random weights (no download)."""
    import timm

    m = recipe.model
    kwargs: dict[str, Any] = {"img_size": m.img_size}
    for key, value in (("patch_size", m.patch_size), ("depth", m.depth), ("embed_dim", m.embed_dim),
                       ("num_heads", m.num_heads), ("mlp_ratio", m.mlp_ratio)):
        if value is not None:
            kwargs[key] = value
    return timm.create_model(
        _timm_name(m.name), pretrained=False, num_classes=num_classes,
        drop_path_rate=recipe.regularize.drop_path, drop_rate=recipe.regularize.dropout, **kwargs,
    )


def _blocks(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    return list(blocks) if blocks is not None else []


def apply_adapt(model: nn.Module, recipe: Recipe) -> nn.Module:
    """Freeze / inject LoRA as the recipe asks (the harness's own small version of models.adapt)."""
    a = recipe.adapt
    blocks = _blocks(model)
    head_names = ("head", "fc_norm", "head_dist")

    def set_trainable(mod: nn.Module | None, flag: bool) -> None:
        if mod is not None:
            for p in mod.parameters():
                p.requires_grad_(flag)

    if a.lora:
        import peft

        model.requires_grad_(False)
        targets = [t.rsplit(".", 1)[-1] for t in a.lora_targets] or ["qkv"]
        # adapters inside the blocks only ("proj" would otherwise also match patch_embed.proj)
        pattern = r".*blocks\.\d+\..*\b(" + "|".join(targets) + r")$"
        config = peft.LoraConfig(r=a.lora_r, lora_alpha=a.lora_alpha, lora_dropout=a.lora_dropout,
                                 target_modules=pattern)
        model = peft.inject_adapter_in_model(config, model)
        for n, p in model.named_parameters():
            p.requires_grad_("lora_" in n)
        for name in head_names:
            set_trainable(getattr(model, name, None), True)
        return model
    if a.freeze == "linear_probe":
        model.requires_grad_(False)
        for name in head_names:
            set_trainable(getattr(model, name, None), True)
    elif a.freeze == "first_n":
        n = a.freeze_blocks
        for name in ("patch_embed", "cls_token", "reg_token", "dist_token", "pos_embed"):
            obj = getattr(model, name, None)
            if isinstance(obj, nn.Parameter):
                obj.requires_grad_(False)
            else:
                set_trainable(obj, False)
        for blk in blocks[:n]:
            set_trainable(blk, False)
    elif a.freeze == "all_but_last_n":
        n = a.freeze_blocks
        model.requires_grad_(False)
        for blk in blocks[len(blocks) - n:]:
            set_trainable(blk, True)
        for name in ("norm",) + head_names:
            set_trainable(getattr(model, name, None), True)
    return model


def _storage_key(t: torch.Tensor) -> tuple[int, int]:
    s = t.untyped_storage()
    return s.data_ptr(), s.nbytes()


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class SavedTensors:
    """Counts what autograd keeps for backward while the ``with`` block runs: the harness's measuring core.

    Every tensor saved for backward is seen through ``torch.autograd.graph.saved_tensors_hooks`` and
    counted once per storage (views such as q, k and v of one qkv output share a storage; the whole
    storage is counted), leaving out the storages of ``exclude`` (the parameters). The forward of each
    module in ``checkpointed`` runs under ``torch.utils.checkpoint``, whose own saved-tensor hooks take
    precedence inside it; what such a block keeps is its input, added through a forward pre-hook when the
    block takes part in backward (its input or its parameters need gradients). A block that does not (a
    frozen block on a frozen input) keeps nothing: torch's checkpoint still hands its input to the outer
    hooks, but frees it as soon as the block returns, so such a save is not counted.

        with SavedTensors(exclude=model.parameters()) as saved:
            loss = model(x).sum()
        saved.bytes  # kept between forward and backward
    """

    def __init__(self, exclude=(), checkpointed=()):
        self.exclude = {_storage_key(t) for t in exclude}
        self.checkpointed = list(checkpointed)
        self.saved: dict[tuple[int, int], torch.Tensor] = {}
        self._packs: dict[tuple[int, int], int] = {}  # saves seen per storage
        self._unkept: dict[tuple[int, int], int] = {}  # of those, inputs of checkpointed blocks without grad
        self._handles: list = []
        self._hooks = None

    def _pack(self, t: torch.Tensor):
        key = _storage_key(t)
        if key not in self.exclude:
            self._packs[key] = self._packs.get(key, 0) + 1
            self.saved.setdefault(key, t)
        return t

    def _pre_hook(self, mod: nn.Module, args) -> None:
        t = args[0]
        key = _storage_key(t)
        if key in self.exclude:
            return
        if t.requires_grad or any(p.requires_grad for p in mod.parameters()):
            self.saved.setdefault(key, t)
            self._packs[key] = self._packs.get(key, 0) + 1
        elif key in self.saved:  # saved by torch's checkpoint on entry, released on return
            self._unkept[key] = self._unkept.get(key, 0) + 1

    def __enter__(self) -> "SavedTensors":
        self._handles = [m.register_forward_pre_hook(self._pre_hook) for m in self.checkpointed]
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)
        for h in self._handles:
            h.remove()
        self._handles = []
        for key, n in self._unkept.items():
            if self._packs.get(key, 0) <= n:  # nothing else saved it
                self.saved.pop(key, None)

    @property
    def bytes(self) -> int:
        """Bytes of the distinct storages saved."""
        return sum(k[1] for k in self.saved)

    def by_shape(self) -> dict[str, int]:
        """Bytes per ``"(shape) dtype"`` label of the saved tensors."""
        shapes: dict[str, int] = {}
        for t in self.saved.values():
            label = f"{tuple(t.shape)} {str(t.dtype).replace('torch.', '')}"
            shapes[label] = shapes.get(label, 0) + t.untyped_storage().nbytes()
        return shapes


def measure_step(recipe: Recipe, num_classes: int = 10, device: str | None = None,
                 fused_attn: bool | None = None, timed_steps: int = 0) -> Measurement:
    """Run one training step of ``recipe`` and report where its bytes are.

    ``timed_steps`` > 0 runs that many further steps (after the measured one) and reports their mean
    wall time; 0 reports the measured step's own time (which includes the hook overhead).
    """
    dev = torch.device(device or ("cuda" if torch.cuda.is_available() and recipe.compute.device != "cpu"
                                  else "cpu"))
    model, opt, ema = _prepare(recipe, num_classes, dev, fused_attn)
    params = list(model.parameters())
    trainable = [p for p in params if p.requires_grad]
    param_keys = {_storage_key(p) for p in params}
    bs = recipe.data.batch_size
    img = recipe.model.img_size
    x = torch.randn(bs, 3, img, img, device=dev)
    y = torch.randint(0, num_classes, (bs,), device=dev)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(recipe.compute.precision)

    def autocast():
        return torch.autocast(dev.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    loss, counter = _forward_saving(model, x, y, recipe, params, autocast)
    activations = counter.bytes
    shapes = counter.by_shape()
    saved_inputs = list(counter.saved.values())
    counter.saved.clear()
    loss.backward()
    opt.step()
    if dev.type == "cuda":
        torch.cuda.synchronize()
    step_s = time.perf_counter() - t0
    cuda_peak = torch.cuda.max_memory_allocated() if dev.type == "cuda" else None
    grads = _nbytes(p.grad for p in trainable if p.grad is not None)
    opt_bytes = _optimizer_bytes(opt)
    ema_bytes = _nbytes(v for v in ema.values() if v.is_floating_point()) if ema else 0

    recompute = 0
    if recipe.compute.grad_checkpointing:
        recompute = _recompute_bytes(model, saved_inputs, param_keys, autocast, bs, dev)
    del saved_inputs
    if timed_steps:
        step_s = _mean_step_seconds(model, opt, x, y, autocast, dev, timed_steps)

    return Measurement(
        device=str(dev), params_bytes=_nbytes(params), trainable_params=sum(p.numel() for p in trainable),
        total_params=sum(p.numel() for p in params), grads_bytes=grads, optimizer_bytes=opt_bytes,
        ema_bytes=ema_bytes, activations_bytes=activations, recompute_bytes=recompute,
        cuda_peak_bytes=cuda_peak, step_seconds=step_s, saved_by_shape=shapes,
    )


def _prepare(recipe: Recipe, num_classes: int, dev: torch.device, fused_attn: bool | None
             ) -> tuple[nn.Module, torch.optim.Optimizer, dict[str, torch.Tensor] | None]:
    """The adapted model on `dev` in train mode, its optimizer, and the EMA copy (None without EMA)."""
    torch.manual_seed(recipe.run.seed)
    model = build_model(recipe, num_classes)
    if fused_attn is not None:
        for blk in _blocks(model):
            if hasattr(blk, "attn") and hasattr(blk.attn, "fused_attn"):
                blk.attn.fused_attn = fused_attn
    model = apply_adapt(model, recipe)
    model.to(dev).train()
    if recipe.compute.grad_checkpointing:
        model.set_grad_checkpointing(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    ema = None
    if recipe.regularize.ema:
        ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    o = recipe.optim
    if o.name == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(trainable, lr=o.lr, momentum=o.momentum,
                                                     weight_decay=o.weight_decay)
    else:
        opt = torch.optim.AdamW(trainable, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return model, opt, ema


def _forward_saving(model: nn.Module, x: torch.Tensor, y: torch.Tensor, recipe: Recipe, params: list,
                    autocast: Any) -> tuple[torch.Tensor, SavedTensors]:
    """The loss of one forward, and what autograd saved for backward (parameters left out; with
    checkpointing, the input of each block that takes part in backward — what timm's checkpoint keeps)."""
    counter = SavedTensors(exclude=params,
                           checkpointed=_blocks(model) if recipe.compute.grad_checkpointing else ())
    with counter:
        with autocast():
            logits = model(x)
            loss = nn.functional.cross_entropy(logits.float(), y, label_smoothing=recipe.regularize.label_smoothing)
    return loss, counter


def _optimizer_bytes(opt: torch.optim.Optimizer) -> int:
    total = 0
    for state in opt.state.values():
        for v in state.values():
            if torch.is_tensor(v) and v.dim() > 0:
                total += v.numel() * v.element_size()
    return total


def _mean_step_seconds(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                       autocast: Any, dev: torch.device, steps: int) -> float:
    times = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        with autocast():
            loss = nn.functional.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t1)
    return sum(times) / len(times)


def _recompute_bytes(model, saved_inputs, param_keys, autocast, bs, dev) -> int:
    """Bytes one block saves when it is re-run in backward: the largest over blocks that need grads."""
    blocks = _blocks(model)
    if not blocks:
        return 0
    tokens_dim = None
    for t in saved_inputs:
        if t.dim() == 3 and t.shape[0] == bs:
            tokens_dim = t.shape
            break
    if tokens_dim is None:
        return 0
    needs_input_grad = False
    best = 0
    for blk in blocks:
        blk_trainable = any(p.requires_grad for p in blk.parameters())
        if not (blk_trainable or needs_input_grad):
            continue
        xin = torch.randn(tokens_dim, device=dev).requires_grad_(needs_input_grad)
        seen: dict[tuple[int, int], int] = {}
        in_key = _storage_key(xin)

        def pack(t):
            k = _storage_key(t)
            if k not in param_keys and k != in_key:
                seen.setdefault(k, k[1])
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with autocast():
                out = blk(xin)
        best = max(best, sum(seen.values()))
        del out
        needs_input_grad = True
    return best


__all__ = ["Measurement", "SavedTensors", "measure_step", "build_model", "apply_adapt"]

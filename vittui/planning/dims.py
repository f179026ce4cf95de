"""The shape of a model as the memory estimator sees it: `ModelDims` (depth, width, heads, tokens, stages),
its analytic parameter and FLOP counts, and `dims_for`, the shape a recipe builds (a catalogue entry or a
timm name's standard size, with the recipe's overrides). Pure Python, no torch."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any


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


_TIMM_SIZES = {  # width, depth, heads of the standard timm ViT sizes, for names not in the catalogue
    "tiny": (192, 12, 3), "small": (384, 12, 6), "medium": (512, 12, 8), "base": (768, 12, 12),
    "large": (1024, 24, 16), "huge": (1280, 32, 16),
}


def _dims_from_name(name: str) -> ModelDims | None:
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


__all__ = ["ModelDims", "dims_for"]

"""Attention maps: extraction from timm and Hugging Face ViTs, and statistics computed on them.

Shapes used throughout:
    L layers, B images, H heads, T tokens (prefix tokens first: CLS, then any registers; then patches
    in row-major order over a grid of gh x gw).

`extract_attention` returns a torch tensor (L, B, H, T, T) of probabilities (rows sum to 1). Every other
function here is pure: it takes numpy arrays or torch tensors, computes in float64 numpy and returns numpy
arrays or plain floats. Per-map statistics (`entropy`, `mean_distance`) reduce only the last two axes, so a
(L, B, H, T, T) input gives (L, B, H) and a (H, T, T) input gives (H,).
"""

from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

# Flag thresholds -----------------------------------------------------------------------------------------
HEAD_COLLAPSE_SIMILARITY = 0.95  # mean pairwise cosine similarity of a layer's heads above this: collapsed
LAYER_SIMILARITY = 0.99  # cosine similarity of consecutive layers' head-mean maps above this: redundant
UNIFORM_ENTROPY = 0.98  # normalised entropy (entropy / ln T) of a head above this: near-uniform


# --------------------------------------------------------------------------------------------------------
# Model plumbing
# --------------------------------------------------------------------------------------------------------

def unwrap(model: Any) -> Any:
    """The network that holds the layers: strips peft wrappers (`get_base_model()`) and project wrappers
    that keep a transformers model in `.hf`, in any nesting."""
    for _ in range(8):
        inner = None
        if hasattr(model, "get_base_model") and callable(model.get_base_model):
            inner = model.get_base_model()
        elif hasattr(model, "hf") and model.hf is not None and model.hf is not model:
            inner = model.hf
        if inner is None or inner is model:
            return model
        model = inner
    return model


def is_hf(model: Any) -> bool:
    """True for a transformers model (duck-typed so this module never imports transformers)."""
    config = getattr(model, "config", None)
    return config is not None and hasattr(config, "_attn_implementation") and hasattr(model, "forward")


def num_prefix_tokens(model: Any) -> int:
    """Tokens before the patches: CLS (if any) plus register/distillation tokens."""
    m = unwrap(model)
    if hasattr(m, "num_prefix_tokens"):
        return int(m.num_prefix_tokens)
    config = getattr(m, "config", None)
    if config is not None:
        return 1 + int(getattr(config, "num_register_tokens", 0) or 0)
    return 1


def patch_size_of(model: Any) -> tuple[int, int]:
    m = unwrap(model)
    pe = getattr(m, "patch_embed", None)
    if pe is not None and getattr(pe, "patch_size", None) is not None:
        return _pair(pe.patch_size)
    config = getattr(m, "config", None)
    if config is not None and getattr(config, "patch_size", None) is not None:
        return _pair(config.patch_size)
    raise ValueError(f"cannot tell the patch size of {type(m).__name__}")


def geometry(model: Any, images_shape: Sequence[int], tokens: int | None = None
             ) -> tuple[tuple[int, int], tuple[int, int], int]:
    """(grid, patch_size, num_prefix_tokens) for images of shape (B, C, H, W) fed to `model`.

    The grid comes from the image size and patch size; when `tokens` is given and disagrees (a model that
    pools or crops), a square grid is inferred from the token count instead."""
    prefix = num_prefix_tokens(model)
    ph, pw = patch_size_of(model)
    h, w = int(images_shape[-2]), int(images_shape[-1])
    grid = (h // ph, w // pw)
    if tokens is not None and grid[0] * grid[1] != tokens - prefix:
        grid = infer_grid(tokens - prefix)
    return grid, (ph, pw), prefix


def _pair(x: Any) -> tuple[int, int]:
    if isinstance(x, (tuple, list)):
        return int(x[0]), int(x[1])
    return int(x), int(x)


def infer_grid(num_patches: int) -> tuple[int, int]:
    side = int(round(math.sqrt(num_patches)))
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patch tokens do not form a square grid; pass grid explicitly")
    return side, side


def extract_attention(model: Any, images: Any) -> "torch.Tensor":
    """Attention probabilities of every layer: a float32 CPU tensor (L, B, H, T, T).

    Runs in eval mode under `torch.no_grad` and puts back every module's train/eval flag afterwards.
    timm models: fused attention is switched off on each attention module for the call (the probabilities
    are never materialised otherwise) and the input of `attn_drop` — the softmax output — is hooked; the
    `fused_attn` flags are restored afterwards. transformers models: called with `output_attentions=True`
    under eager attention, and the previous attention implementation is restored afterwards."""
    import torch

    net = unwrap(model)
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            if is_hf(net):
                maps = _extract_hf(net, images)
            else:
                maps = _extract_timm(net, images)
    finally:
        for m, mode in modes:
            m.training = mode
    return torch.stack([a.detach().float().cpu() for a in maps])


def _extract_timm(net: Any, images: Any) -> list:
    attn_modules = [m for m in net.modules() if hasattr(m, "fused_attn") and hasattr(m, "attn_drop")]
    if not attn_modules:
        raise ValueError(f"{type(net).__name__} has no timm attention modules (fused_attn + attn_drop)")
    saved = [(m, m.fused_attn) for m in attn_modules]
    captured: list = []

    def hook(_mod, inputs, _output):
        captured.append(inputs[0])

    handles = []
    try:
        for m in attn_modules:
            m.fused_attn = False
            handles.append(m.attn_drop.register_forward_hook(hook))
        net(images)
    finally:
        for h in handles:
            h.remove()
        for m, flag in saved:
            m.fused_attn = flag
    if len(captured) != len(attn_modules):
        raise RuntimeError(f"captured {len(captured)} attention maps from {len(attn_modules)} attention modules")
    return captured


def _extract_hf(net: Any, images: Any) -> list:
    config = net.config
    previous = config._attn_implementation
    switched = previous != "eager"
    if switched:
        _set_attn_impl(net, "eager")
    try:
        out = net(pixel_values=images, output_attentions=True)
    finally:
        if switched:
            _set_attn_impl(net, previous)
    attentions = getattr(out, "attentions", None)
    if not attentions:
        raise RuntimeError(f"{type(net).__name__} returned no attentions with output_attentions=True")
    return list(attentions)


def _set_attn_impl(net: Any, impl: Any) -> None:
    if hasattr(net, "set_attn_implementation") and impl is not None:
        try:
            net.set_attn_implementation(impl)
            return
        except Exception:  # noqa: BLE001 - fall back to setting the config field
            pass
    net.config._attn_implementation = impl


# --------------------------------------------------------------------------------------------------------
# Pure statistics
# --------------------------------------------------------------------------------------------------------

def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=np.float64)


def cls_attention(attn_layer: Any, num_prefix_tokens: int = 1,
                  grid: tuple[int, int] | int | None = None) -> np.ndarray:
    """CLS-to-patch attention of one layer: (H, T, T) or (B, H, T, T, averaged over B) -> (H, gh, gw).

    Row 0 (the CLS query) over the patch keys, as probabilities (not renormalised over patches)."""
    a = _np(attn_layer)
    if a.ndim == 4:
        a = a.mean(axis=0)
    if a.ndim != 3:
        raise ValueError(f"expected (H, T, T) or (B, H, T, T), got shape {a.shape}")
    patches = a[:, 0, num_prefix_tokens:]
    gh, gw = _grid(grid, patches.shape[-1])
    return patches.reshape(a.shape[0], gh, gw)


def _grid(grid: Any, num_patches: int) -> tuple[int, int]:
    if grid is None:
        return infer_grid(num_patches)
    gh, gw = _pair(grid)
    if gh * gw != num_patches:
        raise ValueError(f"grid {gh}x{gw} does not match {num_patches} patch tokens")
    return gh, gw


def _fuse_heads(a: np.ndarray, head_fusion: str) -> np.ndarray:
    """(..., H, T, T) -> (..., T, T)"""
    if head_fusion == "mean":
        return a.mean(axis=-3)
    if head_fusion == "max":
        return a.max(axis=-3)
    if head_fusion == "min":
        return a.min(axis=-3)
    raise ValueError(f"head_fusion must be mean, max or min (got {head_fusion!r})")


def rollout(attn: Any, head_fusion: str = "mean") -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020).

    attn: (L, H, T, T) -> (T, T), or (L, B, H, T, T) -> (B, T, T). Per layer: fuse heads, add the residual
    connection as A' = 0.5 A + 0.5 I, renormalise rows; then R = A'_L ... A'_1."""
    a = _np(attn)
    if a.ndim not in (4, 5):
        raise ValueError(f"expected (L, H, T, T) or (L, B, H, T, T), got shape {a.shape}")
    fused = _fuse_heads(a, head_fusion)  # (L, [B,] T, T)
    t = fused.shape[-1]
    eye = np.eye(t)
    result = np.broadcast_to(eye, fused.shape[1:]).copy()
    for layer in fused:
        layer = 0.5 * layer + 0.5 * eye
        layer = layer / layer.sum(axis=-1, keepdims=True)
        result = layer @ result
    return result


def rollout_map(attn: Any, num_prefix_tokens: int = 1, grid: tuple[int, int] | int | None = None,
                head_fusion: str = "mean") -> np.ndarray:
    """The CLS row of the rollout over the patches: (L, H, T, T) -> (gh, gw); (L, B, H, T, T) -> (B, gh, gw)."""
    r = rollout(attn, head_fusion)
    row = r[..., 0, num_prefix_tokens:]
    gh, gw = _grid(grid, row.shape[-1])
    return row.reshape(*row.shape[:-1], gh, gw)


def entropy(attn: Any, normalize: bool = False) -> np.ndarray:
    """Mean over query rows of -sum_k p ln p (nats), reducing the last two axes: (..., T, T) -> (...).

    With `normalize`, divided by ln T (1 = uniform over all T tokens)."""
    a = _np(attn)
    safe = np.where(a > 0, a, 1.0)
    h = -(a * np.log(safe)).sum(axis=-1).mean(axis=-1)
    if normalize:
        t = a.shape[-1]
        h = h / math.log(t) if t > 1 else np.zeros_like(h)
    return h


def distance_matrix(grid: tuple[int, int] | int, patch_size: tuple[int, int] | int) -> np.ndarray:
    """(N, N) Euclidean distances in pixels between patch centres, patches in row-major order."""
    gh, gw = _pair(grid)
    ph, pw = _pair(patch_size)
    rows, cols = np.divmod(np.arange(gh * gw), gw)
    dy = (rows[:, None] - rows[None, :]) * ph
    dx = (cols[:, None] - cols[None, :]) * pw
    return np.sqrt(dy.astype(np.float64) ** 2 + dx.astype(np.float64) ** 2)


def mean_distance(attn: Any, grid: tuple[int, int] | int, patch_size: tuple[int, int] | int,
                  num_prefix_tokens: int | None = None) -> np.ndarray:
    """Mean attention distance in pixels (ViT paper, Fig. 7), reducing the last two axes.

    Over patch queries only: sum_k w_qk * ||pos_q - pos_k|| * patch_size, averaged over queries. Prefix
    tokens (CLS, registers) have no position, so the attention a patch gives them is dropped and its
    patch-to-patch weights w_qk are renormalised to sum to 1 (a query that gives all its attention to
    prefix tokens counts as distance 0). `num_prefix_tokens` defaults to T - gh*gw."""
    a = _np(attn)
    gh, gw = _pair(grid)
    n = gh * gw
    prefix = a.shape[-1] - n if num_prefix_tokens is None else num_prefix_tokens
    if prefix < 0 or a.shape[-1] != prefix + n:
        raise ValueError(f"{a.shape[-1]} tokens do not match grid {gh}x{gw} plus {prefix} prefix tokens")
    w = a[..., prefix:, prefix:]
    total = w.sum(axis=-1, keepdims=True)
    w = np.divide(w, total, out=np.zeros_like(w), where=total > 0)
    d = distance_matrix((gh, gw), patch_size)
    per_query = (w * d).sum(axis=-1)
    return per_query.mean(axis=-1)


def _cosine_matrix(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit @ unit.T


def head_similarity(attn_layer: Any) -> np.ndarray:
    """(H, H) cosine similarities of the heads' maps of one layer, (H, T, T) or (B, H, T, T) (each head's
    maps over the batch flattened into one vector)."""
    a = _np(attn_layer)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"expected (H, T, T) or (B, H, T, T), got shape {a.shape}")
    vectors = np.moveaxis(a, 1, 0).reshape(a.shape[1], -1)
    return _cosine_matrix(vectors)


def head_diversity(attn_layer: Any) -> float:
    """Mean pairwise cosine similarity of a layer's heads (1 = identical heads). NaN with a single head."""
    s = head_similarity(attn_layer)
    h = s.shape[0]
    if h < 2:
        return float("nan")
    iu = np.triu_indices(h, k=1)
    return float(s[iu].mean())


def layer_similarity(attn: Any) -> list[float]:
    """Cosine similarity between consecutive layers' head-mean maps: (L, [B,] H, T, T) -> L-1 floats."""
    a = _np(attn)
    if a.ndim == 4:
        a = a[:, None]
    if a.ndim != 5:
        raise ValueError(f"expected (L, H, T, T) or (L, B, H, T, T), got shape {a.shape}")
    vectors = a.mean(axis=2).reshape(a.shape[0], -1)
    s = _cosine_matrix(vectors)
    return [float(s[i, i + 1]) for i in range(a.shape[0] - 1)]


def flags(diversity: Sequence[float], layer_sim: Sequence[float],
          entropy_norm: Sequence[Sequence[float]]) -> list[str]:
    """Warnings a person can read: collapsed heads, redundant consecutive layers, near-uniform heads.

    diversity: per layer mean pairwise head similarity; layer_sim: per consecutive pair; entropy_norm:
    [layer][head] normalised entropy. Layers are numbered from 0 as in the model's module names."""
    out: list[str] = []
    # A layer whose heads are all near-uniform has "collapsed" heads and matches its neighbour trivially;
    # it gets only the uniform flag, so that an untrained model shows one finding per layer, not three.
    all_uniform = [bool(heads) and all(e > UNIFORM_ENTROPY for e in heads) for heads in entropy_norm]

    def uniform(i: int) -> bool:
        return i < len(all_uniform) and all_uniform[i]

    for i, d in enumerate(diversity):
        if uniform(i):
            continue
        if d is not None and not math.isnan(d) and d > HEAD_COLLAPSE_SIMILARITY:
            out.append(f"layer {i}: heads collapsed (mean pairwise similarity {d:.3f} > "
                       f"{HEAD_COLLAPSE_SIMILARITY})")
    for i, s in enumerate(layer_sim):
        if uniform(i) and uniform(i + 1):
            continue
        if s is not None and not math.isnan(s) and s > LAYER_SIMILARITY:
            out.append(f"layers {i}-{i + 1}: nearly identical attention (similarity {s:.3f} > "
                       f"{LAYER_SIMILARITY})")
    for i, heads in enumerate(entropy_norm):
        uniform = [h for h, e in enumerate(heads) if e > UNIFORM_ENTROPY]
        if uniform:
            which = "all heads" if len(uniform) == len(heads) else "heads " + ",".join(map(str, uniform))
            out.append(f"layer {i}: {which} near-uniform (normalised entropy > {UNIFORM_ENTROPY})")
    return out


@dataclass
class AttentionSummary:
    entropy: list[list[float]]  # [layer][head], normalised by ln T, mean over the batch
    distance: list[list[float]]  # [layer][head], pixels, mean over the batch
    diversity: list[float]  # [layer], mean pairwise head similarity (1 = identical)
    layer_similarity: list[float]  # [layer pair]
    flags: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(attn: Any, grid: tuple[int, int] | int, patch_size: tuple[int, int] | int,
              num_prefix_tokens: int | None = None) -> AttentionSummary:
    """Statistics of (L, H, T, T) or (L, B, H, T, T) attention, averaged over the batch."""
    a = _np(attn)
    if a.ndim == 4:
        a = a[:, None]
    if a.ndim != 5:
        raise ValueError(f"expected (L, H, T, T) or (L, B, H, T, T), got shape {a.shape}")
    ent = entropy(a, normalize=True).mean(axis=1)  # (L, H)
    dist = mean_distance(a, grid, patch_size, num_prefix_tokens).mean(axis=1)
    div = [head_diversity(layer) for layer in a]
    lsim = layer_similarity(a)
    ent_l = [[float(v) for v in row] for row in ent]
    return AttentionSummary(
        entropy=ent_l,
        distance=[[float(v) for v in row] for row in dist],
        diversity=div,
        layer_similarity=lsim,
        flags=flags(div, lsim, ent_l),
    )


# --------------------------------------------------------------------------------------------------------
# Probe files
# --------------------------------------------------------------------------------------------------------

PROBE_IMAGES = "images.npz"


def probe_filename(step: int) -> str:
    return f"step-{int(step):08d}.npz"


def _atomic_savez(path: Path, **arrays: Any) -> None:
    from vittui.runs.store import atomic_write_bytes

    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue(), fsync=False)


def images_to_uint8(images: Any, mean: Sequence[float] | None = None,
                    std: Sequence[float] | None = None) -> np.ndarray:
    """(B, C, H, W) tensors -> (B, H, W, C) uint8. With mean/std, un-normalises first; float images are
    then clipped to [0, 1] (if they already lie there) or min-max scaled over the batch."""
    x = _np(images) if not (isinstance(images, np.ndarray) and images.dtype == np.uint8) else images
    if x.dtype == np.uint8:
        return np.ascontiguousarray(np.moveaxis(x, 1, -1)) if x.ndim == 4 and x.shape[1] in (1, 3) else x
    if mean is not None and std is not None:
        c = x.shape[1]
        m = np.asarray(mean, dtype=np.float64)[:c].reshape(1, -1, 1, 1)
        s = np.asarray(std, dtype=np.float64)[:c].reshape(1, -1, 1, 1)
        x = x * s + m
    lo, hi = float(x.min()), float(x.max())
    if lo < 0.0 or hi > 1.0:
        if mean is not None and std is not None:
            x = np.clip(x, 0.0, 1.0)
        else:
            x = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    out = np.round(x * 255.0).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(out, 1, -1))


def save_probe(run_attention_dir: str | Path, step: int, attn: Any, images: Any = None, *,
               grid: tuple[int, int] | int | None = None, patch_size: tuple[int, int] | int | None = None,
               num_prefix_tokens: int | None = None, mean: Sequence[float] | None = None,
               std: Sequence[float] | None = None) -> str:
    """Write `attention/step-NNNNNNNN.npz` (float16 attention (L, B, H, T, T) plus geometry) and, the
    first time, `attention/images.npz` (the probe images as uint8 (B, H, W, C)). Returns the probe's path
    relative to the run directory (the attention folder's parent), as `AttentionProbe.path` wants it."""
    d = Path(run_attention_dir)
    d.mkdir(parents=True, exist_ok=True)
    a = _np(attn).astype(np.float16)
    meta: dict[str, Any] = {"attention": a, "step": np.int64(step)}
    if grid is not None:
        meta["grid"] = np.asarray(_pair(grid), dtype=np.int64)
    if patch_size is not None:
        meta["patch_size"] = np.asarray(_pair(patch_size), dtype=np.int64)
    if num_prefix_tokens is not None:
        meta["num_prefix_tokens"] = np.int64(num_prefix_tokens)
    name = probe_filename(step)
    _atomic_savez(d / name, **meta)
    if images is not None and not (d / PROBE_IMAGES).exists():
        _atomic_savez(d / PROBE_IMAGES, images=images_to_uint8(images, mean, std))
    return f"{d.name}/{name}"


@dataclass
class Probe:
    step: int
    attention: np.ndarray  # float32 (L, B, H, T, T)
    images: np.ndarray | None  # uint8 (B, H, W, C)
    grid: tuple[int, int] | None = None
    patch_size: tuple[int, int] | None = None
    num_prefix_tokens: int | None = None


def load_probe(path: str | Path, run_dir: str | Path | None = None) -> Probe:
    """Read a probe written by `save_probe`; a relative `path` is taken from `run_dir` when given.
    The images come from `images.npz` beside it (None if missing)."""
    p = Path(path)
    if run_dir is not None and not p.is_absolute():
        p = Path(run_dir) / p
    with np.load(p) as z:
        attention = z["attention"].astype(np.float32)
        step = int(z["step"]) if "step" in z else 0
        grid = tuple(int(v) for v in z["grid"]) if "grid" in z else None
        ps = tuple(int(v) for v in z["patch_size"]) if "patch_size" in z else None
        prefix = int(z["num_prefix_tokens"]) if "num_prefix_tokens" in z else None
    images = None
    ip = p.parent / PROBE_IMAGES
    if ip.exists():
        with np.load(ip) as z:
            images = z["images"]
    return Probe(step=step, attention=attention, images=images, grid=grid, patch_size=ps,  # type: ignore[arg-type]
                 num_prefix_tokens=prefix)


def make_event(step: int, path: str, summary: AttentionSummary):
    """The `AttentionProbe` event that announces a saved probe and its statistics."""
    from vittui.runs.events import AttentionProbe

    return AttentionProbe(step=int(step), path=str(path), entropy=summary.entropy, distance=summary.distance,
                          diversity=list(summary.diversity), flags=list(summary.flags))


def probe(model: Any, images: Any, run_attention_dir: str | Path | None = None, step: int = 0, *,
          mean: Sequence[float] | None = None, std: Sequence[float] | None = None):
    """One call for the training loop: extract, summarise and (with a folder) save.

    Returns (attention tensor, summary, event or None)."""
    attn = extract_attention(model, images)
    grid, ps, prefix = geometry(model, tuple(images.shape), tokens=attn.shape[-1])
    summary = summarize(attn, grid, ps, prefix)
    event = None
    if run_attention_dir is not None:
        rel = save_probe(run_attention_dir, step, attn, images, grid=grid, patch_size=ps,
                         num_prefix_tokens=prefix, mean=mean, std=std)
        event = make_event(step, rel, summary)
    return attn, summary, event

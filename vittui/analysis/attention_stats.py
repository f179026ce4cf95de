"""Statistics of attention maps: pure numpy, no torch (they accept torch tensors by duck typing).

Shapes used throughout:
    L layers, B images, H heads, T tokens (prefix tokens first: CLS, then any registers; then patches
    in row-major order over a grid of gh x gw).

Every function here takes numpy arrays or torch tensors, computes in float64 numpy and returns numpy
arrays or plain floats. Per-map statistics (`entropy`, `mean_distance`) reduce only the last two axes, so a
(L, B, H, T, T) input gives (L, B, H) and a (H, T, T) input gives (H,). The extraction from a model is in
`vittui.analysis.attention` (torch); the probe files are in `vittui.runs.probes`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from vittui.runs.probes import as_float64 as _np
from vittui.runs.probes import pair as _pair

# Flag thresholds -----------------------------------------------------------------------------------------
HEAD_COLLAPSE_SIMILARITY = 0.95  # mean pairwise cosine similarity of a layer's heads above this: collapsed
LAYER_SIMILARITY = 0.99  # cosine similarity of consecutive layers' head-mean maps above this: redundant
UNIFORM_ENTROPY = 0.98  # normalised entropy (entropy / ln T) of a head above this: near-uniform


def infer_grid(num_patches: int) -> tuple[int, int]:
    side = int(round(math.sqrt(num_patches)))
    if side * side != num_patches:
        raise ValueError(f"{num_patches} patch tokens do not form a square grid; pass grid explicitly")
    return side, side


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


# Which query a 2-D map is read from. A model with a CLS token: its row ("cls"). A model without one
# (GAP ViTs, with or without registers): token 0 is a patch or a register, so the map is the attention each
# patch receives, averaged over the patch queries ("patch_mean"); its rollout starts from the same mean.
QUERY_CLS = "cls"
QUERY_PATCH_MEAN = "patch_mean"
QUERY_LABELS = {
    QUERY_CLS: "CLS attention",
    QUERY_PATCH_MEAN: "attention received per patch (mean over patch queries)",
}
ROLLOUT_LABELS = {
    QUERY_CLS: "rollout from CLS",
    QUERY_PATCH_MEAN: "rollout from the mean of patch queries",
}


def query_for(has_class_token: bool) -> str:
    return QUERY_CLS if has_class_token else QUERY_PATCH_MEAN


def _check_query(query: str) -> None:
    if query not in QUERY_LABELS:
        raise ValueError(f"query must be one of {sorted(QUERY_LABELS)} (got {query!r})")


def patch_mean_attention(attn_layer: Any, num_prefix_tokens: int = 0,
                         grid: tuple[int, int] | int | None = None) -> np.ndarray:
    """Attention each patch receives, averaged over the patch queries, of one layer: (H, T, T) or
    (B, H, T, T, averaged over B) -> (H, gh, gw). For models without a CLS token; prefix queries (registers)
    are left out, prefix keys are not shown (not renormalised over patches, like `cls_attention`)."""
    a = _np(attn_layer)
    if a.ndim == 4:
        a = a.mean(axis=0)
    if a.ndim != 3:
        raise ValueError(f"expected (H, T, T) or (B, H, T, T), got shape {a.shape}")
    patches = a[:, num_prefix_tokens:, num_prefix_tokens:].mean(axis=-2)
    gh, gw = _grid(grid, patches.shape[-1])
    return patches.reshape(a.shape[0], gh, gw)


def query_attention(attn_layer: Any, num_prefix_tokens: int, grid: tuple[int, int] | int | None = None,
                    query: str = QUERY_CLS) -> np.ndarray:
    """`cls_attention` or `patch_mean_attention`, as `query` says: (H, T, T) / (B, H, T, T) -> (H, gh, gw)."""
    _check_query(query)
    if query == QUERY_CLS:
        return cls_attention(attn_layer, num_prefix_tokens, grid)
    return patch_mean_attention(attn_layer, num_prefix_tokens, grid)


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
                head_fusion: str = "mean", query: str = QUERY_CLS) -> np.ndarray:
    """The rollout over the patches, from the CLS row (`query="cls"`) or from the mean of the patch rows
    (`query="patch_mean"`, models without a CLS token): (L, H, T, T) -> (gh, gw); (L, B, H, T, T) -> (B, gh, gw)."""
    _check_query(query)
    r = rollout(attn, head_fusion)
    if query == QUERY_CLS:
        row = r[..., 0, num_prefix_tokens:]
    else:
        row = r[..., num_prefix_tokens:, num_prefix_tokens:].mean(axis=-2)
    gh, gw = _grid(grid, row.shape[-1])
    return row.reshape(*row.shape[:-1], gh, gw)


def probe_geometry(probe: Any) -> tuple[int, tuple[int, int], str]:
    """(prefix tokens, (gh, gw), query) of a probe read by `vittui.runs.probes.load_probe`, filling in what
    files written before the geometry was saved lack: one prefix token, a square grid, and no prefix token
    meaning no CLS token."""
    a = probe.attention
    if a.ndim != 5:
        raise ValueError(f"expected attention (L, B, H, T, T), got shape {a.shape}")
    prefix = 1 if probe.num_prefix_tokens is None else int(probe.num_prefix_tokens)
    gh, gw = probe.grid if probe.grid is not None else infer_grid(a.shape[-1] - prefix)
    query = probe.query or (QUERY_CLS if prefix else QUERY_PATCH_MEAN)
    return prefix, (int(gh), int(gw)), query


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

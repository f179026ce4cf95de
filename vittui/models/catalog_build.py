"""Building the catalogue (torch, timm, transformers): every entry of `catalog.SPECS` is built on the meta
device, its parameters and FLOPs counted and its shape read, and `catalog.json` is written.

    python -m vittui.models.catalog_build        (or `python -m vittui.models.catalog --rebuild`)

Only the regeneration and the tests that check the file against real builds import this module; the
dashboard reads `catalog.json` through `vittui.models.catalog`, which imports no torch.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from vittui.models import catalog
from vittui.models.catalog import CATALOG_PATH, SPECS, from_dict


def build_meta(spec: dict[str, Any]):
    """The model of one spec on the meta device (no memory, no weights, no network)."""
    import torch

    with torch.device("meta"):
        if spec["source"] == "timm":
            import timm

            return timm.create_model(spec["id"], pretrained=False)
        import transformers

        cls = getattr(transformers, spec["hf_class"])
        config_cls = getattr(transformers, spec["hf_class"].replace("ForImageClassification", "")
                             .replace("Model", "") + "Config")
        return cls(config_cls(**spec["hf_config"]))


def count_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model, resolution: int) -> int:
    """Forward FLOPs for one image (2 per multiply-add), counted on meta tensors."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        x = torch.empty(1, 3, resolution, resolution)
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        if hasattr(model, "pretrained_cfg"):
            model(x)
        else:
            model(pixel_values=x)
    return int(counter.get_total_flops())


def _shape_timm(model) -> dict[str, Any]:
    pe = model.patch_embed
    out: dict[str, Any] = {"patch": int(pe.patch_size[0]), "resolution": int(pe.img_size[0]),
                           "global_pool": str(getattr(model, "global_pool", "token") or "token")}
    if hasattr(model, "layers") and not hasattr(model, "blocks"):  # swin
        stages = list(model.layers)
        dims = [int(s.blocks[0].norm1.normalized_shape[0]) for s in stages]
        blk = stages[0].blocks[0]
        out.update(arch="swin", embed_dim=dims[0], depth=sum(len(s.blocks) for s in stages),
                   heads=int(blk.attn.num_heads), mlp_hidden=int(blk.mlp.fc1.out_features),
                   prefix_tokens=0, stage_depths=[len(s.blocks) for s in stages], stage_dims=dims,
                   stage_heads=[int(s.blocks[0].attn.num_heads) for s in stages],
                   window=int(blk.window_size[0]))
        return out
    blk = model.blocks[0]
    mlp = blk.mlp
    swiglu = "glu" in type(mlp).__name__.lower() or hasattr(mlp, "fc1_g")
    hidden = int(mlp.fc1.out_features) if hasattr(mlp, "fc1") else int(mlp.fc1_x.out_features)
    if swiglu and hasattr(mlp, "fc1") and hidden == 2 * int(mlp.fc2.in_features):
        hidden //= 2
    ls = hasattr(blk, "ls1") and type(blk.ls1).__name__ != "Identity" or getattr(blk, "gamma_1", None) is not None
    out.update(embed_dim=int(model.embed_dim), depth=len(model.blocks), heads=int(blk.attn.num_heads),
               mlp_hidden=hidden, prefix_tokens=int(getattr(model, "num_prefix_tokens", 1)),
               mlp="swiglu" if swiglu else "gelu", layer_scale=bool(ls))
    return out


def _shape_hf(spec: dict[str, Any], model) -> dict[str, Any]:
    c = model.config
    if spec["hf_class"].startswith("Swin"):
        dims = [c.embed_dim * 2 ** i for i in range(len(c.depths))]
        return dict(arch="swin", patch=c.patch_size, resolution=c.image_size, embed_dim=c.embed_dim,
                    depth=sum(c.depths), heads=c.num_heads[0], mlp_hidden=int(c.embed_dim * c.mlp_ratio),
                    prefix_tokens=0, stage_depths=list(c.depths), stage_dims=dims,
                    stage_heads=list(c.num_heads), window=c.window_size, global_pool="avg")
    hidden = getattr(c, "intermediate_size", None) or int(c.hidden_size * c.mlp_ratio)
    ls = bool(getattr(c, "layerscale_value", 0) or getattr(c, "layer_scale_init_value", 0))
    pool = "avg" if getattr(c, "use_mean_pooling", False) else "token"
    return dict(patch=c.patch_size, resolution=c.image_size, embed_dim=c.hidden_size,
                depth=c.num_hidden_layers, heads=c.num_attention_heads, mlp_hidden=int(hidden),
                prefix_tokens=1, layer_scale=ls, global_pool=pool)


def compute_entry(spec: dict[str, Any]) -> dict[str, Any]:
    """A full catalogue entry: the spec's facts plus everything counted from the built model."""
    model = build_meta(spec)
    shape = _shape_timm(model) if spec["source"] == "timm" else _shape_hf(spec, model)
    flops = count_flops(model, shape["resolution"])
    entry = dict(spec)
    entry.update(shape)
    if spec["source"] == "timm":
        entry["num_classes"] = int(getattr(model, "num_classes", 1000))
    entry["params"] = count_params(model)
    entry["gflops"] = round(flops / 1e9, 3)
    entry["gmacs"] = round(flops / 2e9, 3)
    return entry


def rebuild(path: Path = CATALOG_PATH, verbose: bool = True) -> list[dict[str, Any]]:
    entries = []
    for spec in SPECS:
        entry = compute_entry(spec)
        info = from_dict(entry)  # validates the field set
        entries.append(asdict(info))
        if verbose:
            print(f"{info.key:18s} {info.params / 1e6:8.2f} M {info.gflops:8.2f} GFLOPs  {info.id}")
    doc = {
        "about": "Generated by `python -m vittui.models.catalog --rebuild`: params and gflops are counted "
                 "from models built on the meta device (FlopCounterMode, 2 FLOPs per multiply-add, one image "
                 "at the native resolution); imagenet_top1 is typed in with its top1_source.",
        "models": entries,
    }
    path.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
    catalog._load.cache_clear()
    return entries


def main(argv: list[str] | None = None) -> int:
    rebuild()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

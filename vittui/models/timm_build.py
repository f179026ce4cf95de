"""Building timm models: by registry name, from a local folder saved by timm (`local-dir:`, a path), or
from a timm repo on the Hub (`hf-hub:`, `timm/...`), with the recipe's size overrides; weights from
`model.weights`, the folder, or the Hub cache (fetched through `vittui.models.fetch`, so offline fails
fast instead of waiting on the network)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vittui.models.errors import ModelError
from vittui.models.fetch import hub_file, hub_reachable, load_state_dict_file, no_network_error
from vittui.models.resolve import read_json
from vittui.models.weights import load_into, set_report
from vittui.recipe import ModelSection

log = logging.getLogger("vittui.models")


def timm_overrides(m: ModelSection) -> dict[str, Any]:
    """The recipe's size overrides as `timm.create_model` keyword arguments (only those set)."""
    keys = {"patch_size": m.patch_size, "depth": m.depth, "embed_dim": m.embed_dim,
            "num_heads": m.num_heads, "mlp_ratio": m.mlp_ratio}
    return {k: v for k, v in keys.items() if v is not None}


def _timm_filter(model: nn.Module, sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The architecture's own checkpoint filter (resamples position embeddings to a new resolution)."""
    fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
    if fn is None:
        return sd
    try:
        return fn(sd, model)
    except Exception as e:  # the filter is a convenience; a plain load is still worth trying
        log.debug("checkpoint_filter_fn failed (%s); loading unfiltered", e)
        return sd



def _timm_source(m: ModelSection) -> tuple[str, dict[str, Any], str]:
    """(architecture, create_model overrides, weights path or "") for the recipe's model.

    A local folder (`local-dir:`, a path) or a timm repo on the Hub (`hf-hub:`, `timm/...`) supplies the
    architecture and the `model_args` of its config.json (the recipe's overrides win) and, when pretrained,
    its weights."""
    name, args = m.name, timm_overrides(m)
    weights: str = m.weights
    local: Path | None = None
    if name.startswith("local-dir:"):
        local = Path(name[len("local-dir:"):]).expanduser()
    elif name.startswith(("hf-hub:", "timm/")):
        repo = name[len("hf-hub:"):] if name.startswith("hf-hub:") else name
        repo = repo.split("@", 1)[0]
        local = Path(hub_file(repo, ("config.json",), repr(m.name), timm_name=m.name)).parent
        if m.pretrained and not weights:
            weights = hub_file(repo, ("model.safetensors", "pytorch_model.bin"), repr(m.name), timm_name=m.name)
    elif Path(name).expanduser().is_dir():
        local = Path(name).expanduser()
    if local is None:
        return name, args, weights
    cfg_path = local / "config.json"
    cfg = read_json(cfg_path) if cfg_path.is_file() else {}
    if "architecture" not in cfg:
        raise ModelError(
            f"{local} has no timm config.json (one with an 'architecture' key); set model.name to the "
            "timm architecture (e.g. vit_tiny_patch16_224) and model.weights to this folder"
        )
    saved = {k: v for k, v in (cfg.get("model_args") or {}).items()
             if k not in ("num_classes", "img_size", "pretrained_cfg", "pretrained_cfg_overlay")}
    if m.pretrained and not weights:
        weights = str(local)
    return cfg["architecture"], {**saved, **args}, weights


def _creator(name: str, kwargs: dict[str, Any], args: dict[str, Any]) -> Callable[..., nn.Module]:
    """`timm.create_model(name, **kwargs, **extra)` with timm's errors turned into ModelError."""
    import timm

    def create(**extra: Any) -> nn.Module:
        try:
            return timm.create_model(name, **kwargs, **extra)
        except ModelError:
            raise
        except RuntimeError as e:
            if "Unknown model" in str(e):
                raise ModelError(f"timm has no model {name!r}; see timm.list_models('{name.split('_')[0]}*')") \
                    from None
            raise ModelError(f"timm could not build {name!r} with {args}: {e}") from None
        except (TypeError, ValueError, AssertionError) as e:
            raise ModelError(f"timm could not build {name!r} with overrides {args}: {e}") from None

    return create


def _pretrained_from_hub(name: str, create: Callable[..., nn.Module]) -> nn.Module:
    """timm's own pretrained weights: fetch (or find cached) the file ourselves so offline fails fast."""
    import timm

    try:
        pcfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    except Exception:
        pcfg = None
    if pcfg is None or not (pcfg.hf_hub_id or pcfg.url):
        known = timm.list_pretrained(name.split(".", 1)[0] + "*")[:8]
        raise ModelError(
            f"timm has no pretrained weights for {name!r}"
            + (f"; pretrained tags: {', '.join(known)}" if known else "")
            + "; or set model.pretrained = false"
        )
    if pcfg.hf_hub_id:
        repo = pcfg.hf_hub_id
        file = hub_file(repo, tuple(f for f in (pcfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")
                                    if f), repr(name), timm_name=name)
        model = create(pretrained=True, pretrained_cfg_overlay=dict(file=file))
    else:  # a plain URL (torch hub cache)
        if not hub_reachable():
            raise no_network_error(repr(name), pcfg.url or "its URL", torch.hub.get_dir(), timm_name=name)
        try:
            model = create(pretrained=True)
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"downloading pretrained weights for {name!r} failed: {e}") from None
    set_report(model, {"source": name, "loaded": None, "skipped": [], "missing": [], "unexpected": []})
    return model


def build_timm(m: ModelSection, num_classes: int, drop_path: float, dropout: float) -> nn.Module:
    """A timm model for the recipe's model section; weights from model.weights, a folder, or the Hub."""
    name, args, weights = _timm_source(m)
    kwargs = dict(num_classes=num_classes, img_size=m.img_size, drop_path_rate=drop_path, drop_rate=dropout)
    kwargs.update(args)
    create = _creator(name, kwargs, args)
    if weights:
        model = create(pretrained=False)
        sd = _timm_filter(model, load_state_dict_file(weights))
        set_report(model, load_into(model, sd, weights))
        return model
    if not m.pretrained:
        model = create(pretrained=False)
        set_report(model, None)
        return model
    return _pretrained_from_hub(name, create)


__all__ = ["build_timm", "timm_overrides"]

"""Building transformers image classifiers: from a local folder or a Hub snapshot (pretrained), or from a
config (fetched, cached, or guessed from the Hub id when offline) with the recipe's size overrides.

The result is wrapped in `HFClassifier` (`vittui.models.hf`) so that `model(x)` returns logits.
"""

from __future__ import annotations

import inspect
import logging
import re
from pathlib import Path
from typing import Any

from torch import nn

from vittui.models.errors import ModelError
from vittui.models.fetch import hub_cache_dir, hub_reachable, hub_snapshot, offline_hub
from vittui.models.hf import HFClassifier
from vittui.models.weights import set_report
from vittui.recipe import ModelSection

log = logging.getLogger("vittui.models")

_SIZES = {  # hidden, heads, layers (ViT-style naming in hub ids)
    "tiny": (192, 3, 12), "small": (384, 6, 12), "base": (768, 12, 12),
    "large": (1024, 16, 24), "huge": (1280, 16, 32), "giant": (1536, 24, 40),
}


def _family_config(name: str) -> Any:
    """A config guessed from a Hub id when its config.json is not at hand (offline, not cached)."""
    import transformers as tf

    low = name.lower()
    if "dinov2" in low:
        cfg: Any = tf.Dinov2Config()
    elif "deit" in low:
        cfg = tf.DeiTConfig()
    elif "beit" in low:
        cfg = tf.BeitConfig()
    elif "swin" in low:
        cfg = tf.SwinConfig()
        return cfg
    else:
        cfg = tf.ViTConfig()
    for word, (hidden, heads, layers) in _SIZES.items():
        if re.search(rf"(^|[-_/]){word}([-_/]|$)", low):
            cfg.hidden_size, cfg.num_attention_heads, cfg.num_hidden_layers = hidden, heads, layers
            if hasattr(cfg, "intermediate_size"):
                cfg.intermediate_size = 4 * hidden
    if mt := re.search(r"patch(\d+)", low):
        cfg.patch_size = int(mt.group(1))
    return cfg


def _hf_config(src: str, local_ok_only: bool) -> Any | None:
    from transformers import AutoConfig

    if Path(src).expanduser().is_dir():
        return AutoConfig.from_pretrained(str(Path(src).expanduser()))
    try:
        with offline_hub():
            return AutoConfig.from_pretrained(src, cache_dir=hub_cache_dir(), local_files_only=True)
    except Exception:
        pass
    if local_ok_only or not hub_reachable():
        return None
    try:
        return AutoConfig.from_pretrained(src, cache_dir=hub_cache_dir())
    except Exception as e:
        log.info("could not fetch the config of %s (%s); guessing it from the name", src, e)
        return None


def _setcfg(cfg: Any, key: str, value: Any) -> None:
    """Set a config field; transformers 5 configs check types, so whole floats go in as ints where needed."""
    current = getattr(cfg, key, None)
    if isinstance(current, int) and not isinstance(current, bool) and isinstance(value, float):
        if not value.is_integer():
            raise ModelError(f"{type(cfg).__name__}.{key} must be a whole number (got {value})")
        value = int(value)
    try:
        setattr(cfg, key, value)
    except (TypeError, ValueError) as e:
        raise ModelError(f"cannot set {key} = {value!r} on {type(cfg).__name__}: {e}") from None


def _apply_hf_overrides(cfg: Any, m: ModelSection, num_classes: int, drop_path: float, dropout: float,
                        structural: bool) -> None:
    _setcfg(cfg, "num_labels", num_classes)
    if hasattr(cfg, "drop_path_rate"):
        _setcfg(cfg, "drop_path_rate", drop_path)
    if hasattr(cfg, "hidden_dropout_prob"):
        _setcfg(cfg, "hidden_dropout_prob", dropout)
    if not structural:
        return
    _setcfg(cfg, "image_size", m.img_size)
    if m.patch_size is not None:
        _setcfg(cfg, "patch_size", m.patch_size)
    flat = hasattr(cfg, "num_hidden_layers") and not hasattr(cfg, "depths")
    if not flat and (m.depth is not None or m.num_heads is not None):
        raise ModelError(
            f"model.depth / model.num_heads cannot be applied to a hierarchical {type(cfg).__name__}; "
            "save an edited config.json in a folder and set model.name to it"
        )
    old_hidden = getattr(cfg, "hidden_size", None) if flat else None
    if m.depth is not None:
        _setcfg(cfg, "num_hidden_layers", m.depth)
    if m.num_heads is not None:
        _setcfg(cfg, "num_attention_heads", m.num_heads)
    if m.embed_dim is not None:
        if flat:
            _setcfg(cfg, "hidden_size", m.embed_dim)
        else:
            _setcfg(cfg, "embed_dim", m.embed_dim)
    if hasattr(cfg, "intermediate_size") and flat:
        ratio = m.mlp_ratio if m.mlp_ratio is not None else cfg.intermediate_size / old_hidden
        _setcfg(cfg, "intermediate_size", int(round(ratio * cfg.hidden_size)))
    elif m.mlp_ratio is not None and hasattr(cfg, "mlp_ratio"):
        _setcfg(cfg, "mlp_ratio", m.mlp_ratio)
    hidden = getattr(cfg, "hidden_size", None) if flat else None
    heads = getattr(cfg, "num_attention_heads", None)
    if hidden and heads and hidden % heads:
        raise ModelError(f"hidden size {hidden} is not divisible by {heads} heads; adjust model.num_heads")


def _hf_class(cfg: Any) -> Any:
    from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING

    try:
        cls = MODEL_FOR_IMAGE_CLASSIFICATION_MAPPING[type(cfg)]
    except KeyError:
        raise ModelError(
            f"transformers has no image-classification model for {type(cfg).__name__} "
            f"(model_type {getattr(cfg, 'model_type', '?')!r})"
        ) from None
    if isinstance(cls, (tuple, list)):
        wanted = set(getattr(cfg, "architectures", None) or ())
        cls = next((c for c in cls if c.__name__ in wanted), cls[0])
    return cls



def _accepts(module: nn.Module, arg: str) -> bool:
    try:
        return arg in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def _pretrained(m: ModelSection, num_classes: int, drop_path: float, dropout: float) -> nn.Module:
    """From `model.weights` (a folder with config.json), a local folder as `model.name`, or a Hub snapshot."""
    src = m.weights or m.name
    local = Path(src).expanduser()
    if local.is_dir():
        cfg = _hf_config(str(local), local_ok_only=True)
        folder = str(local)
    elif local.is_file():
        raise ModelError(
            f"model.weights {src!r} is a file; transformers models load from a folder with config.json "
            "(save one with save_pretrained)"
        )
    else:
        folder = hub_snapshot(src)
        cfg = _hf_config(folder, local_ok_only=True)
    _apply_hf_overrides(cfg, m, num_classes, drop_path, dropout, structural=False)
    cls = _hf_class(cfg)
    with offline_hub():
        try:
            try:
                hf = cls.from_pretrained(folder, config=cfg, ignore_mismatched_sizes=True,
                                         attn_implementation="sdpa")
            except ValueError as e:
                if "sdpa" not in str(e).lower():
                    raise
                hf = cls.from_pretrained(folder, config=cfg, ignore_mismatched_sizes=True)
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"transformers could not load {src!r}: {e}") from None
    image_size = getattr(cfg, "image_size", m.img_size)
    interp = image_size != m.img_size and _accepts(hf, "interpolate_pos_encoding")
    model = HFClassifier(hf, interpolate_pos_encoding=interp)
    set_report(model, {"source": src, "loaded": None, "skipped": [], "missing": [], "unexpected": []})
    return model


def _from_config(m: ModelSection, num_classes: int, drop_path: float, dropout: float) -> nn.Module:
    """Fresh weights from the model's config (fetched or cached), or one guessed from its name offline."""
    cfg = _hf_config(m.name, local_ok_only=False)
    if cfg is None:
        cfg = _family_config(m.name)
        log.info("config for %s not cached and the Hub is out of reach: built a %s from the name",
                 m.name, type(cfg).__name__)
    _apply_hf_overrides(cfg, m, num_classes, drop_path, dropout, structural=True)
    cls = _hf_class(cfg)
    try:
        hf = cls._from_config(cfg, attn_implementation="sdpa")
    except ValueError as e:
        if "sdpa" not in str(e).lower():
            raise ModelError(f"transformers could not build {m.name!r}: {e}") from None
        hf = cls._from_config(cfg)
    model = HFClassifier(hf)
    set_report(model, None)
    return model


def build_hf(m: ModelSection, num_classes: int, drop_path: float, dropout: float) -> nn.Module:
    """A transformers classifier for the recipe's model section, wrapped in `HFClassifier`."""
    if m.weights and not Path(m.weights).expanduser().exists():
        raise ModelError(f"model.weights {m.weights!r} does not exist")
    if m.pretrained or m.weights:
        return _pretrained(m, num_classes, drop_path, dropout)
    return _from_config(m, num_classes, drop_path, dropout)


__all__ = ["build_hf"]

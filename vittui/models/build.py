"""Build a classification network from a `ModelSection`: timm or transformers, pretrained or from config.

Whatever comes back, `model(x)` returns a logits tensor of shape (batch, num_classes): transformers models
are wrapped in `HFClassifier`, whose `forward` returns `.logits`.

Pretrained weights are found by `vittui.models.fetch` (a local file or folder, or the Hub cache), which
fails at once, with the ways out, instead of waiting on a network that is not there.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vittui.models.errors import ModelError
from vittui.models.fetch import (
    _hub_file,
    _hub_reachable,
    _hub_snapshot,
    _no_network_error,
    _offline_hub,
    hub_cache_dir,
    load_state_dict_file,
)
from vittui.recipe import ModelSection

log = logging.getLogger("vittui.models")

_PATHLIKE = ("/", "./", "../", "~")


# --------------------------------------------------------------------------------------------- sources


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data


def _folder_kind(folder: Path) -> str | None:
    """'timm' or 'hf' for a local model folder, None when it holds no model we know."""
    cfg = folder / "config.json"
    if cfg.is_file():
        return "timm" if "architecture" in _read_json(cfg) else "hf"
    if any(folder.glob("*.safetensors")):
        return "timm"
    return None


def resolve_source(name: str, source: str) -> str:
    """Which library builds `name`: "timm" or "hf".

    An explicit `source` wins. With "auto": a local folder is judged by its `config.json` (timm writes an
    `architecture` key, transformers an `architectures`/`model_type`), or by bare `*.safetensors` (timm);
    `hf-hub:` / `timm/...` names are timm hub names; any other name with a "/" is a Hugging Face id; a
    name timm knows (the `.tag` suffix stripped) is timm; anything else goes to transformers.
    """
    if source in ("timm", "hf"):
        return source
    if source != "auto":
        raise ModelError(f"model.source must be auto, timm or hf (got {source!r})")
    path = Path(name).expanduser()
    if name and path.is_dir():
        kind = _folder_kind(path)
        if kind is None:
            raise ModelError(
                f"model.name {name!r} is a folder without config.json or *.safetensors; "
                "point it at a folder saved by timm or transformers"
            )
        return kind
    if name.startswith(_PATHLIKE) and not path.exists():
        raise ModelError(f"model.name {name!r} looks like a path but no such folder exists")
    if name.startswith(("hf-hub:", "local-dir:", "timm/")):
        return "timm"
    if "/" in name:
        return "hf"
    import timm

    return "timm" if timm.is_model(name.split(".", 1)[0]) else "hf"


# ------------------------------------------------------------------------------------------ load report


def _load_into(model: nn.Module, sd: dict[str, torch.Tensor], source: str) -> dict[str, Any]:
    """load_state_dict(strict=False) of the tensors whose shapes fit; a report of what was left out."""
    own = model.state_dict()
    keep, skipped = {}, []
    for k, v in sd.items():
        if k in own:
            if tuple(own[k].shape) == tuple(v.shape):
                keep[k] = v
            else:
                skipped.append((k, tuple(v.shape), tuple(own[k].shape)))
    unexpected = sorted(k for k in sd if k not in own)
    if not keep:
        raise ModelError(
            f"none of the {len(sd)} tensors in {source} fit this model ({len(own)} tensors): "
            "check that model.name and the size overrides match the saved model"
        )
    model.load_state_dict(keep, strict=False)
    missing = sorted(k for k in own if k not in keep)
    report = {
        "source": source,
        "loaded": len(keep),
        "skipped": skipped,  # (name, checkpoint shape, model shape): e.g. a head for other classes
        "missing": missing,  # left at their fresh initialisation
        "unexpected": unexpected,
    }
    if skipped:
        log.info("weights from %s: shapes differ, kept fresh: %s", source, ", ".join(s[0] for s in skipped))
    if unexpected:
        log.warning("weights from %s: %d tensors the model has no place for: %s", source, len(unexpected),
                    ", ".join(unexpected[:8]))
    return report


def _set_report(model: nn.Module, report: dict[str, Any] | None) -> None:
    object.__setattr__(model, "vittui_load_report", report)


def load_report(model: nn.Module) -> dict[str, Any] | None:
    """What `build_model` loaded into the model: loaded count, skipped (shape mismatch), missing, unexpected."""
    return getattr(model, "vittui_load_report", None)


# ------------------------------------------------------------------------------------------------ timm


def _timm_overrides(m: ModelSection) -> dict[str, Any]:
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


def _build_timm(m: ModelSection, num_classes: int, drop_path: float, dropout: float) -> nn.Module:
    import timm

    name, args = m.name, _timm_overrides(m)
    weights: str = m.weights
    local: Path | None = None
    if name.startswith("local-dir:"):
        local = Path(name[len("local-dir:"):]).expanduser()
    elif name.startswith(("hf-hub:", "timm/")):
        repo = name[len("hf-hub:"):] if name.startswith("hf-hub:") else name
        repo = repo.split("@", 1)[0]
        local = Path(_hub_file(repo, ("config.json",), repr(m.name), timm_name=m.name)).parent
        if m.pretrained and not weights:
            weights = _hub_file(repo, ("model.safetensors", "pytorch_model.bin"), repr(m.name), timm_name=m.name)
    elif Path(name).expanduser().is_dir():
        local = Path(name).expanduser()
    if local is not None:
        cfg_path = local / "config.json"
        cfg = _read_json(cfg_path) if cfg_path.is_file() else {}
        if "architecture" not in cfg:
            raise ModelError(
                f"{local} has no timm config.json (one with an 'architecture' key); set model.name to the "
                "timm architecture (e.g. vit_tiny_patch16_224) and model.weights to this folder"
            )
        name = cfg["architecture"]
        saved = {k: v for k, v in (cfg.get("model_args") or {}).items()
                 if k not in ("num_classes", "img_size", "pretrained_cfg", "pretrained_cfg_overlay")}
        args = {**saved, **args}
        if m.pretrained and not weights:
            weights = str(local)
    kwargs = dict(num_classes=num_classes, img_size=m.img_size, drop_path_rate=drop_path, drop_rate=dropout)
    kwargs.update(args)

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

    if weights:
        model = create(pretrained=False)
        sd = _timm_filter(model, load_state_dict_file(weights))
        _set_report(model, _load_into(model, sd, weights))
        return model
    if not m.pretrained:
        model = create(pretrained=False)
        _set_report(model, None)
        return model
    # Pretrained from the Hub: fetch (or find cached) the file ourselves so offline fails fast.
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
        file = _hub_file(repo, tuple(f for f in (pcfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin")
                                     if f), repr(name), timm_name=name)
        model = create(pretrained=True, pretrained_cfg_overlay=dict(file=file))
    else:  # a plain URL (torch hub cache)
        if not _hub_reachable():
            raise _no_network_error(repr(name), pcfg.url or "its URL", torch.hub.get_dir(), timm_name=name)
        try:
            model = create(pretrained=True)
        except ModelError:
            raise
        except Exception as e:
            raise ModelError(f"downloading pretrained weights for {name!r} failed: {e}") from None
    _set_report(model, {"source": name, "loaded": None, "skipped": [], "missing": [], "unexpected": []})
    return model


# -------------------------------------------------------------------------------------------- transformers

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
        with _offline_hub():
            return AutoConfig.from_pretrained(src, cache_dir=hub_cache_dir(), local_files_only=True)
    except Exception:
        pass
    if local_ok_only or not _hub_reachable():
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


class HFClassifier(nn.Module):
    """A transformers image classifier whose forward returns the logits tensor.

    `.hf` is the transformers model. `forward_with_attentions(x)` returns (logits, attentions) with the
    eager attention kernel for that one call (sdpa returns no attention maps).
    """

    def __init__(self, hf: nn.Module, interpolate_pos_encoding: bool = False):
        super().__init__()
        self.hf = hf
        self.interpolate_pos_encoding = interpolate_pos_encoding

    def _kwargs(self) -> dict[str, Any]:
        return {"interpolate_pos_encoding": True} if self.interpolate_pos_encoding else {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.hf(pixel_values=x, **self._kwargs()).logits

    def forward_with_attentions(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        cfg = self.hf.config
        before = getattr(cfg, "_attn_implementation", None)
        cfg._attn_implementation = "eager"
        try:
            out = self.hf(pixel_values=x, output_attentions=True, **self._kwargs())
        finally:
            cfg._attn_implementation = before
        return out.logits, tuple(out.attentions or ())


def _accepts(module: nn.Module, arg: str) -> bool:
    import inspect

    try:
        return arg in inspect.signature(module.forward).parameters
    except (TypeError, ValueError):  # pragma: no cover
        return False


def _build_hf(m: ModelSection, num_classes: int, drop_path: float, dropout: float) -> nn.Module:
    src = m.weights or m.name
    local = Path(src).expanduser()
    if m.weights and not local.exists():
        raise ModelError(f"model.weights {m.weights!r} does not exist")
    if m.pretrained or m.weights:
        if local.is_dir():
            cfg = _hf_config(str(local), local_ok_only=True)
            folder = str(local)
        elif local.is_file():
            raise ModelError(
                f"model.weights {src!r} is a file; transformers models load from a folder with config.json "
                "(save one with save_pretrained)"
            )
        else:
            folder = _hub_snapshot(src)
            cfg = _hf_config(folder, local_ok_only=True)
        _apply_hf_overrides(cfg, m, num_classes, drop_path, dropout, structural=False)
        cls = _hf_class(cfg)
        with _offline_hub():
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
        _set_report(model, {"source": src, "loaded": None, "skipped": [], "missing": [], "unexpected": []})
        return model
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
    _set_report(model, None)
    return model


# ------------------------------------------------------------------------------------------------ public


def build_model(m: ModelSection, num_classes: int, *, drop_path: float = 0.0, dropout: float = 0.0) -> nn.Module:
    """The network the recipe describes, with a fresh head for `num_classes`; forward gives logits.

    After a load from `model.weights` (or a local folder), `load_report(model)` says what was skipped.
    """
    if num_classes < 1:
        raise ModelError(f"num_classes must be >= 1 (got {num_classes})")
    source = resolve_source(m.name, m.source)
    if source == "timm":
        return _build_timm(m, num_classes, drop_path, dropout)
    return _build_hf(m, num_classes, drop_path, dropout)


def unwrap(model: nn.Module) -> nn.Module:
    """The underlying timm or transformers model: through DDP/compile, peft and HFClassifier."""
    seen = 0
    while seen < 10:
        seen += 1
        if hasattr(model, "_orig_mod") and isinstance(model._orig_mod, nn.Module):  # torch.compile
            model = model._orig_mod
        elif type(model).__name__ in ("DistributedDataParallel", "DataParallel") and hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "get_base_model") and type(model).__module__.startswith("peft"):
            model = model.get_base_model()
        elif type(model).__module__.startswith("peft.tuners") and isinstance(getattr(model, "model", None),
                                                                             nn.Module):
            model = model.model  # a LoraModel (PeftModel.base_model)
        elif isinstance(model, HFClassifier):
            model = model.hf
        else:
            break
    return model


def hf_classifier(model: nn.Module) -> HFClassifier | None:
    """The HFClassifier inside `model` (through peft, DDP, compile), or None for timm models."""
    for mod in model.modules():
        if isinstance(mod, HFClassifier):
            return mod
    return None


def is_hf(model: nn.Module) -> bool:
    if "transformers" not in sys.modules:
        return False
    from transformers import PreTrainedModel

    return isinstance(unwrap(model), PreTrainedModel)


_ATTN_LEAVES = {"qkv", "q_proj", "query", "attn", "attention", "self_attn"}


def _has_attention(module: nn.Module) -> bool:
    return any(n.rsplit(".", 1)[-1] in _ATTN_LEAVES for n, _ in module.named_modules() if n)


def _block_lists(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Named containers (ModuleList / Sequential) whose every child holds attention and none of whose
    children holds such a container itself; in model order."""
    cands = []
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.ModuleList, nn.Sequential)) and len(mod) and all(_has_attention(c) for c in mod):
            cands.append((name, mod))
    names = [n for n, _ in cands]
    return [(n, mod) for n, mod in cands if not any(o != n and o.startswith(n + ".") for o in names)]


def transformer_blocks(model: nn.Module) -> list[nn.Module]:
    """The encoder blocks in order: timm `blocks`, Swin stages flattened, HF `vit.layers` / `encoder.layer`."""
    base = unwrap(model)
    if isinstance(getattr(base, "blocks", None), (nn.Sequential, nn.ModuleList)) and len(base.blocks) \
            and all(_has_attention(b) for b in base.blocks):
        return list(base.blocks)
    return [b for _, lst in _block_lists(base) for b in lst]


def block_names(model: nn.Module) -> list[str]:
    """The parameter-name prefix of each block of `transformer_blocks`, as `model.named_parameters()` says."""
    ids = {id(b): i for i, b in enumerate(transformer_blocks(model))}
    out: list[str | None] = [None] * len(ids)
    for name, mod in model.named_modules():
        i = ids.get(id(mod))
        if i is not None and out[i] is None:
            out[i] = name
    return [n or "" for n in out]


_EMBED_WORDS = ("cls_token", "pos_embed", "patch_embed", "embeddings", "position_embedding", "mask_token",
                "dist_token", "distillation_token", "reg_token", "register_tokens", "absolute_pos_embed",
                "rel_pos_bias", "norm_pre")
_BLOCK_RE = re.compile(r"(?:^|\.)(?:blocks|layers|layer|block|h)\.(\d+)(?:\.|$)")


def block_index_of(param_name: str, num_blocks: int) -> int:
    """0 for embeddings (patch/pos/cls), i+1 for block i, num_blocks+1 for the final norm and head.

    Reads flat names (timm `blocks.3.`, HF `vit.layers.3.` / `encoder.layer.3.`); for hierarchical
    models (Swin) use `block_index_map(model)`, which goes by the module structure.
    """
    m = _BLOCK_RE.search(param_name)
    if m:
        return min(int(m.group(1)), num_blocks - 1) + 1
    if any(w in param_name for w in _EMBED_WORDS):
        return 0
    return num_blocks + 1


def block_index_map(model: nn.Module) -> dict[str, int]:
    """Each parameter name of `model` -> its depth index as in `block_index_of`, from the structure.

    Parameters inside block i get i+1; parameters before the first block 0; after the last block
    num_blocks+1; parameters between blocks (Swin's patch merging) the index of the block before them.
    """
    prefixes = block_names(model)
    n = len(prefixes)
    out: dict[str, int] = {}
    seen_block = 0
    for name, _ in model.named_parameters():
        idx = next((i for i, p in enumerate(prefixes) if p and name.startswith(p + ".")), None)
        if idx is not None:
            seen_block = idx + 1
            out[name] = idx + 1
        elif seen_block == 0:
            out[name] = 0
        else:
            out[name] = -seen_block  # between or after blocks: settled below
    for name, v in out.items():
        if v < 0:
            out[name] = n + 1 if -v == n else -v
    return out


def set_grad_checkpointing(model: nn.Module, enabled: bool = True) -> bool:
    """Trade compute for activation memory; False when the model has no support for it."""
    base = unwrap(model)
    if hasattr(base, "set_grad_checkpointing"):
        try:
            base.set_grad_checkpointing(enabled)
            return True
        except (AssertionError, NotImplementedError, AttributeError):
            return False
    if hasattr(base, "gradient_checkpointing_enable"):
        if not getattr(base, "supports_gradient_checkpointing", False):
            return False
        kw = {"use_reentrant": False}  # gradients still flow when the embeddings are frozen
        try:
            if hasattr(base, "activation_checkpointing_enable"):  # transformers >= 5
                if enabled:
                    base.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
                else:
                    base.activation_checkpointing_disable()
            elif enabled:
                base.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)
            else:
                base.gradient_checkpointing_disable()
            return True
        except (ValueError, NotImplementedError):
            return False
    return False


def save_pretrained_local(model: nn.Module, folder: str | Path) -> Path:
    """Save weights + config.json so that `build_model(pretrained=True, weights=folder)` restores them.

    timm: `model.safetensors` + timm's config.json (architecture, model_args); transformers:
    `save_pretrained`. A peft (LoRA) model is saved with its adapters merged into the weights.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if type(model).__module__.startswith("peft"):
        import copy

        model = copy.deepcopy(model).merge_and_unload()
    base = unwrap(model)
    if is_hf(base):
        base.save_pretrained(str(folder), safe_serialization=True)
        return folder
    if hasattr(base, "pretrained_cfg"):
        from timm.models import save_for_hf

        save_for_hf(base, str(folder), safe_serialization=True)
        return folder
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in base.state_dict().items()}, str(folder / "model.safetensors"))
    return folder


__all__ = [
    "HFClassifier", "resolve_source", "build_model", "transformer_blocks", "block_names",
    "block_index_of", "block_index_map", "set_grad_checkpointing", "is_hf", "unwrap", "hf_classifier",
    "save_pretrained_local", "load_report",
]

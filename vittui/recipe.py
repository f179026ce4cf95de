"""The training recipe: typed, frozen sections loaded from TOML, validated with errors a person can act on.

The recipe is the one description of a run that every other part reads: the worker builds from it,
the dashboard edits it, the estimator plans with it and the exporter turns it into code. It imports
neither torch nor Textual so that any process can load it in milliseconds.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import sys
import typing
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class RecipeError(ValueError):
    """A recipe problem phrased for the person who wrote the recipe: field, value, file."""

    def __init__(self, message: str, source: str | None = None):
        self.message = message
        self.source = source
        super().__init__(f"{message} [{source}]" if source else message)


@dataclass(frozen=True)
class ModelSection:
    """Which network to build; size overrides let tests and the demo build tiny models from config."""

    name: str = "vit_tiny_patch16_224"  # timm name, Hugging Face id, or a local folder
    source: str = "auto"  # auto | timm | hf
    pretrained: bool = False
    weights: str = ""  # local file or folder to load pretrained weights from (offline use)
    img_size: int = 224
    patch_size: int | None = None
    depth: int | None = None
    embed_dim: int | None = None
    num_heads: int | None = None
    mlp_ratio: float | None = None


@dataclass(frozen=True)
class DataSection:
    source: str = "digits"  # digits | imagefolder | medmnist | hf
    path: str = ""  # folder, .npz file, or HF dataset name / local path
    train_split: str = "train"
    val_split: str = "val"
    val_fraction: float = 0.2  # used when the source has no validation split
    batch_size: int = 64
    num_workers: int = 0
    limit: int = 0  # keep at most this many training images (0 = all); for smoke tests
    class_balance: str = "none"  # none | weighted_loss | weighted_sampler
    image_key: str = "image"  # HF datasets columns
    label_key: str = "label"
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class AugmentSection:
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (0.75, 1.3333333333333333)
    hflip: float = 0.5
    vflip: float = 0.0
    auto_augment: str = ""  # timm string, e.g. "rand-m9-mstd0.5-inc1"; "" = off
    color_jitter: float = 0.0
    re_prob: float = 0.0  # random erasing
    mixup: float = 0.0  # alpha; 0 = off
    cutmix: float = 0.0  # alpha; 0 = off
    mixup_prob: float = 1.0
    mixup_switch_prob: float = 0.5
    interpolation: str = "bicubic"


@dataclass(frozen=True)
class OptimSection:
    name: str = "adamw"  # adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.05
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    layer_decay: float = 1.0  # 1.0 = off; <1 scales lr down towards the input
    clip_grad: float = 0.0  # max grad norm; 0 = no clipping
    fused: bool = False  # fused AdamW kernel (CUDA)


@dataclass(frozen=True)
class RegularizeSection:
    label_smoothing: float = 0.1
    drop_path: float = 0.1
    dropout: float = 0.0
    ema: bool = False
    ema_decay: float = 0.9998


@dataclass(frozen=True)
class ScheduleSection:
    epochs: int = 30
    max_steps: int = 0  # stop after this many optimizer steps (0 = run all epochs)
    warmup_epochs: float = 5.0
    warmup_lr: float = 1e-6
    min_lr: float = 1e-5
    kind: str = "cosine"  # cosine | constant


@dataclass(frozen=True)
class AdaptSection:
    freeze: str = "none"  # none | linear_probe | first_n | all_but_last_n
    freeze_blocks: int = 0
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = ()  # empty = chosen from the model's module names


@dataclass(frozen=True)
class ComputeSection:
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 | fp16
    grad_checkpointing: bool = False
    accumulation: int = 1
    compile: bool = False
    channels_last: bool = False
    threads: int = 0  # torch CPU threads; 0 = library default


@dataclass(frozen=True)
class RunSection:
    name: str = ""
    output_dir: str = "runs"
    checkpoint_every: int = 0  # optimizer steps; 0 = only at epoch ends
    eval_every: int = 0  # optimizer steps; 0 = only at epoch ends
    keep_last: int = 2
    seed: int = 0
    log_every: int = 1
    probe_every: int = 50  # attention/gradient probe cadence in optimizer steps; 0 = off


@dataclass(frozen=True)
class Recipe:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    optim: OptimSection = field(default_factory=OptimSection)
    regularize: RegularizeSection = field(default_factory=RegularizeSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    adapt: AdaptSection = field(default_factory=AdaptSection)
    compute: ComputeSection = field(default_factory=ComputeSection)
    run: RunSection = field(default_factory=RunSection)

    def with_overrides(self, overrides: list[str] | dict[str, Any], source: str | None = None) -> "Recipe":
        """`["optim.lr=3e-4", ...]` or `{"optim.lr": 3e-4}` applied on top; validated like a file."""
        return apply_overrides(self, overrides, source)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return to_dict(self)

    def to_toml(self) -> str:
        return dumps(self)


SECTIONS: dict[str, type] = {f.name: f.default_factory().__class__ for f in fields(Recipe)}  # type: ignore[misc]

CHOICES: dict[str, tuple[str, ...]] = {
    "model.source": ("auto", "timm", "hf"),
    "data.source": ("digits", "imagefolder", "medmnist", "hf"),
    "data.class_balance": ("none", "weighted_loss", "weighted_sampler"),
    "augment.interpolation": ("bilinear", "bicubic", "nearest", "random"),
    "optim.name": ("adamw", "sgd"),
    "schedule.kind": ("cosine", "constant"),
    "adapt.freeze": ("none", "linear_probe", "first_n", "all_but_last_n"),
    "compute.device": ("auto", "cpu", "cuda"),
    "compute.precision": ("fp32", "bf16", "fp16"),
}

# (lower, lower inclusive, upper, upper inclusive); None = unbounded
RANGES: dict[str, tuple[float | None, bool, float | None, bool]] = {
    "model.img_size": (8, True, 4096, True),
    "model.patch_size": (1, True, None, False),
    "model.depth": (1, True, None, False),
    "model.embed_dim": (1, True, None, False),
    "model.num_heads": (1, True, None, False),
    "model.mlp_ratio": (0, False, None, False),
    "data.val_fraction": (0, False, 1, False),
    "data.batch_size": (1, True, None, False),
    "data.num_workers": (0, True, None, False),
    "data.limit": (0, True, None, False),
    "augment.hflip": (0, True, 1, True),
    "augment.vflip": (0, True, 1, True),
    "augment.color_jitter": (0, True, None, False),
    "augment.re_prob": (0, True, 1, True),
    "augment.mixup": (0, True, None, False),
    "augment.cutmix": (0, True, None, False),
    "augment.mixup_prob": (0, True, 1, True),
    "augment.mixup_switch_prob": (0, True, 1, True),
    "optim.lr": (0, False, None, False),
    "optim.weight_decay": (0, True, None, False),
    "optim.momentum": (0, True, 1, False),
    "optim.layer_decay": (0, False, 1, True),
    "optim.clip_grad": (0, True, None, False),
    "regularize.label_smoothing": (0, True, 1, False),
    "regularize.drop_path": (0, True, 1, False),
    "regularize.dropout": (0, True, 1, False),
    "regularize.ema_decay": (0, False, 1, False),
    "schedule.epochs": (1, True, None, False),
    "schedule.max_steps": (0, True, None, False),
    "schedule.warmup_epochs": (0, True, None, False),
    "schedule.warmup_lr": (0, True, None, False),
    "schedule.min_lr": (0, True, None, False),
    "adapt.freeze_blocks": (0, True, None, False),
    "adapt.lora_r": (1, True, None, False),
    "adapt.lora_alpha": (1, True, None, False),
    "adapt.lora_dropout": (0, True, 1, False),
    "compute.accumulation": (1, True, None, False),
    "compute.threads": (0, True, None, False),
    "run.checkpoint_every": (0, True, None, False),
    "run.eval_every": (0, True, None, False),
    "run.keep_last": (1, True, None, False),
    "run.log_every": (1, True, None, False),
    "run.probe_every": (0, True, None, False),
}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return "a list of numbers" if float in typing.get_args(tp) else "a list of strings"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _type_name(inner[0])
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check a TOML value against the field's type; ints widen to floats, lists become tuples."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _coerce(key, inner[0], value)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise RecipeError(f"{key} must be {_type_name(tp)} (got {value!r})")
        elem = args[0]
        if len(args) == 2 and args[1] is not Ellipsis and len(value) != 2:
            raise RecipeError(f"{key} must have 2 entries (got {len(value)})")
        return tuple(_coerce(f"{key}[{i}]", elem, v) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise RecipeError(f"{key} must be true or false (got {value!r})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecipeError(f"{key} must be an integer (got {value!r})")
        if not -(2**63) <= value < 2**63:
            raise RecipeError(f"{key} is out of range (got an integer of {len(str(abs(value)))} digits)")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecipeError(f"{key} must be a number (got {value!r})")
        try:
            number = float(value)
        except OverflowError:
            raise RecipeError(f"{key} must be a finite number (got an integer of {len(str(abs(value)))} digits)") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise RecipeError(f"{key} must be a finite number (got {value!r})")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise RecipeError(f"{key} must be a string (got {value!r})")
        return value
    raise RecipeError(f"{key}: unsupported type {tp}")  # pragma: no cover


def _unknown(key: str, known: list[str]) -> RecipeError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1, cutoff=0.6)
    prefix = key.rsplit(".", 1)[0] + "." if "." in key else ""
    hint = f" (did you mean {prefix}{close[0]}?)" if close else f" (known: {', '.join(sorted(known))})"
    return RecipeError(f"unknown key {key}{hint}")


def _check_value(key: str, value: Any) -> None:
    if key in CHOICES and value not in CHOICES[key]:
        close = difflib.get_close_matches(str(value), CHOICES[key], n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise RecipeError(f"{key} must be one of {', '.join(CHOICES[key])} (got {value!r}){hint}")
    if key in RANGES and value is not None:
        lo, lo_inc, hi, hi_inc = RANGES[key]
        if lo is not None and (value < lo or (value == lo and not lo_inc)):
            op = ">=" if lo_inc else ">"
            raise RecipeError(f"{key} must be {op} {lo:g} (got {value!r})")
        if hi is not None and (value > hi or (value == hi and not hi_inc)):
            op = "<=" if hi_inc else "<"
            raise RecipeError(f"{key} must be {op} {hi:g} (got {value!r})")


def _check_recipe(r: Recipe) -> None:
    """Rules that span fields."""
    lo, hi = r.augment.crop_scale
    if not (0 < lo <= hi <= 1):
        raise RecipeError(f"augment.crop_scale must satisfy 0 < min <= max <= 1 (got {list(r.augment.crop_scale)})")
    lo, hi = r.augment.crop_ratio
    if not (0 < lo <= hi):
        raise RecipeError(f"augment.crop_ratio must satisfy 0 < min <= max (got {list(r.augment.crop_ratio)})")
    if not (0 <= r.optim.betas[0] < 1 and 0 <= r.optim.betas[1] < 1):
        raise RecipeError(f"optim.betas must each be in [0, 1) (got {list(r.optim.betas)})")
    if len(r.data.mean) != len(r.data.std) or len(r.data.mean) not in (1, 3):
        raise RecipeError("data.mean and data.std must both have 1 or 3 entries")
    if any(s <= 0 for s in r.data.std):
        raise RecipeError(f"data.std entries must be > 0 (got {list(r.data.std)})")
    if r.data.source in ("imagefolder", "medmnist", "hf") and not r.data.path:
        raise RecipeError(f"data.path is required when data.source = {r.data.source!r}")
    if r.model.patch_size and r.model.img_size % r.model.patch_size:
        raise RecipeError(
            f"model.img_size ({r.model.img_size}) must be a multiple of model.patch_size ({r.model.patch_size})"
        )
    if r.model.embed_dim and r.model.num_heads and r.model.embed_dim % r.model.num_heads:
        raise RecipeError(
            f"model.embed_dim ({r.model.embed_dim}) must be divisible by model.num_heads ({r.model.num_heads})"
        )
    if r.adapt.freeze in ("first_n", "all_but_last_n") and r.adapt.freeze_blocks < 1:
        raise RecipeError(f"adapt.freeze_blocks must be >= 1 when adapt.freeze = {r.adapt.freeze!r}")
    if r.model.depth and r.adapt.freeze_blocks > r.model.depth:
        raise RecipeError(f"adapt.freeze_blocks ({r.adapt.freeze_blocks}) exceeds model.depth ({r.model.depth})")
    if r.compute.precision == "fp16" and r.compute.device == "cpu":
        raise RecipeError("compute.precision = 'fp16' needs a CUDA device; use 'bf16' on the CPU")
    if r.schedule.min_lr > r.optim.lr:
        raise RecipeError(f"schedule.min_lr ({r.schedule.min_lr:g}) must not exceed optim.lr ({r.optim.lr:g})")
    if r.run.name and any(c in r.run.name for c in "/\\\0") or r.run.name in (".", ".."):
        raise RecipeError(f"run.name must be a plain folder name (got {r.run.name!r})")
    if r.augment.auto_augment and not AUTO_AUGMENT.match(r.augment.auto_augment):
        raise RecipeError(
            f"augment.auto_augment must be a timm policy such as 'rand-m9-mstd0.5-inc1' (got {r.augment.auto_augment!r})"
        )


AUTO_AUGMENT = re.compile(r"^(rand|augmix|original|originalr|v0|v0r|3a)(-[a-z]+[0-9.]*)*$|^trivialaugment$")


def from_dict(data: dict[str, Any], source: str | None = None) -> Recipe:
    """Build a Recipe from nested dicts; the only way a recipe comes into being, so every path validates."""
    try:
        if not isinstance(data, dict):
            raise RecipeError("a recipe must be a table of sections")
        sections: dict[str, Any] = {}
        for name, values in data.items():
            if name not in SECTIONS:
                raise _unknown(name, list(SECTIONS))
            if not isinstance(values, dict):
                raise RecipeError(f"[{name}] must be a table of settings (got {values!r})")
            cls = SECTIONS[name]
            hints = _hints(cls)
            kwargs = {}
            for key, value in values.items():
                full = f"{name}.{key}"
                if key not in hints:
                    raise _unknown(full, list(hints))
                kwargs[key] = _coerce(full, hints[key], value)
                _check_value(full, kwargs[key])
            sections[name] = cls(**kwargs)
        recipe = Recipe(**sections)
        for name, cls in SECTIONS.items():  # defaults are validated too
            for f in fields(cls):
                _check_value(f"{name}.{f.name}", getattr(getattr(recipe, name), f.name))
        _check_recipe(recipe)
        return recipe
    except RecipeError as e:
        if source and not e.source:
            raise RecipeError(e.message, source) from None
        raise


def to_dict(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Nested plain dicts; None (unset override) is left out because TOML has no null."""
    out: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = getattr(recipe, name)
        out[name] = {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in fields(section)
            if (v := getattr(section, f.name)) is not None
        }
    return out


def diff(a: Recipe, b: Recipe) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two recipes."""
    da, db = to_dict(a), to_dict(b)
    out = {}
    for name in SECTIONS:
        for key in sorted(set(da[name]) | set(db[name])):
            if da[name].get(key) != db[name].get(key):
                out[f"{name}.{key}"] = (da[name].get(key), db[name].get(key))
    return out


def dumps(recipe: Recipe) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(recipe))


def loads(text: str, source: str | None = None) -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"TOML syntax error: {e}", source) from None
    return from_dict(data, source)


def load(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"cannot read recipe: {e}", str(path)) from None
    return loads(text, str(path))


def save(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(dumps(recipe), encoding="utf-8")


def parse_override(item: str) -> tuple[str, Any]:
    """`optim.lr=3e-4` -> ("optim.lr", 0.0003); values are TOML, bare words are strings."""
    if "=" not in item:
        raise RecipeError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(recipe: Recipe, overrides: list[str] | dict[str, Any], source: str | None = None) -> Recipe:
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    data = to_dict(recipe)
    for key, value in items:
        if "." not in key:
            raise RecipeError(f"override key {key!r} must be section.key (e.g. optim.lr)", source)
        section, leaf = key.split(".", 1)
        if section not in data:
            raise RecipeError(_unknown(section, list(SECTIONS)).message, source)
        data[section][leaf] = value
    return from_dict(data, source)


def get(recipe: Recipe, key: str) -> Any:
    section, leaf = key.split(".", 1)
    return getattr(getattr(recipe, section), leaf)


def set_value(recipe: Recipe, key: str, value: Any) -> Recipe:
    """One field changed and the whole recipe revalidated; the editor's path to a new recipe."""
    return apply_overrides(recipe, {key: value})


def field_keys() -> list[str]:
    return [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in fields(cls)]


def field_type(key: str) -> Any:
    section, leaf = key.split(".", 1)
    return _hints(SECTIONS[section])[leaf]


def presets_dir() -> Path:
    """Presets ship inside the package so an installed vittui has them without the repository."""
    return Path(__file__).parent / "presets"


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def resolve_preset(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a shipped preset (with or without .toml)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    shipped = presets_dir() / f"{stem}.toml"
    if shipped.exists():
        return shipped
    raise RecipeError(
        f"recipe file not found: {name_or_path} (shipped presets: {', '.join(list_presets())})"
    )


def load_preset(name_or_path: str | Path) -> Recipe:
    return load(resolve_preset(name_or_path))


__all__ = [
    "Recipe", "RecipeError", "ModelSection", "DataSection", "AugmentSection", "OptimSection",
    "RegularizeSection", "ScheduleSection", "AdaptSection", "ComputeSection", "RunSection",
    "load", "loads", "dumps", "save", "from_dict", "to_dict", "apply_overrides", "parse_override",
    "diff", "get", "set_value", "field_keys", "field_type", "list_presets", "load_preset", "resolve_preset",
    "replace", "dataclasses",
]

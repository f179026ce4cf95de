"""Export a Recipe as one standalone, readable training script (torch, timm, accelerate; peft for LoRA).

The script does not import vittui. It reproduces vittui's training loop step for step: the same data
split and per-epoch seeded order, the same transforms, model, parameter groups, schedule, loss and RNG
consumption, so that for one seed it prints the same per-step losses as `vittui train` (a test holds
both to 1e-5). Only the branches the recipe uses are written out: a digits recipe gets no ImageFolder
code, a recipe without EMA no EMA lines.

How it is put together: `TEMPLATE` (package data, `templates/train_script.py.tmpl`: the script is text,
not this package's code) is the script with a few markers a tiny preprocessor reads.

    # %if FLAG / # %elif FLAG / # %else / # %end   keep the lines of the branch whose flag is on
    @@NAME@@                                        replaced with generated text (constants, docstring)

Flags and replacements come from the recipe in `_flags` and `_constants`; nothing else is generated.
No torch at import: the exporter runs in any process.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vittui.data.medmnist import MEDMNIST_CLASSES
from vittui.recipe import Recipe, RecipeError, three_channels

SUPPORTED_SOURCES = ("digits", "imagefolder", "medmnist")
TEMPLATE = (Path(__file__).parent / "templates" / "train_script.py.tmpl").read_text(encoding="utf-8")


class ExportError(RecipeError):
    """A recipe the exporter cannot turn into a script, with the reason and the way out."""


# ----------------------------------------------------------------------------------------------------
# Literals


def _py(value: Any) -> str:
    """A Python literal that reads well: double-quoted strings, tuples for lists, floats as typed."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        inner = ", ".join(_py(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_py(k)}: {_py(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _model_source(recipe: Recipe) -> str:
    """'timm' or 'hf', as vittui's builder would decide (cheap cases without importing timm first)."""
    m = recipe.model
    if m.source in ("timm", "hf"):
        return m.source
    from vittui.models.resolve import resolve_source  # no torch; imports timm lazily

    return resolve_source(m.name, m.source)


# ----------------------------------------------------------------------------------------------------
# What the recipe turns on


def _flags(recipe: Recipe, model_source: str) -> dict[str, bool]:
    d, a, o, r, ad, c, m = (recipe.data, recipe.augment, recipe.optim, recipe.regularize, recipe.adapt,
                            recipe.compute, recipe.model)
    timm_model = model_source == "timm"
    freeze = ad.freeze != "none"
    layer_decay = o.layer_decay < 1.0
    flags = {
        "digits": d.source == "digits",
        "imagefolder": d.source == "imagefolder",
        "medmnist": d.source == "medmnist",
        "split": d.source in ("digits", "imagefolder"),
        "timm": timm_model,
        "hf": not timm_model,
        "weights": bool(m.weights) and timm_model,
        "freeze": freeze and not ad.lora,
        "lora": ad.lora,
        "freeze_linear_probe": ad.freeze == "linear_probe",
        "freeze_first_n": ad.freeze == "first_n",
        "freeze_all_but_last_n": ad.freeze == "all_but_last_n",
        "depth": freeze or ad.lora or (layer_decay and not (timm_model and not ad.lora)),
        "timm_layer_decay": layer_decay and timm_model and not ad.lora,
        "name_layer_decay": layer_decay and not (timm_model and not ad.lora),
        "plain_groups": not layer_decay,
        "sgd": o.name == "sgd",
        "adamw": o.name == "adamw",
        "fused": o.name == "adamw" and o.fused,
        "mixup": a.mixup > 0 or a.cutmix > 0,
        "weighted_loss": d.class_balance == "weighted_loss",
        "weighted_sampler": d.class_balance == "weighted_sampler",
        "ema": r.ema,
        "trivial": a.auto_augment == "trivialaugment",
        "constant_lr": recipe.schedule.kind == "constant",
        "grad_checkpointing": c.grad_checkpointing,
        "channels_last": c.channels_last,
        "compile": c.compile,
        "workers": d.num_workers > 0,
    }
    flags["cross_entropy"] = not flags["mixup"]
    flags["needs_re"] = flags["depth"]
    flags["sklearn_split"] = flags["split"]
    return flags


class _Lines:
    """The constants block being written: section headers and `NAME = literal  # comment` lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def section(self, title: str) -> None:
        self.lines.append("")
        self.lines.append(f"# {title} " + "-" * max(3, 96 - len(title) - 3))

    def const(self, name: str, value: Any, comment: str = "") -> None:
        text = f"{name} = {value if isinstance(value, _Raw) else _py(value)}"
        if comment:
            text = f"{text:<48}  # {comment}"
        self.lines.append(text)

    def comment(self, text: str) -> None:
        self.lines.append(f"# {text}")


def _model_constants(w: _Lines, recipe: Recipe, model_source: str) -> None:
    m, r = recipe.model, recipe.regularize
    w.section("model")
    name = m.name
    if model_source == "timm" and Path(name).expanduser().is_dir():
        name = f"local-dir:{Path(name).expanduser()}"
    w.const("MODEL_NAME", name, "timm name" if model_source == "timm" else "Hugging Face id or folder")
    w.const("PRETRAINED", bool(m.pretrained))
    if m.weights and model_source == "timm":
        w.const("WEIGHTS", m.weights, "local weight file loaded instead of downloading")
    w.const("IMG_SIZE", m.img_size)
    overrides = {k: getattr(m, k) for k in ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio")
                 if getattr(m, k) is not None}
    if model_source == "timm":
        w.const("ARCH_OVERRIDES", overrides, "changes to the named architecture")
    else:
        w.const("CONFIG_OVERRIDES", _hf_overrides(overrides), "changes to the model's config")
    w.const("DROP_PATH", r.drop_path, "stochastic depth")
    w.const("DROPOUT", r.dropout)


def _data_constants(w: _Lines, recipe: Recipe) -> None:
    d = recipe.data
    w.section("data")
    if d.source != "digits":
        w.const("DATA_PATH", d.path)
    if d.source == "imagefolder":
        w.const("TRAIN_SPLIT", d.train_split, "DATA_PATH/train/<class>/... if present")
        w.const("VAL_SPLIT", d.val_split)
    if d.source in ("digits", "imagefolder"):
        w.const("VAL_FRACTION", d.val_fraction, "split off when there is no val folder" if d.source != "digits"
                else "stratified split by SEED")
    if d.source == "medmnist":
        names = next((v for k, v in MEDMNIST_CLASSES.items() if Path(d.path).name.lower().startswith(k)), None)
        w.const("CLASS_NAMES", names, "None: the label numbers")
    w.const("BATCH_SIZE", d.batch_size)
    w.const("NUM_WORKERS", d.num_workers)
    w.const("LIMIT", d.limit, "keep at most this many training images (0 = all)")
    if d.class_balance != "none":
        w.comment(f"class balance: {d.class_balance} (written into the code below)")
    w.const("MEAN", three_channels(d.mean))
    w.const("STD", three_channels(d.std))


def _augment_constants(w: _Lines, recipe: Recipe) -> None:
    a = recipe.augment
    w.section("augmentation (timm create_transform)")
    w.const("CROP_SCALE", tuple(a.crop_scale))
    w.const("CROP_RATIO", tuple(a.crop_ratio))
    w.const("HFLIP", a.hflip)
    w.const("VFLIP", a.vflip)
    trivial = a.auto_augment == "trivialaugment"
    w.const("AUTO_AUGMENT", "" if trivial else a.auto_augment, "timm policy, '' = off")
    if trivial:
        w.const("TRIVIAL_AUGMENT", True, "torchvision TrivialAugmentWide")
    w.const("COLOR_JITTER", 0.0 if trivial else a.color_jitter, "0 = off")
    w.const("RE_PROB", a.re_prob, "random erasing")
    w.const("INTERPOLATION", a.interpolation)
    if a.mixup > 0 or a.cutmix > 0:
        w.const("MIXUP", a.mixup, "alpha; 0 = off")
        w.const("CUTMIX", a.cutmix)
        w.const("MIXUP_PROB", a.mixup_prob)
        w.const("MIXUP_SWITCH_PROB", a.mixup_switch_prob)


def _optim_constants(w: _Lines, recipe: Recipe) -> None:
    o, r, s = recipe.optim, recipe.regularize, recipe.schedule
    w.section("optimizer and schedule")
    w.comment(f"optimizer: {o.name}, schedule: {s.kind} (re-export with --set optim.name=... to change)")
    w.const("LR", o.lr)
    w.const("WEIGHT_DECAY", o.weight_decay)
    if o.name == "sgd":
        w.const("MOMENTUM", o.momentum)
    else:
        w.const("BETAS", tuple(o.betas))
    if o.name == "adamw" and o.fused:
        w.const("FUSED", True, "fused AdamW kernel on CUDA")
    w.const("LAYER_DECAY", o.layer_decay, "1.0 = off")
    w.const("CLIP_GRAD", o.clip_grad, "max grad norm; 0 = off")
    w.const("LABEL_SMOOTHING", r.label_smoothing)
    if r.ema:
        w.const("EMA_DECAY", r.ema_decay)
    w.const("EPOCHS", s.epochs)
    w.const("MAX_STEPS", s.max_steps, "stop after this many optimizer steps (0 = all epochs)")
    w.const("WARMUP_EPOCHS", s.warmup_epochs)
    w.const("WARMUP_LR", s.warmup_lr)
    w.const("MIN_LR", s.min_lr)


def _adapt_constants(w: _Lines, recipe: Recipe, model_source: str) -> None:
    ad = recipe.adapt
    if ad.freeze == "none" and not ad.lora:
        return
    w.section("adaptation")
    w.comment(f"freeze: {ad.freeze}{' + LoRA' if ad.lora else ''} (see trains() below)")
    if ad.freeze in ("first_n", "all_but_last_n"):
        w.const("FREEZE_BLOCKS", ad.freeze_blocks)
    if ad.lora:
        w.const("LORA_R", ad.lora_r)
        w.const("LORA_ALPHA", ad.lora_alpha)
        w.const("LORA_DROPOUT", ad.lora_dropout)
        targets = list(ad.lora_targets) or (["qkv"] if model_source == "timm" else [])
        w.const("LORA_TARGETS", tuple(targets), "Linear layer names; () = the attention q/v projections")
    w.const("HEAD", "head" if model_source == "timm" else "hf.classifier", "the classifier, always trained")


def _compute_constants(w: _Lines, recipe: Recipe) -> None:
    c, run = recipe.compute, recipe.run
    w.section("compute")
    w.const("DEVICE", c.device, "auto | cpu | cuda")
    w.const("PRECISION", {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[c.precision], "accelerate mixed_precision")
    w.const("ACCUMULATION", c.accumulation, "micro-batches per optimizer step")
    w.const("THREADS", c.threads, "torch CPU threads; 0 = default")
    if c.grad_checkpointing:
        w.const("GRAD_CHECKPOINTING", True)
    if c.channels_last:
        w.const("CHANNELS_LAST", True)
    if c.compile:
        w.const("COMPILE", True)
    w.const("SEED", run.seed)
    w.const("OUTPUT_DIR", str(Path(run.output_dir) / (run.name or "export")), "model.safetensors goes here")


def _constants(recipe: Recipe, model_source: str, preset: str) -> str:
    """The constants block of the script: every knob of the recipe, section by section."""
    w = _Lines()
    w.comment(f"The recipe ({preset}). Every knob of the run is a constant here; edit freely.")
    _model_constants(w, recipe, model_source)
    _data_constants(w, recipe)
    _augment_constants(w, recipe)
    _optim_constants(w, recipe)
    _adapt_constants(w, recipe, model_source)
    _compute_constants(w, recipe)
    return "\n".join(w.lines)


class _Raw(str):
    """Text put into the script as code, not as a string literal."""


def _hf_overrides(overrides: dict[str, Any]) -> dict[str, Any]:
    names = {"patch_size": "patch_size", "depth": "num_hidden_layers", "embed_dim": "hidden_size",
             "num_heads": "num_attention_heads"}
    out = {names[k]: v for k, v in overrides.items() if k in names}
    if "mlp_ratio" in overrides and "embed_dim" in overrides:
        out["intermediate_size"] = int(round(overrides["mlp_ratio"] * overrides["embed_dim"]))
    return out


# ----------------------------------------------------------------------------------------------------
# The preprocessor


_DIRECTIVE = re.compile(r"^\s*# %(if|elif|else|end)\b\s*(.*)$")


def render(template: str, flags: dict[str, bool], values: dict[str, str]) -> str:
    """Keep the lines whose `# %if` branches are on, fill `@@NAME@@`, squeeze blank runs."""
    out: list[str] = []
    stack: list[tuple[bool, bool]] = []  # (this branch on, some branch of this if already taken)

    def active() -> bool:
        return all(on for on, _ in stack)

    def test(expr: str) -> bool:
        words = expr.split()
        if not words:
            raise ValueError("empty # %if")
        # `a or b`, `a and not b`: left to right, flags only
        result, op, negate = None, "and", False
        for w in words:
            if w in ("and", "or"):
                op = w
                continue
            if w == "not":
                negate = True
                continue
            if w not in flags:
                raise KeyError(f"unknown template flag {w!r}")
            v = flags[w] != negate
            negate = False
            result = v if result is None else (result and v if op == "and" else result or v)
        return bool(result)

    for line in template.splitlines():
        m = _DIRECTIVE.match(line)
        if m:
            kind, expr = m.groups()
            if kind == "if":
                on = test(expr)
                stack.append((on, on))
            elif kind == "elif":
                _, taken = stack.pop()
                on = not taken and test(expr)
                stack.append((on, taken or on))
            elif kind == "else":
                _, taken = stack.pop()
                stack.append((not taken, True))
            else:
                stack.pop()
            continue
        if active():
            out.append(line)
    if stack:
        raise ValueError("unclosed # %if in the template")
    text = "\n".join(out)
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", value)
    leftover = re.findall(r"@@[A-Z_]+@@", text)
    if leftover:
        raise KeyError(f"unfilled template values: {', '.join(sorted(set(leftover)))}")
    text = re.sub(r"\n{4,}", "\n\n\n", text)  # never more than two blank lines
    return text.rstrip() + "\n"


# ----------------------------------------------------------------------------------------------------
# Entry point


def export_script(recipe: Recipe, preset: str = "recipe") -> str:
    """The standalone training script for `recipe` as text; `preset` names its origin in the header."""
    if recipe.data.source not in SUPPORTED_SOURCES:
        raise ExportError(
            f"vittui export writes scripts for data.source = {', '.join(SUPPORTED_SOURCES)} "
            f"(got {recipe.data.source!r}); save the dataset as an ImageFolder tree and set data.source = "
            "'imagefolder'"
        )
    if recipe.adapt.lora and recipe.adapt.freeze == "linear_probe":
        raise ExportError("adapt.lora = true with adapt.freeze = 'linear_probe': a linear probe trains only "
                          "the head; set adapt.freeze = 'none' for LoRA")
    source = _model_source(recipe)
    flags = _flags(recipe, source)
    data_words = {"digits": "scikit-learn's handwritten digits", "imagefolder": f"the images in {recipe.data.path}",
                  "medmnist": f"the MedMNIST file {recipe.data.path}"}[recipe.data.source]
    needs = ["torch", "torchvision", "timm", "accelerate", "safetensors", "numpy", "pillow"]
    if flags["split"]:
        needs.append("scikit-learn")
    if recipe.adapt.lora:
        needs.append("peft")
    if flags["hf"]:
        needs.append("transformers")
    values = {
        "TITLE": f"Train {recipe.model.name} on {data_words}.",
        "PRESET": preset,
        "NEEDS": ", ".join(needs),
        "CONSTANTS": _constants(recipe, source, preset),
    }
    return render(TEMPLATE, flags, values)


__all__ = ["export_script", "render", "ExportError", "TEMPLATE", "SUPPORTED_SOURCES"]

"""Export a Recipe as one standalone, readable training script (torch, timm, accelerate; peft for LoRA).

The script does not import vittui. It reproduces vittui's training loop step for step: the same data
split and per-epoch seeded order, the same transforms, model, parameter groups, schedule, loss and RNG
consumption, so that for one seed it prints the same per-step losses as `vittui train` (a test holds
both to 1e-5). Only the branches the recipe uses are written out: a digits recipe gets no ImageFolder
code, a recipe without EMA no EMA lines.

How it is put together: `TEMPLATE` below is the script with a few markers a tiny preprocessor reads.

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

from vittui.recipe import Recipe, RecipeError

SUPPORTED_SOURCES = ("digits", "imagefolder", "medmnist")

MEDMNIST_CLASSES: dict[str, list[str]] = {  # the same table as vittui.data.sources (no torch here)
    "pneumoniamnist": ["normal", "pneumonia"],
    "bloodmnist": [
        "basophil", "eosinophil", "erythroblast", "immature granulocytes",
        "lymphocyte", "monocyte", "neutrophil", "platelet",
    ],
}


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


def _three(values: tuple[float, ...]) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    return values * 3 if len(values) == 1 else values


def _model_source(recipe: Recipe) -> str:
    """'timm' or 'hf', as vittui's builder would decide (cheap cases without importing timm first)."""
    m = recipe.model
    if m.source in ("timm", "hf"):
        return m.source
    from vittui.models.build import resolve_source  # imports timm lazily

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


def _constants(recipe: Recipe, model_source: str, preset: str) -> str:
    d, a, o, r, s, ad, c, m, run = (recipe.data, recipe.augment, recipe.optim, recipe.regularize,
                                    recipe.schedule, recipe.adapt, recipe.compute, recipe.model, recipe.run)
    lines: list[str] = []

    def section(title: str) -> None:
        lines.append("")
        lines.append(f"# {title} " + "-" * max(3, 96 - len(title) - 3))

    def const(name: str, value: Any, comment: str = "") -> None:
        text = f"{name} = {value if isinstance(value, _Raw) else _py(value)}"
        if comment:
            text = f"{text:<48}  # {comment}"
        lines.append(text)

    lines.append(f"# The recipe ({preset}). Every knob of the run is a constant here; edit freely.")
    section("model")
    name = m.name
    if model_source == "timm" and Path(name).expanduser().is_dir():
        name = f"local-dir:{Path(name).expanduser()}"
    const("MODEL_NAME", name, "timm name" if model_source == "timm" else "Hugging Face id or folder")
    const("PRETRAINED", bool(m.pretrained))
    if m.weights and model_source == "timm":
        const("WEIGHTS", m.weights, "local weight file loaded instead of downloading")
    const("IMG_SIZE", m.img_size)
    overrides = {k: getattr(m, k) for k in ("patch_size", "depth", "embed_dim", "num_heads", "mlp_ratio")
                 if getattr(m, k) is not None}
    if model_source == "timm":
        const("ARCH_OVERRIDES", overrides, "changes to the named architecture")
    else:
        const("CONFIG_OVERRIDES", _hf_overrides(overrides), "changes to the model's config")
    const("DROP_PATH", r.drop_path, "stochastic depth")
    const("DROPOUT", r.dropout)

    section("data")
    if d.source != "digits":
        const("DATA_PATH", d.path)
    if d.source == "imagefolder":
        const("TRAIN_SPLIT", d.train_split, "DATA_PATH/train/<class>/... if present")
        const("VAL_SPLIT", d.val_split)
    if d.source in ("digits", "imagefolder"):
        const("VAL_FRACTION", d.val_fraction, "split off when there is no val folder" if d.source != "digits"
              else "stratified split by SEED")
    if d.source == "medmnist":
        names = next((v for k, v in MEDMNIST_CLASSES.items() if Path(d.path).name.lower().startswith(k)), None)
        const("CLASS_NAMES", names, "None: the label numbers")
    const("BATCH_SIZE", d.batch_size)
    const("NUM_WORKERS", d.num_workers)
    const("LIMIT", d.limit, "keep at most this many training images (0 = all)")
    if d.class_balance != "none":
        lines.append(f"# class balance: {d.class_balance} (written into the code below)")
    const("MEAN", _three(d.mean))
    const("STD", _three(d.std))

    section("augmentation (timm create_transform)")
    const("CROP_SCALE", tuple(a.crop_scale))
    const("CROP_RATIO", tuple(a.crop_ratio))
    const("HFLIP", a.hflip)
    const("VFLIP", a.vflip)
    trivial = a.auto_augment == "trivialaugment"
    const("AUTO_AUGMENT", "" if trivial else a.auto_augment, "timm policy, '' = off")
    if trivial:
        const("TRIVIAL_AUGMENT", True, "torchvision TrivialAugmentWide")
    const("COLOR_JITTER", 0.0 if trivial else a.color_jitter, "0 = off")
    const("RE_PROB", a.re_prob, "random erasing")
    const("INTERPOLATION", a.interpolation)
    if a.mixup > 0 or a.cutmix > 0:
        const("MIXUP", a.mixup, "alpha; 0 = off")
        const("CUTMIX", a.cutmix)
        const("MIXUP_PROB", a.mixup_prob)
        const("MIXUP_SWITCH_PROB", a.mixup_switch_prob)

    section("optimizer and schedule")
    lines.append(f"# optimizer: {o.name}, schedule: {s.kind} (re-export with --set optim.name=... to change)")
    const("LR", o.lr)
    const("WEIGHT_DECAY", o.weight_decay)
    if o.name == "sgd":
        const("MOMENTUM", o.momentum)
    else:
        const("BETAS", tuple(o.betas))
    if o.name == "adamw" and o.fused:
        const("FUSED", True, "fused AdamW kernel on CUDA")
    const("LAYER_DECAY", o.layer_decay, "1.0 = off")
    const("CLIP_GRAD", o.clip_grad, "max grad norm; 0 = off")
    const("LABEL_SMOOTHING", r.label_smoothing)
    if r.ema:
        const("EMA_DECAY", r.ema_decay)
    const("EPOCHS", s.epochs)
    const("MAX_STEPS", s.max_steps, "stop after this many optimizer steps (0 = all epochs)")
    const("WARMUP_EPOCHS", s.warmup_epochs)
    const("WARMUP_LR", s.warmup_lr)
    const("MIN_LR", s.min_lr)

    if ad.freeze != "none" or ad.lora:
        section("adaptation")
        lines.append(f"# freeze: {ad.freeze}{' + LoRA' if ad.lora else ''} (see trains() below)")
        if ad.freeze in ("first_n", "all_but_last_n"):
            const("FREEZE_BLOCKS", ad.freeze_blocks)
        if ad.lora:
            const("LORA_R", ad.lora_r)
            const("LORA_ALPHA", ad.lora_alpha)
            const("LORA_DROPOUT", ad.lora_dropout)
            targets = list(ad.lora_targets) or (["qkv"] if model_source == "timm" else [])
            const("LORA_TARGETS", tuple(targets), "Linear layer names; () = the attention q/v projections")
        const("HEAD", "head" if model_source == "timm" else "hf.classifier", "the classifier, always trained")

    section("compute")
    const("DEVICE", c.device, "auto | cpu | cuda")
    const("PRECISION", {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}[c.precision], "accelerate mixed_precision")
    const("ACCUMULATION", c.accumulation, "micro-batches per optimizer step")
    const("THREADS", c.threads, "torch CPU threads; 0 = default")
    if c.grad_checkpointing:
        const("GRAD_CHECKPOINTING", True)
    if c.channels_last:
        const("CHANNELS_LAST", True)
    if c.compile:
        const("COMPILE", True)
    const("SEED", run.seed)
    const("OUTPUT_DIR", str(Path(run.output_dir) / (run.name or "export")), "model.safetensors goes here")
    return "\n".join(lines)


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


TEMPLATE = r'''#!/usr/bin/env python
"""@@TITLE@@

A standalone training script exported by vittui from the recipe "@@PRESET@@".
Needs: @@NEEDS@@ (not vittui).
For the same seed it prints the same per-step losses as `vittui train`.

    python train.py                      # one process: the GPU if there is one, else the CPU
    accelerate launch train.py           # several GPUs or processes (set them up with `accelerate config`)
    python train.py --max-steps 20       # a quick look: 20 optimizer steps (the schedule shrinks to match)

Output: a line `step=N loss=... lr=... grad_norm=...` per optimizer step and `eval epoch=E loss=...
top1=... top5=...` per epoch; at the end the weights in OUTPUT_DIR/model.safetensors.
"""

import argparse
import json
import os
import random
# %if needs_re
import re
# %end
from itertools import islice
from pathlib import Path

import numpy as np
import timm
import torch
from accelerate import Accelerator
# %if imagefolder
from PIL import Image, ImageOps
# %else
from PIL import Image
# %end
from safetensors.torch import save_file
# %if digits
from sklearn.datasets import load_digits
# %end
# %if sklearn_split
from sklearn.model_selection import train_test_split
# %end
from timm.data import create_transform
# %if mixup
from timm.data import Mixup
from timm.loss import SoftTargetCrossEntropy
# %end
# %if timm_layer_decay
from timm.optim import param_groups_layer_decay
# %end
from timm.scheduler import CosineLRScheduler
# %if ema
from timm.utils import ModelEmaV3
# %end
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
# %if hf
from transformers import AutoConfig, AutoModelForImageClassification
# %end
# %if lora
from peft import LoraConfig, get_peft_model
# %end

@@CONSTANTS@@


def seed_everything(seed):
    random.seed(seed)  # timm's random crops draw from Python's RNG
    np.random.seed(seed % 2**32)  # mixup / cutmix draw from NumPy's
    torch.manual_seed(seed)  # weight init and drop-path from torch's


# ---- data -------------------------------------------------------------------------------------------

class ImageDataset(Dataset):
    """`load(source, i)` gives item i of `source` as an RGB PIL image; the transform makes it a tensor."""

    def __init__(self, source, load, indices, labels, transform):
        self.source, self.load, self.transform = source, load, transform
        self.indices = [int(i) for i in indices]
        self.labels = [int(y) for y in labels]

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, i):
        return self.transform(self.load(self.source, self.indices[i])), self.labels[i]


# %if split
def split_indices(labels, val_fraction, seed):
    """A train/val split stratified by class (plain when a class is too small); val kept in order."""
    idx = np.arange(len(labels))
    try:
        train, val = train_test_split(idx, test_size=val_fraction, random_state=seed, stratify=labels)
    except ValueError:  # a class with a single image
        n_val = min(len(idx) - 1, max(1, int(np.ceil(val_fraction * len(idx)))))
        train, val = train_test_split(idx, test_size=n_val, random_state=seed)
    return np.asarray(train), np.sort(np.asarray(val))


# %end
# %if digits
def digit_image(pixels, i):
    """One 8x8 digit (values 0..16) as an 8-bit image, resized to IMG_SIZE."""
    a = np.clip(np.rint(pixels[i] * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    img = Image.fromarray(a)
    if img.size != (IMG_SIZE, IMG_SIZE):
        img = img.resize((IMG_SIZE, IMG_SIZE), Image.Resampling.BILINEAR)
    return img.convert("RGB")


def load_data(train_tf, eval_tf):
    """scikit-learn's 1,797 handwritten digits, split by SEED."""
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    train_idx, val_idx = split_indices(labels, VAL_FRACTION, SEED)
    if LIMIT:
        train_idx = train_idx[:LIMIT]
    classes = [str(k) for k in range(10)]
    train_set = ImageDataset(digits.images, digit_image, train_idx, labels[train_idx], train_tf)
    val_set = ImageDataset(digits.images, digit_image, val_idx, labels[val_idx], eval_tf)
    return train_set, val_set, classes
# %elif imagefolder
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def scan(folder):
    """Class names (the sorted sub-folder names) and every image below each, in a stable order."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise SystemExit(f"no class folders in {folder}: expected {folder}/<class>/<images>")
    paths, labels = [], []
    for k, name in enumerate(classes):
        for dirpath, dirnames, filenames in os.walk(folder / name, followlinks=True):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in sorted(filenames):
                if not fn.startswith(".") and os.path.splitext(fn)[1].lower() in IMAGE_EXTENSIONS:
                    paths.append(os.path.join(dirpath, fn))
                    labels.append(k)
    return classes, paths, np.asarray(labels, dtype=np.int64)


def file_image(paths, i):
    """An image file as RGB: EXIF rotation applied, 16-bit scans scaled to 8 bits, transparency on white."""
    with Image.open(paths[i]) as img:
        img = ImageOps.exif_transpose(img)
        if img.mode.startswith("I;16"):
            a = np.asarray(img).astype(np.float64) * (255.0 / 65535.0)
            img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))
        elif img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        return img.convert("RGB")


def load_data(train_tf, eval_tf):
    """DATA_PATH/train/<class>/* and DATA_PATH/val/<class>/*, or DATA_PATH/<class>/* split by SEED."""
    root = Path(DATA_PATH).expanduser()
    train_dir, val_dir = root / TRAIN_SPLIT, root / VAL_SPLIT
    if train_dir.is_dir() and val_dir.is_dir():
        classes, train_paths, train_labels = scan(train_dir)
        val_classes, val_paths, val_labels = scan(val_dir)
        if val_classes != classes:
            raise SystemExit(f"the class folders of {train_dir} and {val_dir} differ")
        train_idx = np.random.default_rng(SEED).permutation(len(train_paths))  # LIMIT takes a mix of classes
        val_idx = np.arange(len(val_paths))
    else:
        classes, train_paths, labels = scan(train_dir if train_dir.is_dir() else root)
        val_paths, train_labels, val_labels = train_paths, labels, labels
        train_idx, val_idx = split_indices(labels, VAL_FRACTION, SEED)
    if LIMIT:
        train_idx = train_idx[:LIMIT]
    train_set = ImageDataset(train_paths, file_image, train_idx, train_labels[train_idx], train_tf)
    val_set = ImageDataset(val_paths, file_image, val_idx, val_labels[val_idx], eval_tf)
    return train_set, val_set, classes
# %elif medmnist
def array_image(images, i):
    """Row i of a MedMNIST array, (H, W) grayscale or (H, W, 3) colour, as an RGB image."""
    a = np.asarray(images[i])
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return Image.fromarray(a).convert("RGB")  # grayscale becomes three equal channels


def load_data(train_tf, eval_tf):
    """A MedMNIST .npz (train_images, train_labels, val_images, val_labels), e.g. pneumoniamnist.npz."""
    npz = np.load(Path(DATA_PATH).expanduser())
    train_images, val_images = npz["train_images"], npz["val_images"]
    train_labels = npz["train_labels"].reshape(-1).astype(np.int64)
    val_labels = npz["val_labels"].reshape(-1).astype(np.int64)
    num_classes = int(max(train_labels.max(), val_labels.max())) + 1
    classes = list(CLASS_NAMES) if CLASS_NAMES else [str(k) for k in range(num_classes)]
    train_idx = np.arange(len(train_labels))[:LIMIT or None]
    train_set = ImageDataset(train_images, array_image, train_idx, train_labels[train_idx], train_tf)
    val_set = ImageDataset(val_images, array_image, np.arange(len(val_labels)), val_labels, eval_tf)
    return train_set, val_set, classes
# %end


def transforms():
    """timm's training pipeline (random resized crop, flips, augmentation, normalise) and eval resize."""
    train_tf = create_transform(
        input_size=(3, IMG_SIZE, IMG_SIZE), is_training=True, scale=CROP_SCALE, ratio=CROP_RATIO,
        hflip=HFLIP, vflip=VFLIP, color_jitter=COLOR_JITTER or None, auto_augment=AUTO_AUGMENT or None,
        re_prob=RE_PROB, re_mode="pixel", interpolation=INTERPOLATION, mean=MEAN, std=STD,
    )
# %if trivial
    from torchvision.transforms import InterpolationMode, TrivialAugmentWide

    mode = {"bicubic": InterpolationMode.BICUBIC, "nearest": InterpolationMode.NEAREST}.get(
        INTERPOLATION, InterpolationMode.BILINEAR)
    names = [type(t).__name__ for t in train_tf.transforms]
    at = next(i for i, n in enumerate(names) if n in ("MaybeToTensor", "ToTensor"))
    train_tf.transforms.insert(at, TrivialAugmentWide(interpolation=mode, fill=[min(255, round(255 * m)) for m in MEAN]))
# %end
    eval_tf = create_transform(
        input_size=(3, IMG_SIZE, IMG_SIZE), is_training=False, crop_pct=1.0, mean=MEAN, std=STD,
        interpolation="bilinear" if INTERPOLATION == "random" else INTERPOLATION,
    )
    return train_tf, eval_tf


class EpochSampler(Sampler):
# %if weighted_sampler
    """A fresh order each epoch from a generator seeded by (SEED, epoch): the same on every rerun.
    With `weights` it draws with replacement in proportion to them (rare classes come up as often)."""
# %else
    """A fresh order each epoch from a generator seeded by (SEED, epoch): the same on every rerun."""
# %end

# %if weighted_sampler
    def __init__(self, n, seed, weights=None):
        self.n, self.seed, self.epoch = n, seed, 0
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)
# %else
    def __init__(self, n, seed):
        self.n, self.seed, self.epoch = n, seed, 0
# %end

    def set_epoch(self, epoch):
        self.epoch = epoch

    def __len__(self):
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % (2**63 - 1))
# %if weighted_sampler
        if self.weights is not None:
            return iter(torch.multinomial(self.weights, self.n, True, generator=g).tolist())
# %end
        return iter(torch.randperm(self.n, generator=g).tolist())


# %if workers
def seed_worker(worker_id):
    np.random.seed(torch.initial_seed() % 2**32)


# %end
def make_loaders(train_set, val_set):
    """Loaders with private generators: iterating one never draws from torch's global RNG."""
    extra = dict(num_workers=NUM_WORKERS, pin_memory=torch.cuda.is_available())
# %if workers
    extra.update(persistent_workers=True, worker_init_fn=seed_worker, prefetch_factor=2)
# %end
# %if weighted_sampler
    counts = np.bincount(train_set.labels)
    sampler = EpochSampler(len(train_set), SEED, weights=[1.0 / counts[y] for y in train_set.labels])
# %else
    sampler = EpochSampler(len(train_set), SEED)
# %end
    train_loader = DataLoader(train_set, batch_size=BATCH_SIZE, sampler=sampler, drop_last=len(train_set) > BATCH_SIZE,
                              generator=torch.Generator().manual_seed(SEED), **extra)
    val_loader = DataLoader(val_set, batch_size=BATCH_SIZE, shuffle=False,
                            generator=torch.Generator().manual_seed(SEED), **extra)
    return train_loader, val_loader


# ---- model ------------------------------------------------------------------------------------------

# %if timm
def build_model(num_classes):
# %if weights
    """A timm model with a fresh head for `num_classes`, its other weights from WEIGHTS."""
    return timm.create_model(
        MODEL_NAME, pretrained=True, pretrained_cfg_overlay=dict(file=WEIGHTS), num_classes=num_classes,
        img_size=IMG_SIZE, drop_path_rate=DROP_PATH, drop_rate=DROPOUT, **ARCH_OVERRIDES,
    )
# %else
    """A timm model with a head for `num_classes` (pretrained weights come from the Hugging Face Hub)."""
    return timm.create_model(
        MODEL_NAME, pretrained=PRETRAINED, num_classes=num_classes, img_size=IMG_SIZE,
        drop_path_rate=DROP_PATH, drop_rate=DROPOUT, **ARCH_OVERRIDES,
    )
# %end
# %else
class Logits(nn.Module):
    """A transformers classifier whose forward returns the logits tensor, as timm models do."""

    def __init__(self, hf, interpolate):
        super().__init__()
        self.hf, self.interpolate = hf, interpolate

    def forward(self, x):
        if self.interpolate:  # pretrained at another resolution: resample the position embeddings
            return self.hf(pixel_values=x, interpolate_pos_encoding=True).logits
        return self.hf(pixel_values=x).logits


def build_model(num_classes):
    """A transformers image classifier with a fresh head for `num_classes`."""
    config = AutoConfig.from_pretrained(MODEL_NAME, num_labels=num_classes)
    trained_size = getattr(config, "image_size", IMG_SIZE)
    settings = dict(CONFIG_OVERRIDES, drop_path_rate=DROP_PATH, hidden_dropout_prob=DROPOUT)
    if not PRETRAINED:
        settings["image_size"] = IMG_SIZE
    for key, value in settings.items():
        if hasattr(config, key):
            setattr(config, key, value)
    if PRETRAINED:
        hf = AutoModelForImageClassification.from_pretrained(MODEL_NAME, config=config, ignore_mismatched_sizes=True)
    else:
        hf = AutoModelForImageClassification.from_config(config)
    return Logits(hf, interpolate=PRETRAINED and trained_size != IMG_SIZE)
# %end


# %if depth
BLOCK = re.compile(r"(?:^|\.)(?:blocks|layers|layer|block|h)\.(\d+)(?:\.|$)")
EMBEDDINGS = ("cls_token", "pos_embed", "patch_embed", "embeddings", "position_embedding", "mask_token",
              "dist_token", "reg_token", "register_tokens", "norm_pre")


def count_blocks(model):
    return 1 + max((int(m.group(1)) for n, _ in model.named_parameters() if (m := BLOCK.search(n))), default=-1)


def depth_of(name, num_blocks):
    """0 for the embeddings, i + 1 for transformer block i, num_blocks + 1 for the final norm and head."""
    m = BLOCK.search(name)
    if m:
        return min(int(m.group(1)), num_blocks - 1) + 1
    if any(w in name for w in EMBEDDINGS):
        return 0
    return num_blocks + 1


def trains(name, num_blocks):
    """Whether the freeze strategy leaves the parameter (or module) `name` trainable; the head always trains."""
    if name == HEAD or name.startswith(HEAD + "."):
        return True
    d = depth_of(name, num_blocks)
# %if freeze_linear_probe
    return False  # a linear probe: only the head learns
# %elif freeze_first_n
    return d > FREEZE_BLOCKS  # the embeddings and the first FREEZE_BLOCKS blocks stay as they are
# %elif freeze_all_but_last_n
    return d > num_blocks - FREEZE_BLOCKS  # only the last FREEZE_BLOCKS blocks, final norm and head learn
# %else
    return True
# %end


# %end
# %if freeze
def freeze(model):
    n = count_blocks(model)
    for name, p in model.named_parameters():
        p.requires_grad_(trains(name, n))
    return model


# %end
# %if lora
def add_lora(model):
    """LoRA adapters (peft) on the attention projections of the trainable blocks; the head trains in full."""
    n = count_blocks(model)
    linear = {name.rsplit(".", 1)[-1] for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    wanted = LORA_TARGETS or next(pair for pair in (("q_proj", "v_proj"), ("query", "value"), ("qkv",))
                                  if all(p in linear for p in pair))
    targets = [name for name, m in model.named_modules()
               if isinstance(m, nn.Linear) and name.rsplit(".", 1)[-1] in wanted
               and 1 <= depth_of(name, n) <= n and trains(name, n)]
    for p in model.parameters():
        p.requires_grad_(False)
    config = LoraConfig(r=LORA_R, lora_alpha=LORA_ALPHA, lora_dropout=LORA_DROPOUT, target_modules=targets,
                        modules_to_save=[HEAD])
    return get_peft_model(model, config)


# %end
# ---- optimizer and schedule -------------------------------------------------------------------------

NO_DECAY = ("pos_embed", "cls_token", "dist_token", "reg_token", "position_embeddings", "mask_token")


def param_groups(model):
# %if timm_layer_decay
    """timm's layer-wise lr decay: block i's lr is scaled by LAYER_DECAY ** (depth + 1 - i); no weight
    decay on biases, norms, position embeddings and tokens."""
    skip = set(getattr(model, "no_weight_decay", set)())
    return param_groups_layer_decay(model, weight_decay=WEIGHT_DECAY, no_weight_decay_list=skip,
                                    layer_decay=LAYER_DECAY)
# %elif name_layer_decay
    """Layer-wise lr decay by block index (LAYER_DECAY ** (blocks + 1 - depth)); no weight decay on biases,
    norms, position embeddings and tokens. The scheduler multiplies each group's lr by its lr_scale."""
    skip = set(getattr(model, "no_weight_decay", set)())
    n = count_blocks(model)
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        layer = depth_of(name, n)
        no_decay = p.ndim <= 1 or any(k in name for k in NO_DECAY) or name in skip
        group = groups.setdefault((layer, no_decay), {"params": [], "weight_decay": 0.0 if no_decay else WEIGHT_DECAY,
                                                      "lr_scale": LAYER_DECAY ** (n + 1 - layer)})
        group["params"].append(p)
    return list(groups.values())
# %else
    """No weight decay on biases, norms, position embeddings and tokens; WEIGHT_DECAY on the rest."""
    skip = set(getattr(model, "no_weight_decay", set)())
    groups = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or any(k in name for k in NO_DECAY) or name in skip
        group = groups.setdefault(no_decay, {"params": [], "weight_decay": 0.0 if no_decay else WEIGHT_DECAY})
        group["params"].append(p)
    return list(groups.values())
# %end


def build_scheduler(optimizer, total_steps, steps_per_epoch):
    """Linear warmup, then cosine down to MIN_LR; stepped once per optimizer update."""
    warmup = min(int(round(WARMUP_EPOCHS * steps_per_epoch)), max(total_steps - 1, 0))
# %if constant_lr
    return CosineLRScheduler(optimizer, t_initial=10**12, lr_min=LR, warmup_t=warmup, warmup_lr_init=WARMUP_LR,
                             t_in_epochs=False)
# %else
    return CosineLRScheduler(optimizer, t_initial=max(total_steps - warmup, 1), lr_min=MIN_LR, warmup_t=warmup,
                             warmup_lr_init=WARMUP_LR, warmup_prefix=True, t_in_epochs=False)
# %end


@torch.no_grad()
def evaluate(model, loader, accelerator):
    """Mean loss, top-1 and top-5 (%); under a forked RNG so evaluating never shifts training."""
    was_training = model.training
    model.eval()
    loss_sum, top1, top5, n = 0.0, 0, 0, 0
    with torch.random.fork_rng(devices=[]):
        for x, y in loader:
            x, y = x.to(accelerator.device), y.to(accelerator.device)
            with accelerator.autocast():
                logits = model(x)
            logits = logits.float()
            loss_sum += nn.functional.cross_entropy(logits, y, reduction="sum").item()
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            top1 += (top[:, 0] == y).sum().item()
            top5 += (top == y[:, None]).any(dim=1).sum().item()
            n += len(y)
    model.train(was_training)
    return loss_sum / n, 100.0 * top1 / n, 100.0 * top5 / n


def plain_state_dict(model):
    """Weights as plain tensors (LoRA adapters merged into the layers they adapt)."""
    if hasattr(model, "merge_and_unload"):
        model = model.merge_and_unload()
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


# ---- training ---------------------------------------------------------------------------------------

def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-steps", type=int, default=int(os.environ.get("MAX_STEPS", MAX_STEPS)),
                        help="stop after this many optimizer steps; 0 = all epochs (env MAX_STEPS)")
    parser.add_argument("--out", default=OUTPUT_DIR, help="where model.safetensors goes")
    args = parser.parse_args()

    accelerator = Accelerator(cpu=DEVICE == "cpu", mixed_precision=PRECISION)
    if THREADS:
        torch.set_num_threads(THREADS)
    seed_everything(SEED)  # before the model: its initial weights come from this seed

    train_tf, eval_tf = transforms()
    train_set, val_set, classes = load_data(train_tf, eval_tf)
    train_loader, val_loader = make_loaders(train_set, val_set)
    model = build_model(len(classes))
# %if freeze
    model = freeze(model)
# %end
# %if lora
    model = add_lora(model)
# %end
# %if grad_checkpointing
    model.set_grad_checkpointing(True)
# %end
# %if channels_last
    model = model.to(memory_format=torch.channels_last)
# %end
    model = model.to(accelerator.device)
# %if sgd
    optimizer = torch.optim.SGD(param_groups(model), lr=LR, momentum=MOMENTUM, nesterov=MOMENTUM > 0)
# %elif fused
    optimizer = torch.optim.AdamW(param_groups(model), lr=LR, betas=BETAS,
                                  fused=FUSED and accelerator.device.type == "cuda" or None)
# %else
    optimizer = torch.optim.AdamW(param_groups(model), lr=LR, betas=BETAS)
# %end
# %if ema
    ema = ModelEmaV3(model, decay=EMA_DECAY)  # a running average of the weights, evaluated beside them
# %end
# %if mixup
    mixup = Mixup(mixup_alpha=MIXUP, cutmix_alpha=CUTMIX, prob=MIXUP_PROB, switch_prob=MIXUP_SWITCH_PROB,
                  mode="batch", label_smoothing=LABEL_SMOOTHING, num_classes=len(classes))
    criterion = SoftTargetCrossEntropy()  # mixup's targets are soft (and already smoothed)
# %elif weighted_loss
    counts = np.bincount(train_set.labels, minlength=len(classes))
    inverse = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
    weight = torch.tensor(inverse * len(classes) / inverse.sum(), dtype=torch.float32, device=accelerator.device)
    print("class weights:", ", ".join(f"{c} {w:.3f}" for c, w in zip(classes, weight.tolist())))
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=LABEL_SMOOTHING)  # rare classes count more
# %else
    criterion = nn.CrossEntropyLoss(label_smoothing=LABEL_SMOOTHING)
# %end
    if accelerator.num_processes > 1:  # DDP: each process trains on its shard of every epoch
        model, optimizer, train_loader = accelerator.prepare(model, optimizer, train_loader)
    else:
        model, optimizer = accelerator.prepare(model, optimizer)
# %if compile
    model = torch.compile(model)
# %end
    steps_per_epoch = max(len(train_loader) // ACCUMULATION, 1)
    total_steps = EPOCHS * steps_per_epoch
    if args.max_steps:
        total_steps = min(total_steps, args.max_steps)
    scheduler = build_scheduler(optimizer, total_steps, steps_per_epoch)
    scheduler.step_update(0)
    trainable = [p for p in model.parameters() if p.requires_grad]
    if accelerator.is_main_process:
        print(f"{len(train_set)} train / {len(val_set)} val images, {len(classes)} classes; "
              f"{sum(p.numel() for p in trainable):,} trainable parameters; {total_steps} steps on {accelerator.device}")

    step, epoch = 0, 0
    model.train()
    while step < total_steps:
        if hasattr(train_loader, "set_epoch"):
            train_loader.set_epoch(epoch)  # accelerate's sharded loader passes it on to the sampler
        else:
            train_loader.sampler.set_epoch(epoch)
        micro, loss_sum = 0, 0.0
        for x, y in islice(train_loader, steps_per_epoch * ACCUMULATION):
            x, y = x.to(accelerator.device), y.to(accelerator.device)
# %if channels_last
            x = x.contiguous(memory_format=torch.channels_last)
# %end
# %if mixup
            x, y = mixup(x, y)
# %end
            with accelerator.autocast():
                loss = criterion(model(x), y)
            accelerator.backward(loss / ACCUMULATION)
            loss_sum += loss.item()
            micro += 1
            if micro < ACCUMULATION:
                continue
            grad_norm = accelerator.clip_grad_norm_(trainable, CLIP_GRAD or float("inf"))
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            scheduler.step_update(step)
# %if ema
            ema.update(accelerator.unwrap_model(model), step=step)
# %end
            if accelerator.is_main_process:
                lr = max(g["lr"] for g in optimizer.param_groups)
                print(f"step={step} loss={loss_sum / ACCUMULATION:.8f} lr={lr:.6e} grad_norm={float(grad_norm):.6f}",
                      flush=True)
            micro, loss_sum = 0, 0.0
            if step >= total_steps:
                break
        epoch += 1
        loss, top1, top5 = evaluate(model, val_loader, accelerator)
        if accelerator.is_main_process:
# %if ema
            ema_top1 = evaluate(ema.module, val_loader, accelerator)[1]
            print(f"eval epoch={epoch} loss={loss:.4f} top1={top1:.2f} top5={top5:.2f} ema_top1={ema_top1:.2f}",
                  flush=True)
# %else
            print(f"eval epoch={epoch} loss={loss:.4f} top1={top1:.2f} top5={top5:.2f}", flush=True)
# %end

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        meta = {"classes": json.dumps(classes), "model": MODEL_NAME, "img_size": str(IMG_SIZE)}
        save_file(plain_state_dict(accelerator.unwrap_model(model)), str(out / "model.safetensors"), metadata=meta)
# %if ema
        save_file(plain_state_dict(ema.module), str(out / "model_ema.safetensors"), metadata=meta)
# %end
        print(f"saved {out / 'model.safetensors'}")
    accelerator.end_training()


if __name__ == "__main__":
    main()
'''


__all__ = ["export_script", "render", "ExportError", "TEMPLATE", "SUPPORTED_SOURCES"]

"""The recipe's schema: `Recipe` and its frozen sections with their defaults, and `RecipeError`.

No torch, no Textual: any process loads a recipe in milliseconds. Reading, writing and checking recipes
is in `vittui.recipe.codec` and `vittui.recipe.checks`; import everything from `vittui.recipe`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Sequence


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
    # early stopping: end the run (finished) after this many evals without improvement of the metric;
    # the best checkpoint then follows that metric, and export/eval default to it. 0 = off.
    early_stop_patience: int = 0
    early_stop_metric: str = "val_top1"  # val_top1 (higher is better) | val_loss (lower is better)
    early_stop_min_delta: float = 0.0  # an improvement smaller than this does not count


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
    notify: tuple[str, ...] = ()  # apprise URLs told when the run finishes, fails, diverges or is pruned
    # divergence guard: a non-finite loss always trips it; a spike trips it when divergence_factor > 0 and
    # the loss stays above factor x its running mean for divergence_steps steps in a row.
    on_divergence: str = "pause"  # pause (wait for the user) | rewind (reload the last checkpoint, scale the lr)
    divergence_factor: float = 0.0  # k of the spike rule; 0 = spike rule off (NaN/Inf still caught)
    divergence_steps: int = 3  # m of the spike rule
    max_rewinds: int = 3  # rewinds before the guard pauses instead
    rewind_lr_factor: float = 0.5  # each rewind multiplies the lr multiplier by this


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
        from vittui.recipe.codec import apply_overrides

        return apply_overrides(self, overrides, source)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        from vittui.recipe.codec import to_dict

        return to_dict(self)

    def to_toml(self) -> str:
        from vittui.recipe.codec import dumps

        return dumps(self)


SECTIONS: dict[str, type] = {f.name: f.default_factory().__class__ for f in fields(Recipe)}  # type: ignore[misc]


def three_channels(values: Sequence[float]) -> tuple[float, float, float]:
    """`data.mean` / `data.std` for RGB input: a 1-entry (grayscale) statistic repeated for each channel."""
    values = tuple(float(v) for v in values)
    if len(values) == 1:
        return (values[0],) * 3
    return values  # type: ignore[return-value]


__all__ = [
    "RecipeError", "Recipe", "ModelSection", "DataSection", "AugmentSection", "OptimSection",
    "RegularizeSection", "ScheduleSection", "AdaptSection", "ComputeSection", "RunSection", "SECTIONS",
    "three_channels",
]

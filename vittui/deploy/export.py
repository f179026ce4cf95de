"""Export a trained run for deployment, and check that what was written gives the same logits.

Formats (the folder always also holds `preprocess.json` and a model card `README.md`):

- `safetensors`: the network's own weights and config. timm models: `model.safetensors` with timm's keys and
  timm's `config.json` (architecture, model_args, pretrained_cfg with the preprocessing, label_names), as
  `timm.models.save_for_hf` writes it; loads with `timm.create_model("local-dir:DIR", pretrained=True)`.
  transformers models: `save_pretrained`.
- `hf`: loads with `transformers.AutoModelForImageClassification.from_pretrained(DIR)`. A timm model is saved
  as transformers' `TimmWrapperForImageClassification` (config `model_type: timm_wrapper` with
  `architecture`, `model_args` and `pretrained_cfg`; weights `model.safetensors` keyed `timm_model.*`), so
  `AutoImageProcessor.from_pretrained(DIR)` also rebuilds the evaluation transform.
- `onnx`: `model.onnx`, input `pixel_values` (N, 3, S, S) with a dynamic batch, output `logits`. Written by
  `torch.onnx.export` with the torch.export-based exporter when `onnxscript` is installed, else with the
  older TorchScript-based one (deprecated in torch 2.9+, still working in 2.14).
- `torchscript`: `torch.jit.trace` is deprecated in torch 2.14 (FutureWarning: "switch to torch.compile or
  torch.export"), so this writes a `torch.export` program, `model.pt2` (dynamic batch), loaded with
  `torch.export.load(path).module()`. `jit_trace=True` writes the old TorchScript `model.torchscript.pt`
  instead, for libtorch (C++) runtimes that need it.

LoRA runs are merged into the base weights (peft `merge_and_unload`), or with `adapter=True` kept as a peft
adapter in `DIR/adapter/` beside the un-merged base model (safetensors and hf formats); the adapter's
module names are rewritten to match the saved base (e.g. `timm_model.` for the hf format). EMA weights
are exported when the run kept them (`restore` picks them).

Every export is loaded back the way a user would load it and its logits compared with the trained model's
on the same batch; a difference above `atol` (1e-4) raises `ExportError`.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("safetensors", "hf", "onnx", "torchscript")
ATOL = 1e-4
_DROP_ARGS = ("num_classes", "drop_rate", "drop_path_rate", "pretrained_cfg", "pretrained_cfg_overlay",
              "cache_dir", "pretrained", "checkpoint_path", "features_only")


class ExportError(RuntimeError):
    """The export could not be written or does not reproduce the trained model."""


class ExportInputError(ExportError):
    """A request that cannot be done (e.g. --adapter for a run without LoRA): the user's input."""


@dataclass
class ExportResult:
    out_dir: Path
    format: str
    run: str
    checkpoint: str
    ema: bool
    lora: str | None  # "merged" | "adapter" | None
    files: list[str] = field(default_factory=list)
    max_abs_diff: float | None = None
    checked_with: str = ""  # how the export was loaded back for the check
    notes: list[str] = field(default_factory=list)
    classes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------------------ preprocessing


def preprocess_config(recipe, classes: list[str]) -> dict[str, Any]:
    """What a deployment must do to an image before the model: the run's evaluation transform, spelled out."""
    from vittui.recipe import three_channels

    size = int(recipe.model.img_size)
    interpolation = "bilinear" if recipe.augment.interpolation == "random" else recipe.augment.interpolation
    return {
        "image_size": size,
        "input_shape": [3, size, size],
        "layout": "NCHW",
        "color": "RGB",
        "resize_shortest_edge": size,  # crop_pct 1.0: resize the short side to S, then centre-crop S x S
        "center_crop": size,
        "crop_pct": 1.0,
        "interpolation": interpolation,
        "rescale": 1.0 / 255.0,
        "mean": list(three_channels(recipe.data.mean)),
        "std": list(three_channels(recipe.data.std)),
        "input_name": "pixel_values",
        "output_name": "logits",
        "output": "logits; softmax over the last axis gives class probabilities",
        "num_classes": len(classes),
        "class_names": list(classes),
    }


def _timm_data_config(pre: dict[str, Any]) -> dict[str, Any]:
    return {"input_size": tuple(pre["input_shape"]), "interpolation": pre["interpolation"],
            "mean": tuple(pre["mean"]), "std": tuple(pre["std"]), "crop_pct": 1.0, "crop_mode": "center"}


# ------------------------------------------------------------------------------------------ model pieces


def _is_peft(model) -> bool:
    return type(model).__module__.startswith("peft")


def _timm_model_args(plain, recipe) -> dict[str, Any]:
    """The keyword arguments that rebuild this timm architecture (no head size, no training-only rates)."""
    args = dict(getattr(plain, "_model_args", None) or {})
    if not args:  # timm without _model_args: the recipe's size overrides
        from vittui.models.timm_build import timm_overrides

        args = {"img_size": recipe.model.img_size, **timm_overrides(recipe.model)}
    out = {}
    for k, v in args.items():
        if k in _DROP_ARGS:
            continue
        v = list(v) if isinstance(v, tuple) else v
        try:
            json.dumps(v)
        except (TypeError, ValueError):
            continue
        out[k] = v
    return out


def _timm_arch(plain) -> str:
    cfg = getattr(plain, "pretrained_cfg", None) or {}
    arch = cfg.get("architecture") if isinstance(cfg, dict) else getattr(cfg, "architecture", None)
    if not arch:
        raise ExportError(f"cannot tell the timm architecture of {type(plain).__name__}")
    return arch


def _hf_inner(model):
    """The transformers model inside an HFClassifier (or None for timm)."""
    from vittui.models.hf import HFClassifier

    return model.hf if isinstance(model, HFClassifier) else None


def _set_labels(hf_model, classes: list[str]) -> None:
    hf_model.config.id2label = {i: c for i, c in enumerate(classes)}
    hf_model.config.label2id = {c: i for i, c in enumerate(classes)} if len(set(classes)) == len(classes) else {}


def _timm_wrapper(plain, recipe, classes: list[str], pre: dict[str, Any]):
    """A transformers `TimmWrapperForImageClassification` holding `plain`'s weights."""
    from transformers import TimmWrapperConfig, TimmWrapperForImageClassification

    cfg = TimmWrapperConfig(architecture=_timm_arch(plain), model_args=_timm_model_args(plain, recipe),
                            num_labels=len(classes), id2label={i: c for i, c in enumerate(classes)},
                            label2id={c: i for i, c in enumerate(classes)})
    wrapper = TimmWrapperForImageClassification(cfg)
    wrapper.timm_model.load_state_dict(plain.state_dict(), strict=True)
    return wrapper.eval()


def _patch_json(path: Path, **updates: Any) -> None:
    data = json.loads(path.read_text())
    data.update(updates)
    path.write_text(json.dumps(data, indent=2) + "\n")


# ------------------------------------------------------------------------------------------ checks


def _max_diff(a, b) -> float:
    import torch

    a = torch.as_tensor(a).float().detach().cpu()
    b = torch.as_tensor(b).float().detach().cpu()
    if a.shape != b.shape:
        raise ExportError(f"exported model gives logits of shape {tuple(a.shape)}, expected {tuple(b.shape)}")
    return float((a - b).abs().max())


def _logits(model, x, **kw):
    """Logits of `model` on `x`: transformers models (and peft around them) take `pixel_values=`."""
    import torch

    from vittui.analysis.evaluate import logits_of

    with torch.inference_mode():
        return logits_of(model(pixel_values=x, **kw) if _takes_pixel_values(model) else model(x))


def _takes_pixel_values(model) -> bool:
    m = model.base_model.model if _is_peft(model) and hasattr(model, "base_model") else model
    return type(m).__module__.startswith("transformers")


def _quiet_transformers():
    try:
        from transformers.utils import logging as tl

        tl.disable_progress_bar()
    except Exception:  # pragma: no cover
        pass


# ------------------------------------------------------------------------------------------ writers


def _write_safetensors(target, plain_kind: str, recipe, classes, pre, out: Path) -> None:
    if plain_kind == "hf":
        _set_labels(target, classes)
        target.save_pretrained(str(out), safe_serialization=True)
        return
    from timm.models import save_for_hf

    save_for_hf(target, str(out), model_config={"label_names": list(classes)},
                model_args=_timm_model_args(target, recipe), safe_serialization=True,
                data_config=_timm_data_config(pre))


def _write_hf(target, plain_kind: str, recipe, classes, pre, out: Path):
    """Returns the transformers model that was saved (the base for an adapter)."""
    if plain_kind == "hf":
        _set_labels(target, classes)
        target.save_pretrained(str(out), safe_serialization=True)
        return target
    wrapper = _timm_wrapper(target, recipe, classes, pre)
    wrapper.save_pretrained(str(out), safe_serialization=True)
    pcfg = {**_timm_data_config(pre), "input_size": list(pre["input_shape"]), "mean": pre["mean"],
            "std": pre["std"], "num_classes": len(classes), "architecture": _timm_arch(target)}
    _patch_json(out / "config.json", pretrained_cfg=pcfg)
    return wrapper


def _onnx_export(model, x, path: Path, opset: int) -> str:
    import importlib.util

    import torch

    names = dict(input_names=["pixel_values"], output_names=["logits"])
    if importlib.util.find_spec("onnxscript") is not None:
        batch = torch.export.Dim("batch", min=1, max=65536)
        torch.onnx.export(model, (x,), str(path), dynamo=True, external_data=False, opset_version=max(opset, 18),
                          dynamic_shapes=({0: batch},), **names)
        return "torch.onnx.export (torch.export-based exporter)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DeprecationWarning for the TorchScript-based exporter, TracerWarnings
        torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=opset,
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}}, **names)
    return ("torch.onnx.export with dynamo=False (TorchScript-based exporter, deprecated since torch 2.9; "
            "the torch.export-based one needs onnxscript, not installed)")


def _export_program(model, x, path: Path) -> None:
    import torch

    batch = torch.export.Dim("batch", min=1, max=65536)
    ep = torch.export.export(model, (x,), dynamic_shapes=({0: batch},))
    torch.export.save(ep, str(path))


# ------------------------------------------------------------------------------------------ main entry


def _empty_out_dir(out_dir: str | Path, fmt: str, force: bool) -> Path:
    """Check the format and the output folder; a non-empty folder is removed with `force`, else refused."""
    if fmt not in FORMATS:
        raise ExportInputError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})")
    out = Path(out_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise ExportInputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise ExportInputError(f"{out} is not empty; choose another folder or pass --force to replace it")
        shutil.rmtree(out)
    return out


def _write_format(fmt: str, deploy, plain, kind: str, recipe, classes, pre, x, out: Path, result: ExportResult,
                  *, verify: bool, opset: int, jit_trace: bool):
    """Write `fmt` to `out`; returns (the saved base for an adapter, the export loaded back or None)."""
    import torch

    export_base = loaded = None
    if fmt == "safetensors":
        _write_safetensors(plain, kind, recipe, classes, pre, out)
        export_base = plain
        if verify:
            if kind == "hf":
                from transformers import AutoModelForImageClassification

                loaded = AutoModelForImageClassification.from_pretrained(str(out)).eval()
                result.checked_with = "AutoModelForImageClassification.from_pretrained"
            else:
                import timm

                loaded = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
                result.checked_with = 'timm.create_model("local-dir:DIR", pretrained=True)'
    elif fmt == "hf":
        export_base = _write_hf(plain, kind, recipe, classes, pre, out)
        if verify:
            from transformers import AutoModelForImageClassification

            loaded = AutoModelForImageClassification.from_pretrained(str(out)).eval()
            result.checked_with = f"AutoModelForImageClassification.from_pretrained ({type(loaded).__name__})"
    elif fmt == "onnx":
        how = _onnx_export(deploy, x, out / "model.onnx", opset)
        result.notes.append(f"written with {how}")
    elif jit_trace:  # torchscript, the old way
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            traced = torch.jit.trace(deploy, x)
        traced.save(str(out / "model.torchscript.pt"))
        result.notes.append("torch.jit.trace is deprecated in torch 2.14 (FutureWarning); written on request")
    else:  # torchscript
        _export_program(deploy, x, out / "model.pt2")
        result.notes.append("torch.jit.trace is deprecated in torch 2.14 (FutureWarning: switch to "
                            "torch.compile or torch.export): written as a torch.export program, model.pt2")
    return export_base, loaded


def _check_export(fmt: str, out: Path, x, ref, loaded, interp_kw: dict, result: ExportResult,
                  jit_trace: bool) -> None:
    """Load the export back the way a user would and record its largest logit difference from `ref`."""
    import torch

    if fmt == "onnx":
        try:
            import onnxruntime as ort
        except ImportError:
            ort = None
            result.notes.append("onnxruntime is not installed: the ONNX file was not run")
        if ort is not None:
            sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
            got = sess.run(["logits"], {"pixel_values": x.numpy()})[0]
            result.max_abs_diff = _max_diff(got, ref)
            result.checked_with = f"onnxruntime {ort.__version__} (CPUExecutionProvider)"
    elif fmt == "torchscript":
        if jit_trace:
            prog = torch.jit.load(str(out / "model.torchscript.pt"))
            result.checked_with = "torch.jit.load"
        else:
            prog = torch.export.load(str(out / "model.pt2")).module()
            result.checked_with = "torch.export.load(path).module()"
        with torch.inference_mode():
            result.max_abs_diff = _max_diff(prog(x), ref)
    elif loaded is not None:
        result.max_abs_diff = _max_diff(_logits(loaded, x, **interp_kw), ref)


def _finish(result: ExportResult, pre: dict[str, Any], recipe, run_path: str | Path, atol: float) -> None:
    """Write preprocess.json and the model card, list the files; raise if the logits differ by more than `atol`."""
    from vittui.deploy.modelcard import write_model_card

    out = result.out_dir
    (out / "preprocess.json").write_text(json.dumps(pre, indent=2) + "\n")
    result.files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    write_model_card(result, recipe, Path(run_path))
    result.files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    if result.max_abs_diff is not None and not result.max_abs_diff <= atol:
        raise ExportError(f"the {result.format} export in {out} does not reproduce the trained model: logits differ "
                          f"by {result.max_abs_diff:.3g} (> {atol:g})")


def export_model(run_path: str | Path, out_dir: str | Path, fmt: str, *, checkpoint: str = "best",
                 adapter: bool = False, verify: bool = True, opset: int = 17, atol: float = ATOL,
                 force: bool = False, jit_trace: bool = False) -> ExportResult:
    """Write the run's model to `out_dir` in `fmt` with preprocess.json and a model card; check it."""
    import torch

    from vittui.deploy.adapter import deploy_module, save_adapter
    from vittui.models.structure import unwrap
    from vittui.train.restore import restore

    out = _empty_out_dir(out_dir, fmt, force)
    _quiet_transformers()
    restored = restore(run_path, checkpoint)
    recipe, classes = restored.recipe, list(restored.classes)
    model = restored.model.cpu().eval()
    lora = _is_peft(model)
    if adapter and not lora:
        raise ExportInputError("--adapter keeps a LoRA adapter, but this run did not use LoRA (adapt.lora = false)")
    if adapter and fmt in ("onnx", "torchscript"):
        raise ExportInputError(f"--adapter needs a format that keeps weights apart (safetensors or hf), not {fmt}")
    result = ExportResult(out_dir=out, format=fmt, run=str(run_path), checkpoint=restored.checkpoint.name,
                          ema=restored.ema, lora=("adapter" if adapter else "merged") if lora else None,
                          classes=classes)
    pre = preprocess_config(recipe, classes)
    size = int(recipe.model.img_size)
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(0))
    ref = _logits(model, x)

    deploy = deploy_module(model, lora, adapter)
    inner = _hf_inner(deploy)
    kind = "hf" if inner is not None else "timm"
    plain = inner if inner is not None else unwrap(deploy)
    interp_kw = {"interpolate_pos_encoding": True} if getattr(deploy, "interpolate_pos_encoding", False) else {}
    if interp_kw:
        pre["interpolate_pos_encoding"] = True
        result.notes.append("the transformers model was fine-tuned at another resolution than it was built for: "
                            "call it with interpolate_pos_encoding=True")
    out.mkdir(parents=True, exist_ok=True)
    export_base, loaded = _write_format(fmt, deploy, plain, kind, recipe, classes, pre, x, out, result,
                                        verify=verify, opset=opset, jit_trace=jit_trace)
    if adapter:
        loaded = save_adapter(model, export_base, kind, fmt, out, loaded, result, verify)
    if verify:
        _check_export(fmt, out, x, ref, loaded, interp_kw, result, jit_trace)
    _finish(result, pre, recipe, run_path, atol)
    return result


__all__ = ["FORMATS", "ATOL", "ExportError", "ExportInputError", "ExportResult", "export_model",
           "preprocess_config"]

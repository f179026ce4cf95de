"""The model card (`README.md`) written beside an export: what the model is, how to load and feed it, the
recipe and data it was trained with, and its metrics and calibration.

Metrics come from the run's `report.json` when `vittui eval` has run (accuracy, per class, calibration,
robustness, speed), else from the training events (validation top-1 and loss; no calibration). Pure text
from files: no torch here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from vittui.runs import events as ev
from vittui.runs.store import RunDir


def _pct(x: Any) -> str:
    return "–" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{100 * x:.2f}%"


def _num(x: Any, digits: int = 4) -> str:
    return "–" if not isinstance(x, (int, float)) or not math.isfinite(x) else f"{x:.{digits}f}"


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return out


def _load_snippet(result) -> list[str]:
    fmt, adapter = result.format, result.lora == "adapter"
    lines = ["```python"]
    if fmt == "hf":
        lines += ["from transformers import AutoModelForImageClassification",
                  'model = AutoModelForImageClassification.from_pretrained("DIR").eval()']
        if adapter:
            lines += ["from peft import PeftModel", 'model = PeftModel.from_pretrained(model, "DIR/adapter").eval()']
        lines += ["logits = model(pixel_values=x).logits  # x: (N, 3, S, S), preprocessed as below"]
    elif fmt == "safetensors":
        if (result.out_dir / "config.json").exists() and "architecture" in _json(result.out_dir / "config.json"):
            lines += ["import timm", 'model = timm.create_model("local-dir:DIR", pretrained=True).eval()']
        else:
            lines += ["from transformers import AutoModelForImageClassification",
                      'model = AutoModelForImageClassification.from_pretrained("DIR").eval()']
        if adapter:
            lines += ["from peft import PeftModel", 'model = PeftModel.from_pretrained(model, "DIR/adapter").eval()']
        lines += ["logits = model(x)  # transformers: model(pixel_values=x).logits"]
    elif fmt == "onnx":
        lines += ["import onnxruntime as ort",
                  'session = ort.InferenceSession("DIR/model.onnx")',
                  'logits = session.run(["logits"], {"pixel_values": x})[0]  # x: float32 numpy (N, 3, S, S)']
    elif (result.out_dir / "model.pt2").exists():
        lines += ["import torch", 'model = torch.export.load("DIR/model.pt2").module()', "logits = model(x)"]
    else:
        lines += ["import torch", 'model = torch.jit.load("DIR/model.torchscript.pt")', "logits = model(x)"]
    lines += ["probs = logits.softmax(-1)  # class order: preprocess.json class_names", "```"]
    return lines


def _json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _metrics_from_report(rep: dict[str, Any]) -> list[str]:
    k = rep.get("top5_k", 5)
    lines = ["Measured by `vittui eval` (the run's `report.json`) on "
             f"{rep.get('n', '?')} validation images.", ""]
    rows = [["top-1", _pct(rep.get("top1"))], [f"top-{k}", _pct(rep.get("top5"))],
            ["loss", _num(rep.get("loss"))], ["macro F1", _num(rep.get("macro_f1"))],
            ["balanced accuracy", _pct(rep.get("balanced_accuracy"))]]
    if rep.get("skipped"):
        rows.append(["unreadable images skipped", rep["skipped"]])
    b = rep.get("binary")
    if b:
        rows += [["AUC", _num(b.get("auc"))], [f"sensitivity @ {b.get('threshold', 0.5):g}", _num(b.get("sensitivity"))],
                 [f"specificity @ {b.get('threshold', 0.5):g}", _num(b.get("specificity"))],
                 ["PPV", _num(b.get("ppv"))], ["NPV", _num(b.get("npv"))]]
    lines += _table(["metric", "value"], rows)
    per = rep.get("per_class") or []
    if per:
        lines += ["", "### Per class", ""]
        lines += _table(["class", "precision", "recall", "F1", "support"],
                        [[c.get("name"), _num(c.get("precision"), 3), _num(c.get("recall"), 3), _num(c.get("f1"), 3),
                          c.get("support")] for c in per[:100]])
        if len(per) > 100:
            lines.append(f"\n({len(per) - 100} more classes in report.json)")
    lines += ["", "## Calibration", ""]
    lines += _table(["measure", "value"], [
        ["expected calibration error (15 bins)", _num(rep.get("ece"))],
        ["mean confidence when correct", _num(rep.get("confidence_correct"))],
        ["mean confidence when wrong", _num(rep.get("confidence_wrong"))],
    ])
    rel = [r for r in rep.get("reliability") or [] if r.get("count")]
    if rel:
        lines += ["", "Reliability (non-empty bins):", ""]
        lines += _table(["confidence bin", "images", "accuracy", "mean confidence"],
                        [[f"{r['lo']:.2f}–{r['hi']:.2f}", r["count"], _num(r.get("accuracy"), 3),
                          _num(r.get("confidence"), 3)] for r in rel])
    rob = rep.get("robustness")
    if rob:
        lines += ["", "## Robustness", ""]
        lines += _table(["corruption", "severity", "top-1", "drop"],
                        [[r["corruption"], r["severity"], _pct(r.get("top1")), _pct(r.get("drop"))] for r in rob])
    tp = rep.get("throughput")
    if tp and tp.get("runs"):
        lines += ["", f"## Speed ({tp.get('device', '?')}, PyTorch)", ""]
        lines += _table(["batch size", "latency ms", "images/s"],
                        [[r["batch_size"], _num(r.get("latency_ms"), 2), _num(r.get("images_per_s"), 1)]
                         for r in tp["runs"]])
    return lines


def _metrics_from_events(run_path: Path) -> list[str]:
    from vittui.runs.compare import read_run

    m, _, _ = read_run(run_path)
    lines = ["From the training events (no `report.json`: run `vittui eval RUN` and export again for per-class "
             "metrics and calibration).", ""]
    rows = []
    for label, p in (("best", m.best), ("last", m.last)):
        if p is not None:
            rows.append([f"{label} validation (step {p.step})", f"{p.top1:.2f}%", _pct(p.top5 / 100), _num(p.loss),
                         "–" if p.ema_top1 is None else f"{p.ema_top1:.2f}%"])
    if rows:
        lines += _table(["evaluation", "top-1", "top-5", "loss", "EMA top-1"], rows)
    else:
        lines.append("No evaluation was recorded.")
    lines += ["", "## Calibration", "", "Not measured: `vittui eval RUN` writes it to report.json."]
    return lines


def model_card(result, recipe, run_path: str | Path) -> str:
    """The card's Markdown for an `ExportResult` of the run at `run_path`."""
    from vittui.recipe import dumps

    run = RunDir(run_path)
    run_path = run.path
    started = next((e for e in ev.read_all(run.events_path) if isinstance(e, ev.RunStarted)), None)
    pre = _json(result.out_dir / "preprocess.json")
    classes = result.classes
    m, d, a, reg = recipe.model, recipe.data, recipe.adapt, recipe.regularize
    lines = [f"# {run_path.name}: {m.name}, {len(classes)}-class image classifier ({result.format})", ""]
    lines.append(f"Trained with vittui; exported from checkpoint `{result.checkpoint}` of run `{run_path.name}`"
                 + (" with its EMA weights" if result.ema else "")
                 + ({"merged": ", LoRA merged into the base weights",
                     "adapter": ", LoRA kept as a peft adapter in `adapter/`"}.get(result.lora or "", "")) + ".")
    lines += ["", "## Files", ""]
    lines += [f"- `{f}`" for f in result.files] + ["- `README.md` (this card)"]
    lines += ["", "## Loading", ""] + _load_snippet(result)
    if result.lora == "adapter":
        lines += ["", "The weights beside the adapter are the base model before LoRA (with its original head); "
                      "the adapter holds the LoRA matrices and the trained head. Without the adapter the base model "
                      "does not classify this task."]
    lines += ["", "## Preprocessing", ""]
    size = pre.get("image_size", m.img_size)
    lines += [f"RGB image → resize the shorter side to {size} px ({pre.get('interpolation', '?')}) → centre-crop "
              f"{size}×{size} → scale to [0, 1] → normalise with mean {pre.get('mean')} and std {pre.get('std')} "
              f"→ NCHW float32. Saved in `preprocess.json`, with the class names in output order.", ""]
    shown = classes[:100]
    lines += ["Classes (output index: name): " + ", ".join(f"{i}: {c}" for i, c in enumerate(shown))
              + (f", … ({len(classes) - len(shown)} more)" if len(classes) > len(shown) else "")]
    lines += ["", "## Model", ""]
    rows = [["architecture", f"`{m.name}` ({m.source})"], ["input size", f"{m.img_size} px"],
            ["pretrained", "yes" if m.pretrained else "no (trained from scratch)"]]
    if started is not None:
        rows.append(["parameters", f"{started.params_total:,} ({started.params_trainable:,} trained)"])
    if a.lora:
        rows.append(["LoRA", f"r={a.lora_r}, alpha={a.lora_alpha}, dropout={a.lora_dropout:g}; "
                             f"{'merged' if result.lora == 'merged' else 'kept as adapter'}"])
    if a.freeze != "none":
        rows.append(["frozen", a.freeze + (f" ({a.freeze_blocks} blocks)" if a.freeze_blocks else "")])
    if reg.ema:
        rows.append(["EMA", f"decay {reg.ema_decay:g}; exported weights: {'EMA' if result.ema else 'raw'}"])
    lines += _table(["", ""], rows)
    lines += ["", "## Data", ""]
    rows = [["source", d.source + (f" (`{d.path}`)" if d.path else "")]]
    if started is not None:
        rows += [["train images", f"{started.train_size:,}"], ["validation images", f"{started.val_size:,}"]]
    if d.limit:
        rows.append(["limit", f"first {d.limit} training images"])
    rows.append(["augmentation", f"crop scale {list(recipe.augment.crop_scale)}, hflip {recipe.augment.hflip:g}"
                 + (f", {recipe.augment.auto_augment}" if recipe.augment.auto_augment else "")
                 + (f", mixup {recipe.augment.mixup:g}" if recipe.augment.mixup else "")
                 + (f", cutmix {recipe.augment.cutmix:g}" if recipe.augment.cutmix else "")])
    lines += _table(["", ""], rows)
    lines += ["", "## Metrics", ""]
    report = _json(run.report_path)
    lines += _metrics_from_report(report) if report else _metrics_from_events(run_path)
    lines += ["", "## Export check", ""]
    if result.max_abs_diff is not None:
        lines.append(f"Loaded back with {result.checked_with}: largest logit difference from the trained PyTorch "
                     f"model on a batch of 4 random inputs = {result.max_abs_diff:.3g} (tolerance 1e-4).")
    else:
        lines.append("Not checked.")
    lines += [f"- {n}" for n in result.notes]
    lines += ["", "## Recipe", "", "```toml", dumps(recipe).rstrip(), "```", ""]
    return "\n".join(lines)


def write_model_card(result, recipe, run_path: str | Path) -> Path:
    path = Path(result.out_dir) / "README.md"
    path.write_text(model_card(result, recipe, run_path), encoding="utf-8")
    return path


__all__ = ["model_card", "write_model_card"]

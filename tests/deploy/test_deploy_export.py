"""Each export format loaded back the way a user would, compared with the trained model on real images."""

import json
from pathlib import Path

import pytest
import torch

from vittui.cli import main
from vittui.data.transforms import build_transform
from vittui.deploy.export import ExportInputError, export_model
from vittui.train.restore import restore

ATOL = 1e-4
pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def batch_a(run_a, val_images):
    """Eight validation images through run a's evaluation transform."""
    from vittui.data.readers import open_image

    folder, _ = val_images
    restored = restore(run_a)
    tf = build_transform(restored.recipe, train=False)
    return torch.stack([tf(open_image(p)) for p in sorted(folder.glob("*.png"))[:8]])


def _reference(run, x):
    model = restore(run).model.eval()
    with torch.inference_mode():
        return model(x)


def _close(got, want):
    diff = float((torch.as_tensor(got).float() - want).abs().max())
    assert diff <= ATOL, diff
    return diff


def _common_files(out: Path, run: Path, classes_n: int = 10):
    pre = json.loads((out / "preprocess.json").read_text())
    assert pre["image_size"] == 16 and pre["interpolation"] == "bilinear" and pre["crop_pct"] == 1.0
    assert pre["mean"] == [0.485, 0.456, 0.406] and pre["std"] == [0.229, 0.224, 0.225]
    assert pre["class_names"] == [str(i) for i in range(classes_n)]
    card = (out / "README.md").read_text()
    assert "## Preprocessing" in card and "## Recipe" in card and "## Metrics" in card and "## Calibration" in card
    assert (run / "recipe.toml").read_text().strip().splitlines()[0] in card
    return pre, card


@pytest.mark.parametrize("fmt", ["safetensors", "hf", "onnx", "torchscript"])
def test_each_format_round_trips(fmt, run_a, runs_root, batch_a, tmp_path, capsys):
    out = tmp_path / fmt
    assert main(["--runs-dir", str(runs_root), "export-model", "a", "--format", fmt, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "max |logits diff|" in printed
    want = _reference(run_a, batch_a)
    if fmt == "safetensors":
        import timm

        cfg = json.loads((out / "config.json").read_text())
        assert cfg["architecture"] == "vit_tiny_patch16_224" and cfg["model_args"]["depth"] == 2
        model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
        with torch.inference_mode():
            _close(model(batch_a), want)
    elif fmt == "hf":
        from transformers import AutoImageProcessor, AutoModelForImageClassification

        cfg = json.loads((out / "config.json").read_text())
        assert cfg["model_type"] == "timm_wrapper" and cfg["architecture"] == "vit_tiny_patch16_224"
        assert "num_classes" not in cfg["model_args"]
        from safetensors import safe_open

        with safe_open(str(out / "model.safetensors"), "pt") as f:
            assert all(k.startswith("timm_model.") for k in f.keys())
        model = AutoModelForImageClassification.from_pretrained(str(out)).eval()
        assert type(model).__name__ == "TimmWrapperForImageClassification"
        assert model.config.id2label[3] == "3"
        with torch.inference_mode():
            _close(model(pixel_values=batch_a).logits, want)
        # the image processor rebuilds the run's evaluation transform from config.json
        from PIL import Image

        img = Image.new("RGB", (23, 17), (200, 40, 90))
        img.putpixel((3, 4), (0, 0, 0))
        proc = AutoImageProcessor.from_pretrained(str(out))
        tf = build_transform(restore(run_a).recipe, train=False)
        _close(proc(img)["pixel_values"], tf(img)[None])
    elif fmt == "onnx":
        import onnxruntime as ort

        sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        assert [i.name for i in sess.get_inputs()] == ["pixel_values"]
        _close(sess.run(["logits"], {"pixel_values": batch_a.numpy()})[0], want)  # batch 8: dynamic batch
        _close(sess.run(["logits"], {"pixel_values": batch_a[:1].numpy()})[0], want[:1])
    else:
        assert (out / "model.pt2").exists()  # torch.jit.trace is deprecated in torch 2.14: torch.export
        program = torch.export.load(str(out / "model.pt2")).module()
        with torch.inference_mode():
            _close(program(batch_a), want)
            _close(program(batch_a[:3]), want[:3])
    _common_files(out, run_a)


def test_lora_merged_round_trips(run_lora, runs_root, batch_a, tmp_path):
    restored = restore(run_lora)
    assert restored.ema  # the export carries the EMA weights
    lora_b = [p for n, p in restored.model.named_parameters() if "lora_B" in n]
    assert lora_b and all(p.abs().max() > 0 for p in lora_b)  # the adapters moved: merging changes weights
    want = _reference(run_lora, batch_a)
    out = tmp_path / "merged"
    res = export_model(run_lora, out, "safetensors")
    assert res.lora == "merged" and res.ema and res.max_abs_diff <= ATOL
    import timm

    model = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
    assert not any("lora" in n for n, _ in model.named_parameters())
    with torch.inference_mode():
        _close(model(batch_a), want)
    out = tmp_path / "merged-onnx"
    assert main(["--runs-dir", str(runs_root), "export-model", "lora", "-f", "onnx", "-o", str(out)]) == 0
    import onnxruntime as ort

    sess = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    _close(sess.run(["logits"], {"pixel_values": batch_a.numpy()})[0], want)
    card = (out / "README.md").read_text()
    assert "LoRA merged" in card and "EMA weights" in card and "From the training events" in card


@pytest.mark.parametrize("fmt", ["safetensors", "hf"])
def test_lora_kept_as_adapter_round_trips(fmt, run_lora, runs_root, batch_a, tmp_path):
    import peft

    out = tmp_path / f"adapter-{fmt}"
    assert main(["--runs-dir", str(runs_root), "export-model", "lora", "-f", fmt, "-o", str(out), "--adapter"]) == 0
    assert (out / "adapter" / "adapter_config.json").exists() and (out / "adapter" / "adapter_model.safetensors").exists()
    want = _reference(run_lora, batch_a)
    if fmt == "hf":
        from transformers import AutoModelForImageClassification

        base = AutoModelForImageClassification.from_pretrained(str(out)).eval()
        call = lambda m: m(pixel_values=batch_a).logits  # noqa: E731
    else:
        import timm

        base = timm.create_model(f"local-dir:{out}", pretrained=True).eval()
        call = lambda m: m(batch_a)  # noqa: E731
    with torch.inference_mode():
        base_only = call(base)
    assert float((base_only - want).abs().max()) > 1e-3  # the adapter carries what training changed
    model = peft.PeftModel.from_pretrained(base, str(out / "adapter")).eval()
    with torch.inference_mode():
        _close(call(model), want)
    assert "PeftModel.from_pretrained" in (out / "README.md").read_text()


def test_model_card_uses_the_evaluation_report(run_a, runs_root, tmp_path):
    if not (run_a / "report.json").exists():
        assert main(["--runs-dir", str(runs_root), "eval", "a", "--no-robustness"]) == 0
    report = json.loads((run_a / "report.json").read_text())
    out = tmp_path / "card"
    export_model(run_a, out, "safetensors")
    card = (out / "README.md").read_text()
    assert "Measured by `vittui eval`" in card
    assert f"{report['ece']:.4f}" in card  # calibration from report.json
    assert f"{100 * report['top1']:.2f}%" in card
    assert "| 9 |" in card  # per-class rows
    assert "digits" in card and "train images | 128" in card


def test_export_refusals(run_a, runs_root, tmp_path, capsys):
    root = ["--runs-dir", str(runs_root), "export-model"]
    assert main(root + ["a", "-f", "hf", "-o", str(tmp_path / "x"), "--adapter"]) == 2
    assert "did not use LoRA" in capsys.readouterr().err
    assert main(root + ["lora", "-f", "onnx", "-o", str(tmp_path / "y"), "--adapter"]) == 2
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("x")
    assert main(root + ["a", "-f", "safetensors", "-o", str(full)]) == 2
    assert (full / "keep.txt").exists()
    assert main(root + ["a", "-f", "safetensors", "-o", str(full), "--force", "--no-verify"]) == 0
    assert not (full / "keep.txt").exists() and (full / "model.safetensors").exists()
    with pytest.raises(ExportInputError):
        export_model(run_a, tmp_path / "z", "tflite")


def test_transformers_lora_run_merged_and_adapter(run_hf_lora, batch_a, tmp_path, monkeypatch):
    """HFClassifier inside peft: the hf export is the transformers model itself; the adapter's module
    names lose the wrapper's `hf.` prefix so that it fits the saved model."""
    import peft
    from transformers import AutoModelForImageClassification

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    want = _reference(run_hf_lora, batch_a)
    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert export_model(run_hf_lora, merged, "hf").lora == "merged"
    model = AutoModelForImageClassification.from_pretrained(str(merged)).eval()
    assert type(model).__name__ == "ViTForImageClassification" and model.config.id2label[0] == "0"
    with torch.inference_mode():
        _close(model(pixel_values=batch_a).logits, want)
    export_model(run_hf_lora, adapter, "hf", adapter=True)
    cfg = json.loads((adapter / "adapter" / "adapter_config.json").read_text())
    assert cfg["modules_to_save"] == ["classifier"] and all(t.startswith("vit.layers.") for t in cfg["target_modules"])
    base = AutoModelForImageClassification.from_pretrained(str(adapter)).eval()
    model = peft.PeftModel.from_pretrained(base, str(adapter / "adapter")).eval()
    with torch.inference_mode():
        _close(model(pixel_values=batch_a).logits, want)

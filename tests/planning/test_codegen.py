"""`vittui export`: the standalone script imports no vittui, writes only the branches a recipe uses, and
trains exactly like vittui's own loop (same per-step losses for the same seed)."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from tiny import TINY, TINY_MODEL, write_digit_folder

from vittui.planning.codegen import ExportError, export_script, render
from vittui.recipe import Recipe, RecipeError, load_preset, list_presets

# the loop's probes read attention between steps; they never touch the RNG, but keep the runs minimal
BASE = TINY + ["run.probe_every=0"]
STEP_LINE = re.compile(r"^step=(\d+) loss=(\S+)", re.M)


def _imports(text: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add((node.module or "").split(".")[0])
    return names


def _vittui_losses(recipe: Recipe, tmp_path: Path) -> list[float]:
    from vittui.runs import events as ev
    from vittui.runs.launcher import prepare_run
    from vittui.train.loop import train

    run = prepare_run(recipe, tmp_path / "runs", "ref")
    train(recipe, run.path)
    return [e.loss for e in ev.read_all(run.events_path) if isinstance(e, ev.Step)]


RUNNER = """
import runpy, sys
sys.modules["vittui"] = None  # any `import vittui` in a script fails
for script, out in zip(sys.argv[1::2], sys.argv[2::2]):
    print("=== " + script, flush=True)
    sys.argv = [script, "--out", out]
    runpy.run_path(script, run_name="__main__")
"""


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "VITTUI_"))}
    env["PYTHONPATH"] = ""
    return env


def _parse(stdout: str) -> list[float]:
    steps = [int(m.group(1)) for m in STEP_LINE.finditer(stdout)]
    assert steps == list(range(1, len(steps) + 1)), stdout[-2000:]
    return [float(m.group(2)) for m in STEP_LINE.finditer(stdout)]


def _assert_same(ref: list[float], got: list[float], case: str = "") -> None:
    assert len(ref) == len(got) and len(ref) > 0, (case, ref, got)
    assert np.allclose(got, ref, rtol=0, atol=1e-5), (case, list(zip(ref, got)))


# ---- the script trains like vittui ----------------------------------------------------------------


@pytest.mark.slow  # ~14 s: two accelerate launches; the default tier stays under 10 minutes on 2 cores
def test_exported_demo_runs_under_accelerate_launch_and_matches_vittui(tmp_path):
    # 10 steps with 8 per epoch: an epoch boundary (new sampler order, an eval) inside the comparison
    recipe = load_preset("demo-digits").with_overrides(BASE + ["schedule.max_steps=10"])
    ref = _vittui_losses(recipe, tmp_path)
    script = tmp_path / "train.py"
    script.write_text(export_script(recipe, "demo-digits"))
    launcher = [shutil.which("accelerate") or "accelerate", "launch", "--cpu", "--num_processes", "1",
                "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    proc = subprocess.run([*launcher, str(script), "--out", str(tmp_path / "out")], cwd=tmp_path, env=_env(),
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    _assert_same(ref, _parse(proc.stdout))
    assert "eval epoch=1" in proc.stdout and "eval epoch=2" in proc.stdout
    assert (tmp_path / "out" / "model.safetensors").stat().st_size > 0


def _write_npz(path: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)

    def part(n):
        return rng.integers(0, 256, (n, 12, 12), dtype=np.uint8), rng.integers(0, 2, (n, 1))

    (tri, trl), (vai, val) = part(96), part(40)
    trl[:10] = 1
    np.savez(path, train_images=tri, train_labels=trl, val_images=vai, val_labels=val)


def _write_folder(root: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(1)
    for k, (name, n) in enumerate((("normal", 40), ("pneumonia", 12))):
        folder = root / name
        folder.mkdir(parents=True)
        for i in range(n):
            a = rng.integers(0, 200, (10, 14), dtype=np.uint8) + 50 * k
            Image.fromarray(a).save(folder / f"{i:03d}.png")  # grayscale PNGs, not square


def test_exported_scripts_match_vittui_across_features(tmp_path):
    """Three recipes that together use every branch the demo does not; one interpreter runs all three."""
    _write_npz(tmp_path / "pneumoniamnist.npz")
    _write_folder(tmp_path / "scans")
    cases = {
        "mixup-ema-ld-accum": ["schedule.max_steps=6", "augment.mixup=0.8", "augment.cutmix=1.0",
                               "augment.re_prob=0.25", "regularize.ema=true", "regularize.ema_decay=0.9",
                               "optim.layer_decay=0.75", "optim.clip_grad=1.0", "compute.accumulation=2"],
        "medmnist-lora-sampler-sgd": [
            "data.source=medmnist", f"data.path={tmp_path / 'pneumoniamnist.npz'}",
            "data.class_balance=weighted_sampler", "data.limit=0", "adapt.lora=true", "adapt.freeze=first_n",
            "adapt.freeze_blocks=1", "optim.name=sgd", "optim.lr=0.01", "schedule.max_steps=4",
            "schedule.kind=constant"],
        "folder-weighted-loss-freeze": [
            "data.source=imagefolder", f"data.path={tmp_path / 'scans'}", "data.class_balance=weighted_loss",
            "data.limit=0", "data.val_fraction=0.25", "adapt.freeze=all_but_last_n", "adapt.freeze_blocks=1",
            "schedule.max_steps=3"],
    }
    refs, args = {}, []
    for name, overrides in cases.items():
        recipe = Recipe().with_overrides(BASE + overrides)
        refs[name] = _vittui_losses(recipe, tmp_path / name)
        script = tmp_path / f"{name}.py"
        script.write_text(export_script(recipe, name))
        args += [str(script), str(tmp_path / name / "out")]
    proc = subprocess.run([sys.executable, "-c", RUNNER, *args], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    outputs = {Path(chunk.split("\n", 1)[0].strip()).stem: chunk for chunk in proc.stdout.split("=== ")[1:]}
    for name in cases:
        _assert_same(refs[name], _parse(outputs[name]), name)
    assert "ema_top1=" in outputs["mixup-ema-ld-accum"]
    assert (tmp_path / "mixup-ema-ld-accum" / "out" / "model_ema.safetensors").exists()
    assert "class weights: normal" in outputs["folder-weighted-loss-freeze"]
    med = (tmp_path / "medmnist-lora-sampler-sgd.py").read_text()
    assert "LoraConfig" in med and "torch.multinomial" in med and "np.load" in med


# ---- the text ------------------------------------------------------------------------------------

VARIANTS = {
    "demo": [],
    "mixup-ema": ["augment.mixup=0.8", "regularize.ema=true"],
    "lora-ld": ["adapt.lora=true", "optim.layer_decay=0.8"],
    "probe": ["adapt.freeze=linear_probe", "optim.name=sgd", "augment.auto_augment=trivialaugment"],
    "medmnist": ["data.source=medmnist", "data.path=data/bloodmnist.npz", "data.class_balance=weighted_sampler"],
    "folder": ["data.source=imagefolder", "data.path=data/x", "compute.channels_last=true",
               "compute.grad_checkpointing=true", "data.num_workers=2"],
    "hf": ["model.name=google/vit-base-patch16-224-in21k", "model.source=hf", "model.pretrained=true",
           "adapt.lora=true", "adapt.freeze=all_but_last_n", "adapt.freeze_blocks=1"],
}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_compiles_and_imports_no_vittui(name):
    text = export_script(Recipe().with_overrides(TINY + VARIANTS[name]), name)
    compile(text, "train.py", "exec")
    mods = _imports(text)
    assert "vittui" not in mods
    assert {"torch", "timm", "accelerate"} <= mods
    assert ("peft" in mods) == ("lora" in name or name == "hf")
    assert ("transformers" in mods) == (name == "hf")
    assert "# %" not in text and "@@" not in text


@pytest.mark.parametrize("name", list_presets())
def test_every_shipped_preset_exports(name):
    recipe = load_preset(name)
    if recipe.data.source not in ("digits", "imagefolder", "medmnist"):
        pytest.skip("data source not exportable")
    text = export_script(recipe, name)
    compile(text, f"{name}.py", "exec")
    assert "vittui" not in _imports(text)


# ---- every variant and every shipped preset, run for 2 steps on tiny data ------------------------------

RUN_ALL = """
import runpy, sys, traceback
sys.modules["vittui"] = None  # any `import vittui` in a script fails
from accelerate.state import AcceleratorState, GradientState
for name, script, out in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]):
    print("=== begin " + name, flush=True)
    AcceleratorState._reset_state(reset_partial_state=True)  # each script starts its own Accelerator
    GradientState._reset_state()
    sys.argv = [script, "--out", out, "--max-steps", "2"]
    code = 0
    try:
        runpy.run_path(script, run_name="__main__")
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc(file=sys.stdout)
        code = 1
    print(f"=== exit {name} {code}", flush=True)
"""
CHUNK = re.compile(r"^=== begin (\S+)\n(.*?)^=== exit \1 (-?\d+)$", re.M | re.S)
TINY_HF_OVERRIDES = ["model.img_size=16", "model.patch_size=4", "model.depth=2", "model.embed_dim=32",
                     "model.num_heads=2"]


@dataclass
class ScriptRun:
    code: int
    output: str
    out: Path


def _tiny_hf_folder(path: Path) -> Path:
    """A 2-layer, width-32 Hugging Face ViT saved with save_pretrained: what a local `model.name` points at."""
    import torch
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(image_size=16, patch_size=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=128, num_labels=10)
    ViTForImageClassification(config).save_pretrained(path)
    return path


def _tiny_data(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    _write_npz(root / "pneumoniamnist.npz")
    return {"npz": root / "pneumoniamnist.npz", "folder": write_digit_folder(root / "digits", range(3), 10),
            "hf": _tiny_hf_folder(root / "tiny-hf")}


def _variant_recipe(name: str, data: dict[str, Path]) -> Recipe:
    extra = {"medmnist": lambda: [f"data.path={data['npz']}"], "folder": lambda: [f"data.path={data['folder']}"],
             "hf": lambda: [f"model.name={data['hf']}"]}.get(name, list)()
    return Recipe().with_overrides(TINY + VARIANTS[name] + extra)


def _preset_recipe(name: str, data: dict[str, Path]) -> Recipe:
    """The preset with only its size changed: the tiny model (random weights for timm, the tiny local
    Hugging Face ViT for hf), tiny data in its own source's layout, batch 8, one thread, no loader workers."""
    recipe = load_preset(name)
    over = ["data.batch_size=8", "data.num_workers=0", "compute.threads=1"]
    if recipe.model.source == "hf":
        over += [f"model.name={data['hf']}"] + TINY_HF_OVERRIDES
    else:
        over += TINY_MODEL + ["model.pretrained=false"]
    over += {"imagefolder": [f"data.path={data['folder']}"], "medmnist": [f"data.path={data['npz']}"],
             "digits": ["data.limit=64"]}[recipe.data.source]
    return recipe.with_overrides(over)


def _run_scripts(tmp_path: Path, recipes: dict[str, Recipe]) -> dict[str, ScriptRun]:
    """Export each recipe, run every script for 2 steps in one interpreter (imports paid once)."""
    args = []
    for name, recipe in recipes.items():
        script = tmp_path / f"{name}.py"
        script.write_text(export_script(recipe, name))
        args += [name, str(script), str(tmp_path / f"{name}-out")]
    proc = subprocess.run([sys.executable, "-c", RUN_ALL, *args], cwd=tmp_path, env=_env(), capture_output=True,
                          text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    runs = {m.group(1): ScriptRun(int(m.group(3)), m.group(2), tmp_path / f"{m.group(1)}-out")
            for m in CHUNK.finditer(proc.stdout)}
    assert runs.keys() == recipes.keys(), proc.stdout[-3000:] + proc.stderr[-3000:]
    return runs


def _assert_trained(run: ScriptRun) -> None:
    assert run.code == 0, run.output[-3000:]
    steps = [int(m.group(1)) for m in STEP_LINE.finditer(run.output)]
    losses = [float(m.group(2)) for m in STEP_LINE.finditer(run.output)]
    assert steps == [1, 2], run.output[-2000:]
    assert all(np.isfinite(losses)), losses
    assert re.search(r"^eval epoch=1 loss=\S+ top1=", run.output, re.M), run.output[-2000:]
    assert (run.out / "model.safetensors").stat().st_size > 0


@pytest.fixture(scope="module")
def matrix_runs(tmp_path_factory) -> dict[str, ScriptRun]:
    """Every variant and every shipped preset, exported and run once for the whole module (one interpreter:
    about 40 s on 2 busy cores, so the matrix stays in the default tier)."""
    tmp = tmp_path_factory.mktemp("matrix")
    data = _tiny_data(tmp / "data")
    recipes = {f"variant-{n}": _variant_recipe(n, data) for n in VARIANTS}
    recipes |= {f"preset-{n}": _preset_recipe(n, data) for n in list_presets()}
    runs = _run_scripts(tmp, recipes)
    runs["data"] = data  # type: ignore[assignment]
    return runs


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_variant_trains(matrix_runs, name):
    run = matrix_runs[f"variant-{name}"]
    _assert_trained(run)
    if name == "folder":  # the script really used the compute options it trained with
        text = (run.out.parent / "variant-folder.py").read_text()
        assert "memory_format=torch.channels_last" in text and "set_grad_checkpointing(True)" in text
        assert "NUM_WORKERS = 2" in text and "persistent_workers=True" in text


@pytest.mark.parametrize("name", list_presets())
def test_every_shipped_preset_trains(matrix_runs, name):
    _assert_trained(matrix_runs[f"preset-{name}"])


def test_hf_variant_loads_the_local_folder(matrix_runs):
    """The hf variant (LoRA on the last block) starts from the saved tiny model: its frozen first layer in
    the exported weights is byte-identical to the folder's."""
    from safetensors.torch import load_file
    from transformers import ViTForImageClassification

    # the folder's weights under the names this transformers version gives them once loaded
    folder = ViTForImageClassification.from_pretrained(matrix_runs["data"]["hf"]).state_dict()
    trained = load_file(str(matrix_runs["variant-hf"].out / "model.safetensors"))
    assert trained.keys() == {"hf." + k for k in folder}
    layer0 = [k for k in folder if re.search(r"\blayers?\.0\.", k)]
    layer1_v = [k for k in folder if re.search(r"\blayers?\.1\.", k) and k.endswith(("v_proj.weight", "value.weight"))]
    assert layer0 and len(layer1_v) == 1
    for k in layer0:
        assert np.array_equal(trained["hf." + k].numpy(), folder[k].numpy()), k
    # the last block's value projection carries the trained LoRA update (merged into the weight)
    assert not np.array_equal(trained["hf." + layer1_v[0]].numpy(), folder[layer1_v[0]].numpy())


def test_only_the_used_branches_are_written():
    digits = export_script(Recipe().with_overrides(TINY))
    assert "load_digits" in digits and "np.load(" not in digits and "os.walk" not in digits
    assert "Mixup" not in digits and "ModelEmaV3" not in digits and "peft" not in digits
    assert "MAX_STEPS = 0" in digits and "SEED = 3" in digits and "LR = 0.001" in digits
    med = export_script(Recipe().with_overrides(TINY + ["data.source=medmnist", "data.path=/d/pneumoniamnist.npz"]))
    assert "sklearn" not in med and "load_digits" not in med
    assert 'CLASS_NAMES = ("normal", "pneumonia")' in med
    ld = export_script(Recipe().with_overrides(TINY + ["optim.layer_decay=0.7"]))
    assert "param_groups_layer_decay(" in ld and "LAYER_DECAY = 0.7" in ld


def test_hf_datasets_are_refused_with_a_way_out():
    with pytest.raises(ExportError, match="imagefolder"):
        export_script(Recipe().with_overrides(["data.source=hf", "data.path=beans"]))
    assert issubclass(ExportError, RecipeError)  # the CLI turns it into exit code 2


def test_render_branches():
    t = "a\n# %if x\nb\n# %if y\nc\n# %else\nd\n# %end\n# %elif z\ne\n# %else\nf\n# %end\n@@V@@"
    assert render(t, {"x": True, "y": False, "z": True}, {"V": "v"}) == "a\nb\nd\nv\n"
    assert render(t, {"x": False, "y": True, "z": True}, {"V": "v"}) == "a\ne\nv\n"
    assert render(t, {"x": False, "y": True, "z": False}, {"V": "v"}) == "a\nf\nv\n"
    with pytest.raises(KeyError):
        render("# %if nope\n# %end", {}, {})
    with pytest.raises(KeyError):
        render("@@MISSING@@", {}, {})


# ---- the command ---------------------------------------------------------------------------------


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "vittui.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def test_cli_writes_the_script_and_refuses_bad_input(tmp_path):
    p = _cli("export", "demo-digits", "-o", "train.py", "--set", "schedule.epochs=3", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    text = (tmp_path / "train.py").read_text()
    assert "EPOCHS = 3" in text and "wrote train.py" in p.stderr
    p = _cli("export", "demo-digits", "-o", "train.py", cwd=tmp_path)
    assert p.returncode == 2 and "--force" in p.stderr
    p = _cli("export", "demo-digits", "--set", "optim.lrr=1", cwd=tmp_path)
    assert p.returncode == 2 and "did you mean optim.lr" in p.stderr
    p = _cli("export", "demo-digits", "--set", "data.source=hf", "--set", "data.path=beans", cwd=tmp_path)
    assert p.returncode == 2 and "imagefolder" in p.stderr
    p = _cli("export", "demo-digits", cwd=tmp_path)
    assert p.returncode == 0 and p.stdout.startswith("#!/usr/bin/env python")

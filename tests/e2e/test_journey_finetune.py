"""Fine-tune from pretrained weights, the journey most users come for, through the installed `vittui`.

Pretrain the tiny ViT on handwritten digits 0-4 (an ImageFolder of PNGs), export its weights as a
safetensors file, then fine-tune from `model.weights = <that file>` on digits 5-9 with the first block
frozen, and with LoRA; evaluate, export for transformers and predict on a folder of PNGs.

The proof that the file was really loaded is twofold: the fine-tuned runs beat the same recipe trained from
scratch for the same 50 steps (val loss and top-1 from the runs' events; with 12 images a class, scratch
stays at chance, ln 5 = 1.609), and the tensors that must not train are byte for byte the file's.

Tiers: the pretraining, the scratch baseline and the frozen fine-tune with `vittui eval` run by default
(one module fixture pretrains once); LoRA, `export-model --format hf` loaded with transformers, and
`predict` are `slow`.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors import safe_open
from tiny import TINY_AUGMENT, TINY_MODEL, events, status, tiny_toml, vittui_cmd, write_digit_folder

from vittui.runs import events as ev

STEPS = 50  # 60 images, batch 12: 5 steps an epoch, 10 epochs
FT_VAL_PER_CLASS = 40

# Tensors frozen by adapt.freeze = first_n, freeze_blocks = 1 in this timm ViT: the embeddings and block 0.
FROZEN_EMBEDDINGS = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"}


def is_frozen(key: str) -> bool:
    return key in FROZEN_EMBEDDINGS or key.startswith("blocks.0.")


def tensors(path: Path) -> dict[str, np.ndarray]:
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k).numpy() for k in f.keys()}


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


class Shell:
    """The installed command with its own runs folder (module-scoped twin of the `cli` fixture)."""

    def __init__(self, root: Path):
        self.root = root
        self.runs = root / "runs"
        self.env = {**os.environ, "VITTUI_RUNS": str(self.runs)}

    def __call__(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        p = subprocess.run(vittui_cmd() + list(args), cwd=self.root, env=self.env, capture_output=True, text=True,
                           timeout=timeout)
        assert p.returncode == 0, f"vittui {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}"
        return p

    def last_eval(self, name: str) -> ev.Eval:
        run = self.runs / name
        assert status(run).get("state") == "finished"
        evals = [e for e in events(run) if isinstance(e, ev.Eval)]
        assert evals[-1].step == STEPS
        return evals[-1]

    def last_weights(self, name: str) -> Path:
        ckpts = sorted((self.runs / name / "checkpoints").glob("step-*"))
        assert ckpts[-1].name == f"step-{STEPS:08d}"
        return ckpts[-1] / "model.safetensors"


def base_recipe(data: Path, *extra: str) -> list[str]:
    return TINY_MODEL + TINY_AUGMENT + [
        "data.source=imagefolder", f"data.path={data}", "compute.threads=1", "run.probe_every=0", *extra]


@pytest.fixture(scope="module")
def journey(tmp_path_factory) -> SimpleNamespace:
    root = tmp_path_factory.mktemp("finetune")
    sh = Shell(root)
    pre, ft = root / "digits-0-4", root / "digits-5-9"
    write_digit_folder(pre / "train", range(5), 120)
    write_digit_folder(pre / "val", range(5), 30, start=120)
    write_digit_folder(ft / "train", range(5, 10), 12)
    write_digit_folder(ft / "val", range(5, 10), FT_VAL_PER_CLASS, start=100)

    # 1. pretrain on 0-4 and export the weights as one safetensors file
    tiny_toml(root / "pre.toml", base_recipe(pre, "data.batch_size=32", "schedule.epochs=20",
                                             "schedule.warmup_epochs=1", "optim.lr=3e-3", "run.seed=0",
                                             "regularize.drop_path=0"))
    sh("train", str(root / "pre.toml"), "--name", "pre")
    pre_evals = [e for e in events(sh.runs / "pre") if isinstance(e, ev.Eval)]
    assert pre_evals[-1].top1 > 80, f"pretraining learned too little to transfer: {pre_evals[-1]}"
    sh("export-model", "pre", "--format", "safetensors", "-o", str(root / "pretrained"))
    weights = root / "pretrained" / "model.safetensors"

    # 2. the same fine-tuning recipe from scratch: the baseline
    ft_recipe = base_recipe(ft, "data.batch_size=12", "schedule.epochs=10", "schedule.warmup_epochs=0",
                            "optim.lr=3e-3", "run.seed=0")
    tiny_toml(root / "ft.toml", ft_recipe)
    sh("train", str(root / "ft.toml"), "--name", "scratch")
    return SimpleNamespace(sh=sh, root=root, ft=ft, weights=weights, scratch=sh.last_eval("scratch"))


def finetune_beats_scratch(journey, name: str, *settings: str):
    """Fine-tune run `name` from the pretrained file with the fine-tuning recipe and `settings` (each a --set),
    check that it beats the scratch baseline, and return its last evaluation."""
    sets = [arg for setting in (f"model.weights={journey.weights}", *settings) for arg in ("--set", setting)]
    journey.sh("train", str(journey.root / "ft.toml"), "--name", name, *sets)
    tuned, scratch = journey.sh.last_eval(name), journey.scratch
    # same recipe, same steps, same seed: only the starting weights differ
    assert tuned.loss < scratch.loss - 0.1, (tuned, scratch)
    assert tuned.top1 > scratch.top1 + 5, (tuned, scratch)
    return tuned


@pytest.mark.slow  # ~31 s with the journey's set-up (shared with the LoRA/export journeys, slow too)
def test_finetune_with_frozen_blocks_beats_scratch_and_keeps_the_file_weights(journey):
    sh, weights = journey.sh, journey.weights
    tuned = finetune_beats_scratch(journey, "frozen", "adapt.freeze=first_n", "adapt.freeze_blocks=1")
    started = next(e for e in events(sh.runs / "frozen") if isinstance(e, ev.RunStarted))
    assert started.params_trainable < started.params_total

    # the frozen tensors are the file's, byte for byte; the rest trained away from it
    file, ckpt = tensors(weights), tensors(sh.last_weights("frozen"))
    assert set(ckpt) == set(file)
    frozen = sorted(k for k in file if is_frozen(k))
    assert len(frozen) == len(FROZEN_EMBEDDINGS) + 12  # 12 tensors in a timm block
    assert [k for k in frozen if not same_bytes(ckpt[k], file[k])] == []
    assert [k for k in file if not is_frozen(k) and same_bytes(ckpt[k], file[k])] == []

    # vittui eval on the last checkpoint: the training loop's numbers on the 200 val images
    sh("eval", "frozen", "--checkpoint", "last", "--no-robustness")
    report = json.loads((sh.runs / "frozen" / "report.json").read_text())
    assert report["n"] == 5 * FT_VAL_PER_CLASS and report["skipped"] == 0
    assert [sum(r) for r in report["confusion"]] == [FT_VAL_PER_CLASS] * 5
    assert report["class_names"] == ["5", "6", "7", "8", "9"]
    assert abs(100 * report["top1"] - tuned.top1) < 1e-9
    assert abs(report["loss"] - tuned.loss) < 1e-5


@pytest.mark.slow
def test_lora_finetune_exports_to_transformers_and_predicts_like_vittui(journey):
    sh, weights = journey.sh, journey.weights
    tuned = finetune_beats_scratch(journey, "lora", "adapt.lora=true", "optim.lr=1e-2")

    # LoRA leaves the base weights alone: every base tensor in the checkpoint is the file's
    file, ckpt = tensors(weights), tensors(sh.last_weights("lora"))
    base, adapters, head = {}, {}, {}
    for k, v in ckpt.items():
        name = k.removeprefix("base_model.model.")
        if "lora_" in name:
            adapters[name] = v
        elif ".modules_to_save." in name:
            head[name.replace(".modules_to_save.default", "")] = v
        else:
            base[name.replace(".base_layer", "").replace(".original_module", "")] = v
    assert set(base) == set(file)
    assert [k for k in file if not same_bytes(base[k], file[k])] == []
    # ... while the adapters and the new head trained (lora_B starts at zero)
    assert adapters and all(np.abs(v).max() > 0 for k, v in adapters.items() if "lora_B" in k)
    assert set(head) == {"head.weight", "head.bias"}
    assert not same_bytes(head["head.weight"], file["head.weight"])

    # export for transformers (LoRA merged), and predict on the folder of val PNGs with both
    out = journey.root / "hf-export"
    sh("export-model", "lora", "--format", "hf", "-o", str(out), "--checkpoint", "last")
    val = journey.ft / "val"
    p = sh("predict", "lora", str(val), "--checkpoint", "last", "--top-k", "2", "--json")
    doc = json.loads(p.stdout)
    vt = {Path(r["image"]).resolve(): r["predictions"] for r in doc["predictions"]}
    pngs = sorted(val.rglob("*.png"))
    assert sorted(vt) == [f.resolve() for f in pngs] and len(pngs) == 5 * FT_VAL_PER_CLASS  # each PNG listed
    assert {r[0]["class"] for r in vt.values()} <= {"5", "6", "7", "8", "9"}
    # the true class is the folder's name: predict's accuracy is the run's last val top-1
    right = sum(r[0]["class"] == f.parent.name for f, r in vt.items())
    assert abs(100 * right / len(vt) - tuned.top1) < 1e-9, (right, tuned.top1)

    import torch
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(str(out)).eval()
    processor = AutoImageProcessor.from_pretrained(str(out))
    with torch.no_grad():
        probs = model(**processor(images=[Image.open(f).convert("RGB") for f in pngs],
                                  return_tensors="pt")).logits.softmax(-1)
    for f, row in zip(pngs, probs):
        mine = vt[f.resolve()][0]
        assert model.config.id2label[int(row.argmax())] == mine["class"], (f, row, mine)
        assert abs(float(row.max()) - mine["prob"]) < 1e-3, (f, float(row.max()), mine)

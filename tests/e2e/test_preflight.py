"""Pre-flight through the installed command: every broken input ends in one line on stderr, exit 2, no
traceback, and no run directory (vittui/planning/preflight.py, preflight_libs.py)."""

import pytest
from tiny import TINY_PROCESS, tiny_toml, write_digit_folder


def _no_class_folders(tmp):
    write_digit_folder(tmp / "flat", [1], 2)
    for png in (tmp / "flat" / "1").iterdir():
        png.rename(tmp / "flat" / png.name)
    (tmp / "flat" / "1").rmdir()
    return ["data.source=imagefolder", f"data.path={tmp / 'flat'}"]


def _one_class(tmp):
    write_digit_folder(tmp / "one", [3], 4)
    return ["data.source=imagefolder", f"data.path={tmp / 'one'}"]


def _classes_differ(tmp):
    write_digit_folder(tmp / "tv" / "train", [0, 1], 3)
    write_digit_folder(tmp / "tv" / "val", [0, 2], 3, start=3)
    return ["data.source=imagefolder", f"data.path={tmp / 'tv'}"]


def _bad_npz(tmp):
    (tmp / "pneumoniamnist.npz").write_text("not a zip file")
    return ["data.source=medmnist", f"data.path={tmp / 'pneumoniamnist.npz'}"]


def _bad_weights(tmp):
    (tmp / "w.safetensors").write_bytes(b"PK\x03\x04 a zip, as torch.save writes, renamed")
    return [f"model.weights={tmp / 'w.safetensors'}"]


def _output_is_a_file(tmp):
    (tmp / "afile").write_text("")
    return [f"run.output_dir={tmp / 'afile'}"]


CASES = {  # id: (overrides, or a function of tmp_path giving them; the phrase stderr must hold)
    "missing data folder": (lambda t: ["data.source=imagefolder", f"data.path={t / 'nope'}"], "does not exist"),
    "no class folders": (_no_class_folders, "no class folders in"),
    "one class": (_one_class, "a classifier needs at least 2"),
    "train/val classes differ": (_classes_differ, "train and val class folders differ: only in"),
    "unreadable npz": (_bad_npz, "as a MedMNIST .npz file"),
    "weights not safetensors": (_bad_weights, "is not a safetensors file"),
    "unknown timm name (timm)": (["model.name=vit_tiny_patch16_244", "model.source=timm"],
                                 "is not a timm model; did you mean vit_tiny_patch16_224"),
    "unknown timm name (auto)": (["model.name=vit_tiny_patch16_244", "model.source=auto"],
                                 "not a timm model, a local folder or in the Hugging Face cache; did you mean "
                                 "vit_tiny_patch16_224"),
    "garbled auto_augment": (["augment.auto_augment=rand-m9-zz"], "timm's parser would skip 'zz'"),
    "cuda without CUDA": (["compute.device=cuda"], "no CUDA device is available"),
    "output_dir is a file": (_output_is_a_file, "is a file, not a folder"),
    "linear probe + LoRA": (["adapt.freeze=linear_probe", "adapt.lora=true"], "a linear probe trains only the head"),
}


# every row in the foreground; two with --detach (the same check, before the worker is spawned)
ROWS = [(c, False) for c in CASES] + [("missing data folder", True), ("unknown timm name (auto)", True)]


@pytest.mark.parametrize(("case", "detach"), ROWS, ids=[f"{c}{' --detach' if d else ''}" for c, d in ROWS])
def test_broken_input_is_one_line_exit_2_and_no_run_directory(cli, tmp_path, case, detach):
    make, phrase = CASES[case]
    overrides = make(tmp_path) if callable(make) else make
    toml = tiny_toml(tmp_path / "broken.toml", TINY_PROCESS + overrides)
    before = sorted(p.name for p in tmp_path.iterdir())
    p = cli("train", str(toml), *(["--detach"] if detach else []), check=False,
            extra_env={"CUDA_VISIBLE_DEVICES": ""})  # "no CUDA" even on a box with a GPU
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert not cli.root.exists()  # no run directory, not even the runs folder
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nor anything else


def test_a_worker_failure_in_the_foreground_is_one_line_and_the_log_path(cli, tmp_path):
    # LoRA targets are found when the model is built: the worker fails, with one line and where the traceback is
    toml = tiny_toml(tmp_path / "lora.toml", TINY_PROCESS + ["adapt.lora=true", 'adapt.lora_targets=["nothing"]'])
    p = cli("train", str(toml), "--name", "w", check=False)
    assert p.returncode == 2, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    log = cli.root / "w" / "worker.log"
    [line] = [x for x in p.stderr.splitlines() if x.startswith("error: ")]
    assert "match no Linear layer" in line and line.endswith(f"(traceback in {log})")
    assert "Traceback" in log.read_text()


def test_resume_refuses_a_preset_or_overrides_and_leaves_the_run_alone(cli, tmp_path):
    """`--resume` trains the run's own recipe.toml: a PRESET or `--set` beside it is refused in one line
    (naming the file to edit), never silently ignored, and the run is left as it was."""
    recipe = tiny_toml(tmp_path / "tiny.toml", [*TINY_PROCESS, "schedule.max_steps=2"])
    cli("train", str(recipe), "--name", "r")
    before = (cli.root / "r" / "recipe.toml").read_bytes()
    events = (cli.root / "r" / "events.jsonl").read_bytes()
    for extra in (["--set", "optim.lr=0.5"], [str(recipe)]):
        p = cli("train", "--resume", "r", *extra, check=False)
        assert p.returncode == 2, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and "takes no PRESET or --set" in lines[0] and "recipe.toml" in lines[0], lines
        assert "Traceback" not in p.stdout + p.stderr
    assert (cli.root / "r" / "recipe.toml").read_bytes() == before
    assert (cli.root / "r" / "events.jsonl").read_bytes() == events

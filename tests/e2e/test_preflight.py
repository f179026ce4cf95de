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


def _weights_for_another_model(tmp):
    import torch
    from safetensors.torch import save_file

    save_file({"conv1.weight": torch.zeros(8, 3, 7, 7), "fc.weight": torch.zeros(10, 8)}, str(tmp / "resnet.safetensors"))
    return [f"model.weights={tmp / 'resnet.safetensors'}"]


def _output_is_a_file(tmp):
    (tmp / "afile").write_text("")
    return [f"run.output_dir={tmp / 'afile'}"]


CASES = {  # id: (overrides, or a function of tmp_path giving them; the phrase stderr must hold)
    "missing data folder": (lambda t: ["data.source=imagefolder", f"data.path={t / 'nope'}"], "does not exist"),
    "no class folders": (_no_class_folders, "no class folders in"),
    "one class": (_one_class, "a classifier needs at least 2"),
    "train/val classes differ": (_classes_differ, "train and val class folders differ: only in"),
    "unreadable npz": (_bad_npz, "as a MedMNIST .npz file: not a .npz (zip) archive"),
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
    "missing weights file": (lambda t: [f"model.weights={t / 'gone.safetensors'}"], "gone.safetensors does not exist"),
    "weights of another architecture": (_weights_for_another_model, "does not fit the model (VisionTransformer"),
    "LoRA targets match nothing": (["adapt.lora=true", 'adapt.lora_targets=["nothing"]'],
                                   "adapt.lora_targets ['nothing'] match no Linear layer"),
    "missing medmnist file": (lambda t: ["data.source=medmnist", f"data.path={t / 'bloodmnist.npz'}"],
                              "bloodmnist.npz does not exist"),
    "missing hf dataset folder": (lambda t: ["data.source=hf", f"data.path={t / 'saved'}"], "saved does not exist"),
    "hf dataset id offline, not cached": (["data.source=hf", "data.path=someone/no-such-dataset"],
                                          "not in the Hugging Face cache, and the Hub is offline"),
}


# every row in the foreground and with --detach (the same check, before the worker is spawned); two through
# the queue (before the run is queued)
# (the --detach rows go in the slow tier: the same pre-flight function, 18 more vittui processes)
ROWS = [pytest.param(c, d, id=f"{c} {d}".strip(), marks=[pytest.mark.slow] if d == "--detach" else [])
        for c in CASES for d in ("", "--detach")] + [
    pytest.param("missing data folder", "--queue", id="missing data folder --queue"),
    pytest.param("LoRA targets match nothing", "--queue", id="LoRA targets match nothing --queue")]


@pytest.mark.parametrize(("case", "how"), ROWS)
def test_broken_input_is_one_line_exit_2_and_no_run_directory(cli, tmp_path, case, how):
    make, phrase = CASES[case]
    overrides = make(tmp_path) if callable(make) else make
    toml = tiny_toml(tmp_path / "broken.toml", TINY_PROCESS + overrides)
    before = sorted(p.name for p in tmp_path.iterdir())
    p = cli("train", str(toml), *([how] if how else []), check=False,
            extra_env={"CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1"})  # "no CUDA" even on a box with a GPU
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and phrase in lines[0], p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert not cli.root.exists()  # no run directory, not even the runs folder
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nor anything else


def test_a_worker_failure_in_the_foreground_is_one_line_and_the_log_path(cli, tmp_path):
    # a failure pre-flight cannot see (an out-of-memory error at step 2, injected): the worker fails, with
    # one line and where the traceback is
    toml = tiny_toml(tmp_path / "oom.toml", TINY_PROCESS)
    p = cli("train", str(toml), "--name", "w", check=False, extra_env={"VITTUI_TEST_OOM_AT_STEP": "2"})
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    log = cli.root / "w" / "worker.log"
    [line] = [x for x in p.stderr.splitlines() if x.startswith("error: ")]
    assert "out of memory" in line and line.endswith(f"(traceback in {log})")
    assert "Traceback" in log.read_text()


@pytest.mark.parametrize("detach", [False, True], ids=["foreground", "--detach"])
def test_resume_runs_pre_flight_on_the_runs_recipe(cli, tmp_path, detach):
    """`train --resume RUN` checks the run's own recipe first: its data folder gone is one line, exit 2, and
    the run directory is left as it was (no worker started, nothing appended)."""
    import shutil

    data = write_digit_folder(tmp_path / "digits", [0, 1], 12)
    toml = tiny_toml(tmp_path / "r.toml", [*TINY_PROCESS, "data.source=imagefolder", f"data.path={data}",
                                           "data.batch_size=8", "schedule.max_steps=2"])
    cli("train", str(toml), "--name", "r")
    shutil.rmtree(data)
    before = {p.name: p.read_bytes() for p in (cli.root / "r").iterdir() if p.is_file()}
    p = cli("train", "--resume", "r", *(["--detach"] if detach else []), check=False)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0] == f"error: data.path {data} does not exist", lines
    assert "Traceback" not in p.stdout + p.stderr
    assert {p.name: p.read_bytes() for p in (cli.root / "r").iterdir() if p.is_file()} == before


# ---- vittui check: the same checks, printed ------------------------------------------------------------


def test_check_ok_and_problems_in_text_and_json(cli, tmp_path):
    import json

    ok = tiny_toml(tmp_path / "ok.toml", TINY_PROCESS)
    p = cli("check", str(ok))
    assert p.returncode == 0 and p.stdout.strip() == f"{ok}: ok (recipe valid, pre-flight found nothing)"
    assert json.loads(cli("check", str(ok), "--json").stdout) == {"ok": True, "problems": []}

    broken = ["--set", "model.name=vit_tiny_patch16_244", "--set", "augment.auto_augment=rand-m9-zz",
              "--set", "data.source=imagefolder", "--set", f"data.path={tmp_path / 'nope'}"]
    p = cli("check", str(ok), *broken, check=False)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 3 and all(x.startswith("error: ") for x in lines), lines
    assert "does not exist" in lines[0] and "did you mean vit_tiny_patch16_224" in lines[1] and "'zz'" in lines[2]
    p = cli("check", str(ok), *broken, "--json", check=False)
    assert p.returncode == 2
    got = json.loads(p.stdout)
    assert got["ok"] is False and got["problems"] == [x[len("error: "):] for x in lines]
    # a value the validator refuses is a finding too, in the same shape
    p = cli("check", str(ok), "--set", "run.on_divergence=rewnd", "--json", check=False)
    assert p.returncode == 2 and json.loads(p.stdout) == {"ok": False, "problems": [
        "RecipeError: run.on_divergence must be one of pause, rewind (got 'rewnd'); did you mean 'rewind'? [--set]"]}
    assert not cli.root.exists()  # checking never makes a run


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

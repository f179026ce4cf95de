"""`vittui export-log`: a hand-made run with every kind of event (and a real probe file) exported as
TensorBoard event files, read back with TensorBoard's own EventAccumulator and matched scalar by scalar
to `events.jsonl`; CSV and JSONL; bad input; `--follow` as a process beside a run that is still written."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tiny import vittui_cmd, wait_for
from vittui.cli import main
from vittui.recipe import Recipe, save
from vittui.runs import events as ev
from vittui.runs.probes import save_probe
from vittui.runs.store import RunDir, RunStatus

PROBE_IMAGE = (20, 28)  # (H, W) of the probe images: not a multiple of the grid, not square


def _write(run: RunDir, events: list[ev.Event]) -> None:
    w = ev.EventWriter(run.events_path)
    for e in events:
        w.write(e)
    w.close()


def make_run(root: Path, name: str = "r1") -> RunDir:
    """A run with steps (with CUDA memory), evals (EMA), gradient flow, a probe, a knob, a divergence."""
    run = RunDir(root / name).create()
    save(Recipe().with_overrides(["optim.lr=3e-4", "run.name=" + name]), run.recipe_path)
    run.write_status(RunStatus(state="finished", step=4, total_steps=4, pid=os.getpid()))
    rng = np.random.default_rng(0)
    attn = rng.random((2, 2, 2, 5, 5))
    attn /= attn.sum(-1, keepdims=True)  # (L, B, H, T, T): CLS + a 2x2 grid
    images = rng.integers(0, 255, (2, 3, *PROBE_IMAGE), dtype=np.uint8)
    rel = save_probe(run.attention, 2, attn, images, grid=2, patch_size=4, num_prefix_tokens=1, query="cls")
    evs: list[ev.Event] = [
        ev.RunStarted(name=name, model="vit", params_total=10, params_trainable=10, num_classes=3,
                      classes=["a", "b", "c"], train_size=8, val_size=4, steps_per_epoch=2, total_steps=4,
                      device="cuda", t=100.0)]
    for s in range(1, 5):
        evs.append(ev.Step(step=s, epoch=s / 2, loss=2.0 / s, lr=1e-3 * s, grad_norm=0.5 + s, images_per_s=100.0 + s,
                           data_time=0.01 * s, step_time=0.1 * s, torch_allocated=(s + 1) << 20,
                           torch_reserved=(s + 3) << 20, t=100.0 + s))
        if s % 2 == 0:
            evs.append(ev.Eval(step=s, epoch=s / 2, loss=1.5 / s, top1=30.0 * s / 2, top5=90.0, ema_top1=25.0 * s / 2,
                               t=100.5 + s))
    evs += [ev.GradFlow(step=2, names=["blocks.0", "blocks.1"], attn=[0.1, 0.2], mlp=[0.3, 0.4],
                        other={"head": 0.9}, t=102.6),
            ev.AttentionProbe(step=2, path=rel, entropy=[[0.5, 0.5]] * 2, distance=[[1.0, 1.0]] * 2,
                              diversity=[0.1, 0.2], flags=["layer 1: heads collapsed"], t=102.7),
            ev.ControlAck(command="set", id="k1", step=3, detail="lr_scale=0.5", t=103.2),
            ev.Fault(fault="nan", step=3, message="loss is nan", quantity="loss",
                     suggestion="lower the learning rate", t=103.3),
            ev.Status(state="paused", step=3, reason="divergence: loss is nan", t=103.4),
            ev.DataSkipped(count=2, examples=["x.png"], t=103.5),
            ev.Status(state="finished", step=4, t=105.0),
            ev.Finished(step=4, best_top1=60.0, wall_time=5.0, t=105.1)]
    _write(run, evs)
    return run


def expected_scalars(run: RunDir) -> dict[str, dict[int, float]]:
    """Straight from the JSON lines (not through vittui's codec): tag -> step -> value."""
    out: dict[str, dict[int, float]] = {}

    def put(tag, step, v):
        out.setdefault(tag, {})[int(step)] = float(v)

    last_step = 0
    for line in run.events_path.read_text().splitlines():
        d = json.loads(line)
        kind = d["type"]
        if kind == "step":
            last_step = d["step"]
            for tag, key in (("train/loss", "loss"), ("train/lr", "lr"), ("train/grad_norm", "grad_norm"),
                             ("train/epoch", "epoch"), ("perf/images_per_s", "images_per_s"),
                             ("perf/data_time_s", "data_time"), ("perf/step_time_s", "step_time")):
                put(tag, d["step"], d[key])
            if d["torch_allocated"] or d["torch_reserved"]:
                put("memory/torch_allocated_mib", d["step"], d["torch_allocated"] / 2**20)
                put("memory/torch_reserved_mib", d["step"], d["torch_reserved"] / 2**20)
        elif kind == "eval":
            for tag, key in (("val/loss", "loss"), ("val/top1", "top1"), ("val/top5", "top5")):
                put(tag, d["step"], d[key])
            if d.get("ema_top1") is not None:
                put("val/ema_top1", d["step"], d["ema_top1"])
        elif kind == "grad_flow":
            for name, a, m in zip(d["names"], d["attn"], d["mlp"]):
                put(f"grad_norm/attn/{name}", d["step"], a)
                put(f"grad_norm/mlp/{name}", d["step"], m)
            for name, v in d["other"].items():
                put(f"grad_norm/other/{name}", d["step"], v)
        elif kind == "data_skipped":
            put("data/skipped_images", last_step, d["count"])
    return out


def read_tensorboard(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def test_tensorboard_round_trip_every_scalar_image_and_text(tmp_path):
    root = tmp_path / "runs"
    run = make_run(root)
    out = tmp_path / "tb"
    assert main(["--runs-dir", str(root), "export-log", "r1", "--format", "tensorboard", "-o", str(out)]) == 0
    acc = read_tensorboard(out / "r1")
    tags = acc.Tags()
    want = expected_scalars(run)
    metrics = {t for t in tags["scalars"] if t.startswith("hparam/")}
    assert set(tags["scalars"]) - metrics == set(want), set(tags["scalars"]) ^ set(want)
    for tag, by_step in want.items():
        got = {s.step: s.value for s in acc.Scalars(tag)}
        assert set(got) == set(by_step), tag
        for step, v in by_step.items():
            assert math.isclose(got[step], v, rel_tol=1e-6, abs_tol=1e-9), (tag, step, got[step], v)
    # the final metrics beside the hyperparameters
    final = {t: acc.Scalars(t)[-1].value for t in metrics}
    assert final["hparam/best_top1"] == 60.0 and final["hparam/final_top1"] == 60.0
    assert final["hparam/final_step"] == 4 and math.isclose(final["hparam/final_val_loss"], 0.375)
    # one picture per probe image, PNG, at the probe image's size
    assert sorted(tags["images"]) == ["attention/rollout/image_0", "attention/rollout/image_1"]
    for tag in tags["images"]:
        (img,) = acc.Images(tag)
        assert img.step == 2 and (img.height, img.width) == PROBE_IMAGE
        with Image.open(io.BytesIO(img.encoded_image_string)) as im:
            assert im.format == "PNG" and im.size == (PROBE_IMAGE[1], PROBE_IMAGE[0])
    # text: the recipe, the knob, the divergence, the status; hparams in the plugin's own tags
    texts = {t: [e.tensor_proto.string_val[0].decode() for e in acc.Tensors(t)] for t in tags["tensors"]}
    assert any("lr = 0.0003" in s for s in texts["recipe/text_summary"])
    assert texts["events/control/text_summary"] == ["set: lr_scale=0.5"]
    assert "nan (loss): loss is nan — lower the learning rate" in texts["events/fault/text_summary"]
    assert "paused: divergence: loss is nan" in texts["events/status/text_summary"]
    assert {"_hparams_/experiment", "_hparams_/session_start_info"} <= set(acc.summary_metadata)


def test_several_runs_side_by_side_and_reexport_replaces(tmp_path):
    root = tmp_path / "runs"
    make_run(root, "a")
    make_run(root, "b")
    out = tmp_path / "tb"
    for _ in range(2):
        assert main(["--runs-dir", str(root), "export-log", "a", str(root / "b"), "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["a", "b"]
    for name in ("a", "b"):
        assert len(list((out / name).glob("events.out.tfevents.*"))) == 1
        assert [s.value for s in read_tensorboard(out / name).Scalars("val/top1")] == [30.0, 60.0]


def test_csv_export(tmp_path):
    root = tmp_path / "runs"
    run = make_run(root)
    out = tmp_path / "csv"
    assert main(["--runs-dir", str(root), "export-log", "r1", "--format", "csv", "-o", str(out)]) == 0
    with open(out / "r1" / "scalars.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    got: dict[str, dict[int, float]] = {}
    for r in rows:
        got.setdefault(r["tag"], {})[int(r["step"])] = float(r["value"])
    assert got == expected_scalars(run)  # exact: CSV keeps the doubles
    with open(out / "r1" / "summary.csv", newline="") as f:
        summary = list(csv.DictReader(f))
    assert [(float(r["eval_top1"]), int(r["step"])) for r in summary] == [(30.0, 2), (60.0, 4)]
    with open(out / "r1" / "text.csv", newline="") as f:
        texts = list(csv.DictReader(f))
    images = [r["text"] for r in texts if r["tag"].startswith("attention/rollout/")]
    assert len(images) == 2
    for rel in images:
        with Image.open(out / "r1" / rel) as im:
            assert im.format == "PNG" and im.size == (PROBE_IMAGE[1], PROBE_IMAGE[0])
    hp = dict(csv.reader(open(out / "r1" / "hparams.csv")))
    assert hp["optim.lr"] == "0.0003" and hp["hparam/best_top1"] == "60.0"


def test_jsonl_export(tmp_path):
    root = tmp_path / "runs"
    run = make_run(root)
    out = tmp_path / "jl"
    assert main(["--runs-dir", str(root), "export-log", "r1", "--format", "jsonl", "-o", str(out)]) == 0
    records = [json.loads(line) for line in (out / "r1" / "log.jsonl").read_text().splitlines()]
    got: dict[str, dict[int, float]] = {}
    for r in records:
        if r["kind"] == "scalar":
            got.setdefault(r["tag"], {})[r["step"]] = r["value"]
    assert got == expected_scalars(run)
    images = [r for r in records if r["kind"] == "image"]
    assert len(images) == 2 and all((r["height"], r["width"]) == PROBE_IMAGE for r in images)
    assert Image.open(out / "r1" / images[0]["path"]).format == "PNG"
    (hp,) = [r for r in records if r["kind"] == "hparams"]
    assert hp["hparams"]["optim.lr"] == 3e-4 and hp["metrics"]["hparam/best_top1"] == 60.0
    assert {"kind": "text", "tag": "events/control", "step": 3, "wall_time": 103.2,
            "text": "set: lr_scale=0.5"} in records


@pytest.mark.parametrize("argv, message", [
    (["nope", "-o", "{out}"], "error: no run named 'nope'"),
    (["r1", "--format", "parquet", "-o", "{out}"], "error: unknown format 'parquet' (choose tensorboard, csv, jsonl)"),
    (["r1", "-o", "{file}"], "is a file, not a folder"),
])
def test_bad_input_one_line_exit_2(tmp_path, capsys, argv, message):
    root = tmp_path / "runs"
    make_run(root)
    (tmp_path / "f.txt").write_text("x")
    argv = [a.format(out=tmp_path / "out", file=tmp_path / "f.txt") for a in argv]
    assert main(["--runs-dir", str(root), "export-log", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_export_never_loads_torch(tmp_path):
    root = tmp_path / "runs"
    make_run(root)
    code = ("import sys; from vittui.cli import main; "
            f"rc = main(['--runs-dir', {str(root)!r}, 'export-log', 'r1', '-o', {str(tmp_path / 'tb')!r}]); "
            "print(rc, 'torch' in sys.modules, 'tensorboardX' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["0", "False", "True"]


def test_follow_picks_up_steps_written_after_it_started(tmp_path):
    root = tmp_path / "runs"
    run = RunDir(root / "live").create()
    save(Recipe(), run.recipe_path)
    run.write_status(RunStatus(state="running", step=0, total_steps=100, pid=os.getpid()))
    w = ev.EventWriter(run.events_path)
    w.write(ev.Step(step=1, epoch=0.1, loss=1.0, lr=0.1, grad_norm=1.0, images_per_s=1.0, data_time=0.0,
                    step_time=0.1))
    out = tmp_path / "jl"
    proc = subprocess.Popen([*vittui_cmd(), "--runs-dir", str(root), "export-log", "live", "--format", "jsonl",
                             "-o", str(out), "--follow", "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        log = out / "live" / "log.jsonl"

        def steps() -> set[int]:
            try:
                lines = log.read_text().splitlines()
            except FileNotFoundError:
                return set()
            return {json.loads(x)["step"] for x in lines if '"train/loss"' in x}

        wait_for(lambda: steps() == {1}, timeout=60, what="the step written before --follow started")
        for s in range(2, 6):  # written while it follows
            w.write(ev.Step(step=s, epoch=s / 10, loss=1.0 / s, lr=0.1, grad_norm=1.0, images_per_s=1.0,
                            data_time=0.0, step_time=0.1))
            time.sleep(0.05)
        w.write(ev.Eval(step=5, epoch=0.5, loss=0.5, top1=77.0, top5=99.0))
        wait_for(lambda: steps() == {1, 2, 3, 4, 5}, timeout=30, what="steps written after --follow started")
        assert proc.poll() is None  # still following: the run is live
        w.write(ev.Status(state="finished", step=5))
        w.write(ev.Finished(step=5, best_top1=77.0, wall_time=1.0))
        run.write_status(RunStatus(state="finished", step=5, total_steps=100))
        assert proc.wait(timeout=30) == 0  # the final state ends it
    finally:
        w.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    records = [json.loads(x) for x in log.read_text().splitlines()]
    assert [r["text"] for r in records if r.get("tag") == "events/status"] == ["finished"]
    (hp,) = [r for r in records if r["kind"] == "hparams"]
    assert hp["metrics"]["hparam/best_top1"] == 77.0 and hp["step"] == 5


def make_redone_run(root: Path, name: str = "re") -> RunDir:
    """Steps 1-6 and evals at 4 and 6; a worker killed then resumed from the checkpoint at 4 redoes 5-8;
    the divergence guard rewinds from 9 to the checkpoint at 7 and 8-10 are redone. Each pass its own
    losses (10 + s, 20 + s, 30 + s) and top-1s, so a superseded value is told apart from its redo."""
    run = RunDir(root / name).create()
    save(Recipe().with_overrides(["run.name=" + name]), run.recipe_path)
    run.write_status(RunStatus(state="finished", step=10, total_steps=10, pid=os.getpid()))
    t = iter(range(1000, 2000))

    def started(resumed):
        return ev.RunStarted(name=name, model="vit", params_total=10, params_trainable=10, num_classes=2,
                             classes=["a", "b"], train_size=8, val_size=4, steps_per_epoch=2, total_steps=10,
                             device="cpu", resumed_from_step=resumed, t=float(next(t)))

    def step(s, base):
        return ev.Step(step=s, epoch=s / 2, loss=base + s, lr=1e-3, grad_norm=1.0, images_per_s=1.0,
                       data_time=0.0, step_time=0.1, t=float(next(t)))

    def evaluate(s, top1):
        return ev.Eval(step=s, epoch=s / 2, loss=1.0, top1=top1, top5=100.0, t=float(next(t)))

    evs: list[ev.Event] = [started(0), *(step(s, 10) for s in range(1, 5)), evaluate(4, 40.0), step(5, 10),
                           step(6, 10), evaluate(6, 60.0),
                           started(4), *(step(s, 20) for s in range(5, 7)), evaluate(6, 66.0), step(7, 20),
                           step(8, 20), evaluate(8, 88.0),
                           ev.Rewound(step=9, to_step=7, lr_multiplier=0.5, reason="loss is nan at step 9",
                                      t=float(next(t))),
                           *(step(s, 30) for s in range(8, 11)), evaluate(10, 99.0),
                           ev.Finished(step=10, best_top1=99.0, wall_time=1.0, t=float(next(t)))]
    _write(run, evs)
    return run


REDONE_LOSS = {**{s: 10.0 + s for s in range(1, 5)}, **{s: 20.0 + s for s in range(5, 8)},
               **{s: 30.0 + s for s in range(8, 11)}}
REDONE_TOP1 = {4: 40.0, 6: 66.0, 10: 99.0}


def test_redone_steps_replace_what_they_redo_in_every_format(tmp_path):
    """The fold's rule, as the dashboard shows the run: one value per step, the last pass's."""
    root = tmp_path / "runs"
    make_redone_run(root)
    for fmt in ("tensorboard", "csv", "jsonl"):
        assert main(["--runs-dir", str(root), "export-log", "re", "--format", fmt, "-o", str(tmp_path / fmt)]) == 0
    acc = read_tensorboard(tmp_path / "tensorboard" / "re")  # TensorBoard's own reader hides the orphans
    assert {s.step: s.value for s in acc.Scalars("train/loss")} == REDONE_LOSS
    assert [s.step for s in acc.Scalars("train/loss")] == list(range(1, 11))
    assert {s.step: s.value for s in acc.Scalars("val/top1")} == REDONE_TOP1
    rewinds = [e.tensor_proto.string_val[0].decode() for e in acc.Tensors("events/rewind/text_summary")]
    assert rewinds == ["rewound from step 9 to 7, lr multiplier 0.5: loss is nan at step 9"]

    with open(tmp_path / "csv" / "re" / "scalars.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f)]
    for tag, want in (("train/loss", REDONE_LOSS), ("val/top1", REDONE_TOP1)):
        got = [(int(r["step"]), float(r["value"])) for r in rows if r["tag"] == tag]
        assert got == sorted(want.items()), tag  # each step once, in order, the redone value
    with open(tmp_path / "csv" / "re" / "text.csv", newline="") as f:
        texts = list(csv.DictReader(f))
    assert any(r["tag"] == "recipe" and "[optim]" in r["text"] for r in texts)  # a multi-line cell survives
    assert [(r["step"], r["tag"]) for r in texts if r["tag"] == "events/rewind"] == [("7", "events/rewind")]

    records = [json.loads(line) for line in (tmp_path / "jsonl" / "re" / "log.jsonl").read_text().splitlines()]
    for tag, want in (("train/loss", REDONE_LOSS), ("val/top1", REDONE_TOP1)):
        got = [(r["step"], r["value"]) for r in records if r.get("tag") == tag and r["kind"] == "scalar"]
        assert got == sorted(want.items()), tag

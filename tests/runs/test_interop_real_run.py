"""On a real short training run (`vittui train`, the tiny recipe): its events replayed through the
summary.csv component give one row per Eval event; export-log turns its real probes into PNG heat maps and
its scalars round-trip through TensorBoard's reader; `vittui eval --json` prints the report."""

from __future__ import annotations

import csv
import json
import math
import subprocess

import pytest

from tiny import TINY, tiny_toml, vittui_cmd
from vittui.runs import events as ev
from vittui.runs.store import RunDir
from vittui.runs.summary_csv import COLUMNS, SummaryCsv


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    recipe = tiny_toml(root / "tiny.toml", TINY + ["run.eval_every=4", "run.probe_every=4"])
    subprocess.run([*vittui_cmd(), "--runs-dir", str(root / "runs"), "train", str(recipe), "--name", "real"],
                   check=True, capture_output=True, timeout=300)
    return RunDir(root / "runs" / "real")


def test_summary_csv_rows_equal_the_eval_events(real_run, tmp_path):
    events = ev.read_all(real_run.events_path)
    evals = [e for e in events if isinstance(e, ev.Eval)]
    assert len(evals) >= 3
    out = tmp_path / "summary.csv"
    SummaryCsv(out).feed_all(events)  # as the worker's emitter feeds it, one event at a time
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    assert len(rows) == len(evals)
    losses: list[float] = []
    last_lr = None
    expected_train = []
    for e in events:
        if isinstance(e, ev.Step):
            losses.append(e.loss)
            last_lr = e.lr
        elif isinstance(e, ev.Eval):
            expected_train.append((sum(losses) / len(losses) if losses else None, last_lr))
            losses = []
    for row, e, (train_loss, lr) in zip(rows, evals, expected_train):
        assert (int(row["step"]), float(row["epoch"]), float(row["eval_loss"]), float(row["eval_top1"]),
                float(row["eval_top5"])) == (e.step, e.epoch, e.loss, e.top1, e.top5)
        if train_loss is None:  # two evaluations at one step (eval_every and the epoch's end): no steps between
            assert row["train_loss"] == ""
        else:
            assert math.isclose(float(row["train_loss"]), train_loss)
        assert float(row["lr"]) == lr
        assert row["eval_ema_top1"] == ""
    # a resumed worker opening the same file keeps its rows; a resume to the first eval drops the rest
    again = SummaryCsv(out)
    again.feed(ev.RunStarted(name="real", model="m", params_total=1, params_trainable=1, num_classes=10,
                             classes=[], train_size=1, val_size=1, steps_per_epoch=1, total_steps=1, device="cpu",
                             resumed_from_step=evals[0].step))
    assert [int(r["step"]) for r in csv.DictReader(open(out))] == [evals[0].step]


def test_export_of_a_real_run_round_trips(real_run, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from vittui.cli import main
    from runs.test_export_log import expected_scalars

    out = tmp_path / "tb"
    assert main(["export-log", str(real_run.path), "-o", str(out)]) == 0
    acc = EventAccumulator(str(out / "real"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    want = expected_scalars(real_run)
    assert {"train/loss", "val/top1", "grad_norm/attn/blocks.0"} <= set(want)
    for tag, by_step in want.items():
        got = {s.step: s.value for s in acc.Scalars(tag)}
        assert set(got) == set(by_step), tag
        assert all(math.isclose(got[s], v, rel_tol=1e-6, abs_tol=1e-12) for s, v in by_step.items()), tag
    probes = [e for e in ev.read_all(real_run.events_path) if isinstance(e, ev.AttentionProbe)]
    images = acc.Tags()["images"]
    assert probes and images
    for tag in images:
        shots = acc.Images(tag)
        assert [s.step for s in shots] == [p.step for p in probes]
        for s in shots:
            assert (s.height, s.width) == (16, 16)  # the tiny recipe's 16 px probe images


def test_eval_json(real_run):
    out = subprocess.run([*vittui_cmd(), "eval", str(real_run.path), "--no-robustness", "--json"],
                         check=True, capture_output=True, text=True, timeout=300).stdout
    d = json.loads(out)
    assert d["run"] == "real" and d["checkpoint"] and isinstance(d["ema"], bool)
    assert d["report"] == json.loads(real_run.report_path.read_text())


def test_the_worker_writes_summary_csv_as_it_trains(real_run, tmp_path):
    """The run's own summary.csv (written by the worker's emitter) equals the events replayed by hand."""
    assert real_run.summary_csv_path.exists()
    replayed = tmp_path / "replayed.csv"
    SummaryCsv(replayed).feed_all(ev.read_all(real_run.events_path))
    assert real_run.summary_csv_path.read_text() == replayed.read_text()
    evals = [e for e in ev.read_all(real_run.events_path) if isinstance(e, ev.Eval)]
    rows = list(csv.DictReader(open(real_run.summary_csv_path, newline="")))
    assert [(int(r["step"]), float(r["eval_top1"])) for r in rows] == [(e.step, e.top1) for e in evals]

"""A corrupt image inside the validation folder: skipped and counted, never fatal, in training and in
`vittui eval` (through the installed command)."""

from __future__ import annotations

import json

from tiny import TINY_AUGMENT, TINY_MODEL, events, status, tiny_toml, write_digit_folder

from vittui.runs import events as ev

VAL_PER_CLASS = 4


def test_a_corrupt_val_image_is_skipped_and_counted_in_training_and_in_eval(cli, tmp_path):
    data = tmp_path / "digits"
    write_digit_folder(data / "train", [0, 1, 2], 20)
    write_digit_folder(data / "val", [0, 1, 2], VAL_PER_CLASS, start=30)
    bad = data / "val" / "1" / "002.png"
    bad.write_bytes(bad.read_bytes()[:40])  # a PNG cut off inside its header chunk
    recipe = tiny_toml(tmp_path / "cv.toml", TINY_MODEL + TINY_AUGMENT + [
        "data.source=imagefolder", f"data.path={data}", "data.batch_size=8", "schedule.epochs=2",
        "schedule.warmup_epochs=0", "compute.threads=1", "run.seed=1"])

    p = cli("train", str(recipe), "--name", "cv", timeout=300)
    run = cli.root / "cv"
    assert status(run)["state"] == "finished", p.stdout + p.stderr
    history = events(run)
    evals = [e for e in history if isinstance(e, ev.Eval)]
    assert [e.step for e in evals] == [7, 14]  # 60 images / batch 8 (drop_last) = 7 steps an epoch
    # the skip is counted once for the run, however many evaluations met it
    skips = [e for e in history if isinstance(e, ev.DataSkipped)]
    assert [(e.count, e.examples) for e in skips] == [(1, [str(bad)])]
    assert any(isinstance(e, ev.Log) and e.level == "warning" and str(bad) in e.message for e in history)
    # every evaluation ran over the 11 readable images: top-1 is a whole number of images out of 11
    readable = 3 * VAL_PER_CLASS - 1
    for e in evals:
        hits = e.top1 * readable / 100
        assert abs(hits - round(hits)) < 1e-9, (e.top1, "not k/11: the corrupt image was counted")

    p = cli("eval", "cv", "--checkpoint", "last", timeout=300)
    assert "unreadable images skipped | 1" in p.stdout
    assert str(bad) in p.stderr  # named where a person sees it
    report = json.loads((run / "report.json").read_text())
    assert (report["n"], report["skipped"]) == (readable, 1)
    assert [sum(row) for row in report["confusion"]] == [VAL_PER_CLASS, VAL_PER_CLASS - 1, VAL_PER_CLASS]
    # the same checkpoint, the same images: eval's numbers are the training loop's last evaluation
    assert abs(100 * report["top1"] - evals[-1].top1) < 1e-9
    assert abs(report["loss"] - evals[-1].loss) < 1e-5
    assert report["robustness"] and all(r["top1"] is not None for r in report["robustness"])

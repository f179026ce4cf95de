import json
from pathlib import Path

import numpy as np
import pytest

from vittui.cli import main
from vittui.runs import events as ev


@pytest.fixture(scope="module")
def eval_report(run_a, runs_root):
    """`vittui eval` on run a (no corruption sweep): the report predict must agree with."""
    assert main(["--runs-dir", str(runs_root), "eval", "a", "--no-robustness"]) == 0
    return json.loads((run_a / "report.json").read_text())


def test_predict_folder_gives_the_top1_of_the_evaluation(run_a, runs_root, val_images, eval_report, capsys):
    folder, labels = val_images
    capsys.readouterr()
    assert main(["--runs-dir", str(runs_root), "predict", "a", str(folder), "--json", "--top-k", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    preds = out["predictions"]
    assert len(preds) == len(labels) == eval_report["n"] and out["skipped"] == []
    assert [Path(p["image"]).name for p in preds] == [f"{i:04d}.png" for i in range(len(labels))]
    top1 = np.array([p["predictions"][0]["index"] for p in preds])
    acc = float((top1 == np.array(labels)).mean())
    assert acc == pytest.approx(eval_report["top1"], abs=1e-12)
    # the same predictions, not only the same count: predicted-class totals are the confusion's columns
    confusion = np.array(eval_report["confusion"])
    assert np.bincount(top1, minlength=10).tolist() == confusion.sum(axis=0).tolist()
    per_true = np.zeros_like(confusion)
    np.add.at(per_true, (np.array(labels), top1), 1)
    assert per_true.tolist() == confusion.tolist()
    # and the training loop's own evaluation of this checkpoint (percent)
    last_eval = [e for e in ev.read_all(run_a / "events.jsonl") if isinstance(e, ev.Eval)][-1]
    assert 100 * acc == pytest.approx(last_eval.top1)
    for p in preds:
        probs = [c["prob"] for c in p["predictions"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
        assert p["predictions"][0]["class"] == str(p["predictions"][0]["index"])  # digits: classes "0".."9"


def test_unreadable_files_are_reported_and_skipped(run_a, runs_root, val_images, tmp_path, capsys):
    folder, labels = val_images
    mixed = tmp_path / "mixed"
    (mixed / "nested").mkdir(parents=True)
    good = sorted(folder.glob("*.png"))[:3]
    for i, f in enumerate(good):
        (mixed / ("nested" if i else "") / f.name).write_bytes(f.read_bytes())
    (mixed / "broken.png").write_bytes(b"not an image at all")
    (mixed / "truncated.png").write_bytes(good[0].read_bytes()[:40])
    (mixed / "notes.txt").write_text("not an image file: ignored")
    capsys.readouterr()
    rc = main(["--runs-dir", str(runs_root), "predict", "a", str(mixed), "--json", "--batch-size", "2",
               "--progress"])
    captured = capsys.readouterr()
    assert rc == 0
    out = json.loads(captured.out)
    assert sorted(Path(p["image"]).name for p in out["predictions"]) == sorted(f.name for f in good)
    assert sorted(Path(s["image"]).name for s in out["skipped"]) == ["broken.png", "truncated.png"]
    assert "skipped" in captured.err and "broken.png" in captured.err and "truncated.png" in captured.err
    assert "5/5" in captured.err  # the progress bar went over the five image files
    assert "3 images predicted" in captured.err and "2 unreadable skipped" in captured.err


def test_text_output_single_files_and_checkpoint_choice(run_a, runs_root, val_images, capsys):
    folder, _ = val_images
    files = [str(p) for p in sorted(folder.glob("*.png"))[:2]]
    capsys.readouterr()
    assert main(["--runs-dir", str(runs_root), "predict", "a", *files, "--checkpoint", "last", "--top-k", "50"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2
    for line, f in zip(lines, files):
        assert line.startswith(f)
        assert line.count("%") == 10  # --top-k above the class count shows every class once


def test_bad_input(run_a, runs_root, tmp_path, capsys):
    assert main(["--runs-dir", str(runs_root), "predict", "a", str(tmp_path / "missing.png")]) == 2
    (tmp_path / "empty").mkdir()
    assert main(["--runs-dir", str(runs_root), "predict", "a", str(tmp_path / "empty")]) == 2
    assert main(["--runs-dir", str(runs_root), "predict", "a", str(tmp_path), "--top-k", "0"]) == 2
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "x.jpg").write_bytes(b"\xff\xd8 broken")
    assert main(["--runs-dir", str(runs_root), "predict", "a", str(only_bad)]) == 1
    assert "x.jpg" in capsys.readouterr().err

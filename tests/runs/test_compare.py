import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fake_events import AFTER, BEFORE, fake_run, started, step

from vittui.cli import main
from vittui.runs.compare import compare_runs, format_table, read_run
from vittui.runs import events as ev
from vittui.runs.store import RunDir, RunStatus


def test_compare_reports_exactly_the_differing_fields(run_a, run_b):
    cmp = compare_runs([run_a, run_b])
    assert cmp.names == ["a", "b"]
    assert cmp.differing_fields == {"optim.lr": [1e-3, 2e-3], "regularize.label_smoothing": [0.1, 0.0]}


def test_compare_metrics_and_curves_come_from_the_events(run_a, run_b):
    cmp = compare_runs([run_a, run_b])
    for run, metrics, curves in zip((run_a, run_b), cmp.runs, cmp.curves):
        events = ev.read_all(Path(run) / "events.jsonl")
        evals = [e for e in events if isinstance(e, ev.Eval)]
        steps = [e for e in events if isinstance(e, ev.Step)]
        assert metrics.best_top1 == max(e.top1 for e in evals)
        assert metrics.last_top1 == evals[-1].top1 and metrics.last_loss == evals[-1].loss
        assert metrics.best_top1 == RunDir(run).read_status().best_top1
        assert metrics.state == "finished" and metrics.steps == 4 == metrics.total_steps
        assert curves.train_step == [1, 2, 3, 4] == [e.step for e in steps]
        assert curves.train_loss == [e.loss for e in steps]
        assert curves.val_top1 == [e.top1 for e in evals] and curves.val_step == [4]
        assert curves.train_time == sorted(curves.train_time) and curves.train_time[0] >= 0
        assert all(0 < e <= 1 for e in curves.train_epoch)
        assert metrics.last_train_loss == steps[-1].loss


def best_eval(run) -> dict:
    """The run's best validation top-1, read straight from its events.jsonl (not through compare)."""
    evals = [json.loads(line) for line in (Path(run) / "events.jsonl").read_text().splitlines()
             if json.loads(line).get("type") == "eval"]
    assert evals, f"no eval events in {run}"
    return max(evals, key=lambda e: e["top1"])


def test_compare_table_cli_in_process(run_a, run_b, trained_root, capsys):
    assert main(["--runs-dir", str(trained_root), "compare", "a", "b"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["a", "b"]
    sep = next(i for i, line in enumerate(lines) if line.startswith("---"))
    fields = [line.split()[0] for line in lines[1:sep]]
    assert fields == ["optim.lr", "regularize.label_smoothing"]
    assert lines[1].split()[1:] == ["0.001", "0.002"]
    assert lines[2].split()[1:] == ["0.1", "0"]
    best = next(line for line in lines if line.startswith("best val top-1"))
    a, b = best_eval(run_a), best_eval(run_b)
    assert f"{a['top1']:.2f} @{a['step']}" in best and f"{b['top1']:.2f} @{b['step']}" in best
    assert best.index(f"{a['top1']:.2f} @") < best.rindex(f"{b['top1']:.2f} @")  # in the order asked for
    assert "state" in out and out.count("finished") == 2


def test_compare_as_a_real_subprocess_json(run_a, run_b, trained_root):
    exe = [sys.executable, "-m", "vittui.cli"]
    proc = subprocess.run(exe + ["--runs-dir", str(trained_root), "compare", "a", str(run_b), "--json"],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["differing_fields"] == {"optim.lr": [0.001, 0.002], "regularize.label_smoothing": [0.1, 0.0]}
    assert [r["name"] for r in data["runs"]] == ["a", "b"]
    assert data["runs"][0]["best_top1"] == best_eval(run_a)["top1"]
    assert data["runs"][1]["best_top1"] == best_eval(run_b)["top1"]
    assert data["curves"][1]["train_step"] == [1, 2, 3, 4]


def test_compare_is_pure(run_a, run_b):
    """The dashboard calls it in its own process: no torch, no Textual."""
    code = ("import sys; from vittui.runs.compare import compare_runs; "
            f"c = compare_runs([{str(run_a)!r}, {str(run_b)!r}]); assert c.differing_fields; "
            "bad = [m for m in ('torch', 'textual', 'timm') if m in sys.modules]; assert not bad, bad")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_compare_bad_input_exit_2(run_a, trained_root, capsys):
    assert main(["--runs-dir", str(trained_root), "compare", "a"]) == 2
    assert main(["--runs-dir", str(trained_root), "compare", "a", "no-such-run"]) == 2
    assert "no-such-run" in capsys.readouterr().err


def test_identical_recipes_say_so(run_a, trained_root):
    cmp = compare_runs([run_a, run_a])
    assert cmp.differing_fields == {}
    assert "identical" in format_table(cmp)


def test_resumed_history_keeps_the_steps_as_they_finally_went(tmp_path):
    m, c, _ = read_run(fake_run(tmp_path, BEFORE + AFTER).path)  # resumed from step 2 after reaching 4
    assert c.train_step == [1, 2, 3, 4, 5, 6]
    assert c.train_loss == [9.0, 8.0, 5.0, 4.0, 3.0, 2.0]
    assert c.val_step == [2, 4, 6] and c.val_top1 == [40.0, 60.0, 70.0]
    assert c.train_time[0] == pytest.approx(1.0) and c.train_time[-1] == pytest.approx(104.0)
    assert m.best.top1 == 70.0 and m.best.step == 6  # the lost 90% is not the best any more
    assert m.last.top1 == 70.0 and m.best_loss == pytest.approx(1 / 70.0)
    assert m.wall_time == 9.0 and m.steps == 6 and m.total_steps == 8


def test_status_fallback_without_eval_events(tmp_path):
    run = fake_run(tmp_path, [started(), step(1, 2.0, 1.0)])
    path = run.path
    run.write_status(RunStatus(state="finished", step=1, best_top1=55.0, last_top1=50.0))
    m, _, _ = read_run(path)
    assert m.best_top1 == 55.0 and m.last_top1 == 50.0


def test_not_a_run(tmp_path):
    with pytest.raises(FileNotFoundError):
        compare_runs([tmp_path, tmp_path])

"""`--json` on the listings: one JSON document on stdout in the shape the README's "JSON output" lists."""

from __future__ import annotations

import json

from vittui.cli import main
from vittui.recipe import Recipe, save
from vittui.runs.store import RunDir, RunStatus

RUN_KEYS = {"name", "path", "state", "step", "total_steps", "epoch", "best_top1", "last_top1", "model", "updated",
            "queue_position", "executor", "job_id", "job_state"}


def test_runs_json(tmp_path, capsys):
    assert main(["--runs-dir", str(tmp_path), "runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    run = RunDir(tmp_path / "a").create()
    save(Recipe(), run.recipe_path)
    run.write_status(RunStatus(state="finished", step=8, total_steps=8, epoch=2.0, best_top1=71.5,
                               last_top1=float("nan")))
    assert main(["--runs-dir", str(tmp_path), "runs", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert set(row) == RUN_KEYS
    assert (row["name"], row["state"], row["step"], row["best_top1"], row["last_top1"]) == ("a", "finished", 8, 71.5, None)
    assert row["model"] == Recipe().model.name and row["path"] == str(tmp_path / "a")
    assert (row["executor"], row["job_id"], row["job_state"]) == ("local", None, None)


def test_queue_json(tmp_path, capsys, monkeypatch):
    from vittui.runs import queue

    assert main(["--runs-dir", str(tmp_path), "queue", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"scheduler_alive": False, "runs": []}
    monkeypatch.setattr(queue, "ensure_scheduler", lambda root: None)  # no scheduler process: the run stays queued
    queue.enqueue(Recipe(), tmp_path, "q", estimate_bytes=5 << 20)
    assert main(["--runs-dir", str(tmp_path), "queue", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["runs"]
    assert row == {"position": 1, "name": "q", "state": "queued", "model": Recipe().model.name,
                   "estimate_bytes": 5 << 20, "gpus": 0, "gpu_ids": [], "resume": False, "pid": None,
                   "message": "waiting in the queue", "executor": "local", "job_id": None, "job_state": None}
    assert main(["--runs-dir", str(tmp_path), "runs", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["queue_position"] == 1


def test_estimate_json(capsys):
    assert main(["estimate", "demo-digits", "--gpu-mem", "24GB", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"preset", "model", "batch_size", "precision", "img_size", "tokens", "gpu_free_bytes", "weights",
            "gradients", "optimizer", "ema", "activations", "recompute", "workspace", "peak", "fits",
            "total_params", "trainable_params", "forward_flops", "step_flops", "relative_step_time",
            "notes"} == set(d)
    assert d["gpu_free_bytes"] == 24 << 30 and d["fits"] is True and d["peak"] > d["weights"] > 0


def test_select_json(capsys):
    assert main(["select", "--images", "5000", "--classes", "10", "--top", "2", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert [r["rank"] for r in recs] == [1, 2]
    assert set(recs[0]) == {"rank", "model", "key", "source", "strategy", "score", "params", "resolution",
                            "imagenet_top1", "peak_bytes", "latency_ms", "reasons"}
    assert main(["select", "--images", "5000", "--classes", "10", "--gpu-mem", "0.01GB", "--json"]) == 1
    assert json.loads(capsys.readouterr().out) == []

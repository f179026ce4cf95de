"""The runs folder as every reader sees it: run_state's table of cases, scan_runs, resolve_run."""

import json
import os
import subprocess
import sys

import pytest

from vittui.recipe import Recipe, save
from vittui.runs import lock
from vittui.runs.registry import is_live, resolve_run, run_state, scan_runs
from vittui.runs.store import RunDir, RunStatus


@pytest.fixture(scope="module")
def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _run(root, name="r") -> RunDir:
    run = RunDir(root / name).create()
    save(Recipe(), run.recipe_path)
    return run


ME = "me"  # this test process: alive
DEAD = "dead"


@pytest.mark.parametrize("status, pid, lock_holder, expected", [
    # no status.json: a live worker behind the lock has not written it yet; nothing behind it: lost
    (None, None, None, "lost"),
    (None, None, ME, "starting"),
    (None, None, DEAD, "lost"),
    ("garbage", None, None, "lost"),  # unreadable counts as missing
    ("garbage", None, ME, "starting"),
    # a live state is believed while the lock's holder or the pid it names is alive
    ("running", ME, None, "running"),
    ("running", 0, ME, "running"),
    ("running", DEAD, ME, "running"),
    ("running", DEAD, None, "lost"),
    ("running", DEAD, DEAD, "lost"),
    ("starting", 0, None, "lost"),
    ("starting", ME, None, "starting"),
    ("paused", DEAD, None, "lost"),
    ("paused", ME, None, "paused"),
    ("stopping", 0, None, "lost"),
    # an ended state is what it says, whoever is alive
    ("finished", 0, None, "finished"),
    ("stopped", DEAD, None, "stopped"),
    ("failed", ME, ME, "failed"),
])
def test_run_state_table(tmp_path, dead_pid, status, pid, lock_holder, expected):
    run = _run(tmp_path)
    pids = {ME: os.getpid(), DEAD: dead_pid, None: 0, 0: 0}
    if status == "garbage":
        run.status_path.write_text("{not json")
    elif status is not None:
        run.write_status(RunStatus(state=status, pid=pids[pid]))
    if lock_holder == ME:
        lock.acquire(run.lock_path)
    elif lock_holder == DEAD:
        run.lock_path.write_text(json.dumps({"pid": dead_pid, "start_time": 1.0}))
    try:
        assert run_state(run) == expected
    finally:
        lock.release(run.lock_path)


def test_is_live():
    assert [s for s in ("starting", "running", "paused", "stopping", "stopped", "finished", "failed", "lost", None)
            if is_live(s)] == ["starting", "running", "paused", "stopping"]


def test_scan_runs_oldest_first_with_their_numbers(tmp_path):
    a = _run(tmp_path, "a")
    a.write_status(RunStatus(state="finished", step=10, total_steps=10, best_top1=55.0, last_top1=50.0))
    b = _run(tmp_path, "b")
    os.utime(a.recipe_path, (1, 1))  # a's recipe written first
    b.recipe_path.write_text("[broken")  # a broken recipe does not hide the run
    (tmp_path / "not-a-run").mkdir()
    rows = scan_runs(tmp_path)
    assert [r.name for r in rows] == ["a", "b"]
    assert (rows[0].state, rows[0].step, rows[0].total_steps, rows[0].best_top1, rows[0].last_top1) == \
        ("finished", 10, 10, 55.0, 50.0)
    assert rows[0].model == Recipe().model.name and rows[0].updated_text != "-"
    assert rows[1].model == "?" and rows[1].state == "lost" and rows[1].updated_text == "-"
    assert scan_runs(tmp_path / "missing") == []


def test_resolve_run_by_name_or_path(tmp_path, monkeypatch):
    run = _run(tmp_path / "runs", "alpha")
    assert resolve_run("alpha", tmp_path / "runs").path == run.path
    assert resolve_run(run.path, tmp_path / "elsewhere").path == run.path
    monkeypatch.chdir(tmp_path)
    assert resolve_run("runs/alpha", "nowhere").path.resolve() == run.path.resolve()
    with pytest.raises(FileNotFoundError, match="no run named 'beta'"):
        resolve_run("beta", tmp_path / "runs")


def test_model_name_reads_the_model_table_in_any_layout_and_sees_a_rewrite(tmp_path):
    """The runs list reads only `model.name` (no validation); what it says must match a full parse."""
    import tomllib

    from vittui.recipe import load_preset
    from vittui.runs.registry import model_name

    run = RunDir(tmp_path / "r").create()
    layouts = {
        "saved": None,  # as recipe.save writes it
        '[data]\nname = "not-this"\n[model]\nsource = "timm"\nname = "a/b" # a comment\n': "a/b",
        'model.name = "dotted"\n': "dotted",
        '[model]\nsource = "timm"\n\n[data]\nbatch_size = 8\n': Recipe().model.name,  # no name: the default
        '[model]\nsource = "timm"\n[data]\nname = "not-this"\n': Recipe().model.name,  # another table's name
        "[broken": "?",
    }
    for text, expected in layouts.items():
        if text == "saved":
            save(load_preset("deit-tiny-scratch"), run.recipe_path)
            expected = tomllib.loads(run.recipe_path.read_text())["model"]["name"]
        else:
            run.recipe_path.write_text(text)
        assert model_name(run) == expected, text
        assert model_name(run) == expected  # the remembered answer is the same

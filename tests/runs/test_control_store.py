import json
import os
import subprocess
import sys

import pytest

from vittui.recipe import Recipe
from vittui.runs import control, launcher, lock, registry
from vittui.runs.store import RunDir, RunStatus, new_run_name


def test_run_directory_is_owner_only(tmp_path):
    run = launcher.prepare_run(Recipe(), tmp_path / "runs", "r1")
    assert os.stat(run.path).st_mode & 0o777 == 0o700
    for f in (run.recipe_path, run.status_path, run.events_path, run.commands_path):
        assert os.stat(f).st_mode & 0o777 == 0o600, f
    control.send(run.path, "pause")
    assert os.stat(run.commands_path).st_mode & 0o777 == 0o600


def test_run_names_do_not_collide(tmp_path):
    a = launcher.prepare_run(Recipe(), tmp_path, "x")
    b = launcher.prepare_run(Recipe(), tmp_path, "x")
    assert (a.name, b.name) == ("x", "x-2")
    assert new_run_name(tmp_path, "a/b c") == "a-b-c"


def test_commands_are_read_once_and_torn_lines_wait(tmp_path):
    run = RunDir(tmp_path / "r").create()
    reader = control.CommandReader(run.commands_path)
    c1 = control.send(run.path, "pause")
    c2 = control.send(run.path, "set", lr_scale=0.5)
    assert [c.id for c in reader.poll()] == [c1.id, c2.id]
    assert reader.poll() == []
    with open(run.commands_path, "a") as f:
        f.write('{"command": "resume"')
    assert reader.poll() == []
    with open(run.commands_path, "a") as f:
        f.write(', "id": "x1"}\n')
    assert [c.command for c in reader.poll()] == ["resume"]


def test_acknowledged_commands_are_skipped(tmp_path):
    run = RunDir(tmp_path / "r").create()
    c1 = control.send(run.path, "pause")
    c2 = control.send(run.path, "resume")
    assert [c.id for c in control.CommandReader(run.commands_path, skip_ids={c1.id}).poll()] == [c2.id]


def test_bad_commands_are_refused():
    with pytest.raises(ValueError):
        control.validate("explode")
    with pytest.raises(ValueError):
        control.validate("set", {"momentum": 0.1})


def test_status_is_atomic_and_typed(tmp_path):
    run = RunDir(tmp_path / "r").create()
    run.write_status(RunStatus(state="running", step=5, pid=123))
    s = run.read_status()
    assert (s.state, s.step, s.pid) == ("running", 5, 123)
    assert not list(run.path.glob(".status.json.*"))


def test_lock_refuses_a_second_worker_and_clears_a_stale_one(tmp_path):
    path = tmp_path / "worker.lock"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        path.write_text(json.dumps({"pid": child.pid, "start_time": lock.process_start_time(child.pid)}))
        with pytest.raises(lock.RunLocked):
            lock.acquire(path)
        # same pid, different start time: pid reuse, the owner is gone
        path.write_text(json.dumps({"pid": child.pid, "start_time": 1.0}))
        lock.acquire(path)
        assert json.loads(path.read_text())["pid"] == os.getpid()
        lock.release(path)
        assert not path.exists()
    finally:
        child.kill()
        child.wait()
    path.write_text(json.dumps({"pid": child.pid, "start_time": 1.0}))  # dead process
    lock.acquire(path)
    lock.release(path)


def test_run_state_reports_lost_when_the_worker_is_gone(tmp_path):
    run = launcher.prepare_run(Recipe(), tmp_path, "r")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    run.write_status(RunStatus(state="running", pid=child.pid))
    assert registry.run_state(run) == "lost"
    run.write_status(RunStatus(state="running", pid=os.getpid()))
    assert registry.run_state(run) == "running"
    run.write_status(RunStatus(state="finished", pid=0))
    assert registry.run_state(run) == "finished"

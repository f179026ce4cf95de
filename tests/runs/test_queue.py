"""runs/queue.py: the queue's files and order, without a scheduler process (ensure_scheduler is stubbed) and
without a worker. The scheduler's admission is tests/test_scheduler.py; the whole thing is tests/e2e/test_queue.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tiny import tiny_recipe

from vittui.runs import queue
from vittui.runs.registry import run_state
from vittui.runs.store import RunDir, RunStatus


@pytest.fixture
def started(monkeypatch) -> list:
    """The runs folders ensure_scheduler was asked for (no scheduler process is started)."""
    calls: list = []
    monkeypatch.setattr(queue, "ensure_scheduler", lambda r: calls.append(r) or None)
    return calls


@pytest.fixture
def root(tmp_path, started):
    return tmp_path / "runs"


def names(runs) -> list[str]:
    return [r.name for r in runs]


def test_enqueue_writes_a_queued_run_with_its_facts_and_asks_for_a_scheduler(root, started):
    run = queue.enqueue(tiny_recipe(), root, "a", estimate_bytes=123, gpus=2, tags={"sweep": "s", "trial": 3})
    assert run.read_status().state == "queued"
    assert run_state(run) == "queued"  # not live, and not lost although no worker is behind it
    assert run.read_tags() == {"sweep": "s", "trial": "3"}
    entry = queue.read_entry(run)
    assert (entry.estimate_bytes, entry.gpus, entry.executor, entry.resume) == (123, 2, "local", False)
    assert run.recipe_path.exists()
    assert started == [root]
    assert queue.position(run) == 1


def test_tags_are_on_disk_before_the_state_says_queued(root, monkeypatch):
    seen = []
    real = RunDir.write_status

    def spy(self, status):
        if status.state == "queued":
            seen.append(self.read_tags())
        real(self, status)

    monkeypatch.setattr(RunDir, "write_status", spy)
    queue.enqueue(tiny_recipe(), root, "t", tags={"trial": "7"})
    assert seen == [{"trial": "7"}]


def test_the_line_is_first_in_first_out_and_top_moves_a_run_to_the_front(root):
    a, b, c = (queue.enqueue(tiny_recipe(), root, n) for n in "abc")
    assert names(queue.queued(root)) == ["a", "b", "c"]
    assert [queue.position(r) for r in (a, b, c)] == [1, 2, 3]
    queue.top(c)
    assert names(queue.queued(root)) == ["c", "a", "b"]
    d = queue.enqueue(tiny_recipe(), root, "d")  # a new run still goes to the end
    assert names(queue.queued(root)) == ["c", "a", "b", "d"]
    queue.top(b)
    assert [queue.position(r) for r in (a, b, c, d)] == [3, 1, 2, 4]


def test_remove_keeps_the_directory_and_marks_it_stopped(root):
    a, b = (queue.enqueue(tiny_recipe(), root, n) for n in "ab")
    queue.remove(a)
    assert names(queue.queued(root)) == ["b"]
    assert a.exists() and run_state(a) == "stopped"
    assert "removed from the queue" in a.read_status().message
    assert queue.position(a) is None
    with pytest.raises(queue.QueueError, match="a is stopped, not queued"):
        queue.remove(a)
    with pytest.raises(queue.QueueError, match="not queued"):
        queue.top(a)


def test_a_running_run_cannot_be_removed_or_moved(root):
    a = queue.enqueue(tiny_recipe(), root, "a")
    s = a.read_status()
    s.state, s.pid = "running", subprocess.os.getpid()  # a live pid: the run is someone's
    a.write_status(s)
    with pytest.raises(queue.QueueError, match="a is running, not queued .*ctl a stop"):
        queue.remove(a)
    with pytest.raises(queue.QueueError, match="running"):
        queue.top(a)


def test_requeue_takes_a_resumable_run_back_with_resume_and_its_estimate(root, started):
    a = queue.enqueue(tiny_recipe(), root, "a", estimate_bytes=99, gpus=1)
    b = queue.enqueue(tiny_recipe(), root, "b")
    with pytest.raises(queue.QueueError, match="already queued"):
        queue.requeue(a)
    s = a.read_status()
    s.state = "suspended"
    a.write_status(s)
    with pytest.raises(queue.QueueError, match="no checkpoint"):
        queue.requeue(a)
    (a.checkpoints / "step-5").mkdir()
    (a.checkpoints / "step-5" / "state.pt").write_bytes(b"x")
    queue.requeue(a)
    assert names(queue.queued(root)) == ["b", "a"]  # back at the end of the line
    entry = queue.read_entry(a)
    assert (entry.resume, entry.estimate_bytes, entry.gpus) == (True, 99, 1)
    assert run_state(a) == "queued"
    assert started == [root] * 3


def test_unknown_executor_is_refused_before_anything_is_written(root):
    with pytest.raises(queue.QueueError, match="unknown executor 'pbs'"):
        queue.enqueue(tiny_recipe(), root, "x", executor="pbs")
    assert not (root / "x").exists()


def test_a_slurm_run_is_queued_but_not_in_the_local_line(root, started):
    run = queue.enqueue(tiny_recipe(), root, "s", executor="slurm")
    assert run.read_status().state == "queued" and queue.read_entry(run).executor == "slurm"
    assert queue.queued(root) == [] and started == []


def test_stale_markers_are_not_in_line(root):
    a = queue.enqueue(tiny_recipe(), root, "a")
    a.write_status(RunStatus(state="finished"))
    (queue.waiting_dir(root) / "gone").touch()
    assert queue.queued(root) == []


def test_revive_with_nothing_queued_imports_no_psutil_and_starts_nothing(tmp_path):
    code = ("import sys; from vittui.runs.queue import revive; "
            f"r = revive({str(tmp_path / 'runs')!r}); print(r, 'psutil' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["None", "False"]


def test_scheduler_options_merge_into_config(tmp_path):
    queue.write_config(tmp_path, max_per_gpu=2, max_cpu_runs=None)
    queue.write_config(tmp_path, suspend_paused_after=5)
    assert json.loads(queue.config_path(tmp_path).read_text()) == {"max_per_gpu": 2, "suspend_paused_after": 5}

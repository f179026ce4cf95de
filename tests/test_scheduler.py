"""vittui/scheduler.py: admission, in process, against a fake NVML (the pynvml module replaced, read through
hardware.NvmlSource as in production) whose free memory per device the test changes; workers are faked
(the scheduler's `start` hook), so each pass is exact and instant. The real thing: tests/e2e/test_queue.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import types
from types import SimpleNamespace

import pytest
from tiny import tiny_recipe

from vittui.hardware import NvmlSource
from vittui.runs import control, queue
from vittui.runs.registry import run_state
from vittui.runs.store import RunDir
from vittui.scheduler import Scheduler, SchedulerConfig

GiB = 1 << 30


def fake_nvml(used: dict[int, int], total: int = 16 * GiB, present: bool = True):
    """pynvml with len(used) cards of `total` bytes; `used` is read at every call (the test changes it)."""
    m = types.ModuleType("pynvml")

    class NVMLError_LibraryNotFound(Exception):
        pass

    def init():
        if not present:
            raise NVMLError_LibraryNotFound()

    m.nvmlInit = init
    m.nvmlShutdown = lambda: None
    m.nvmlDeviceGetCount = lambda: len(used)
    m.nvmlDeviceGetHandleByIndex = lambda i: i
    m.nvmlDeviceGetName = lambda h: "Fake 16GB"
    m.nvmlDeviceGetMemoryInfo = lambda h: SimpleNamespace(used=used[h], total=total, free=total - used[h])
    for reading in ("UtilizationRates", "Temperature", "PowerUsage", "EnforcedPowerLimit"):
        setattr(m, f"nvmlDeviceGet{reading}", lambda *a: None)
    m.nvmlDeviceGetComputeRunningProcesses = lambda h: []
    m.nvmlDeviceGetGraphicsRunningProcesses = lambda h: []
    return m


class FakeProc:
    """What the scheduler keeps of a worker it started: a pid and poll() (None while it runs)."""

    def __init__(self):
        self.pid = os.getpid()  # a live pid, so readers see the run live
        self.rc = None

    def poll(self):
        return self.rc


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(queue, "ensure_scheduler", lambda r: None)  # the test is the scheduler
    return tmp_path / "runs"


def make(root, used, *, present=True, **config):
    starts: list[tuple[str, dict, bool]] = []
    procs: dict[str, FakeProc] = {}

    def start(run, *, resume, gpus, env):
        starts.append((run.name, env, resume))
        procs[run.name] = FakeProc()
        return procs[run.name]

    cfg = SchedulerConfig(**config)
    sched = Scheduler(root, cfg, gpu_source=NvmlSource(fake_nvml(used, present=present)), start=start,
                      log=lambda line: None)
    return sched, starts, procs


def finish(run: RunDir, proc: FakeProc) -> None:
    """The fake worker ends: status finished, its process gone."""
    s = run.read_status()
    s.state = "finished"
    run.write_status(s)
    proc.rc = 0


def q(root, name, est=None, gpus=0, *extra):
    return queue.enqueue(tiny_recipe(*extra), root, name, estimate_bytes=est, gpus=gpus)


def test_a_run_waits_while_gpu_memory_is_short_and_starts_when_it_frees(root):
    used = {0: 12 * GiB, 1: 12 * GiB}  # 4 GiB free on each card
    sched, starts, _ = make(root, used)
    a = q(root, "a", 6 * GiB)
    assert sched.tick() == [] and run_state(a) == "queued"
    used[0] = 10 * GiB  # 6 GiB free: not enough with the margin (0.5 GiB)
    assert sched.tick() == [] and queue.position(a) == 1
    used[1] = 2 * GiB  # 14 GiB free on card 1
    assert sched.tick() == ["a"]
    assert starts == [("a", {"CUDA_VISIBLE_DEVICES": "1"}, False)]
    assert a.read_status().state == "starting" and queue.read_entry(a).gpu_ids == [1]
    assert queue.queued(root) == []


def test_max_per_gpu_and_memory_not_yet_allocated_both_count(root):
    used = {0: 15 * GiB, 1: 2 * GiB}  # card 0 is full; card 1 has 14 GiB free
    sched, starts, _ = make(root, used, max_per_gpu=3)  # slots for all three: memory decides
    for n in "abc":
        q(root, n, 6 * GiB)
    # a and b fit on card 1 (6.5 + 6.5 <= 14) although NVML does not see a's memory yet; c does not
    assert sched.tick() == ["a", "b"]
    assert [env for _, env, _ in starts] == [{"CUDA_VISIBLE_DEVICES": "1"}] * 2
    assert queue.position(RunDir(root / "c")) == 1


def test_one_run_per_gpu_by_default(root):
    used = {0: 0}
    sched, starts, procs = make(root, used)
    a, b = q(root, "a", GiB), q(root, "b", GiB)
    assert sched.tick() == ["a"]
    assert sched.tick() == []  # plenty of memory, but the card already has a run
    finish(a, procs["a"])
    assert sched.tick() == ["b"]


def test_a_run_larger_than_the_card_is_refused_not_kept_waiting(root):
    used = {0: 0}
    sched, starts, _ = make(root, used)
    big, small = q(root, "big", 20 * GiB), q(root, "small", GiB)
    assert sched.tick() == ["small"]
    assert run_state(big) == "failed"
    assert "refused by the queue" in big.read_status().message and "16.0 GiB" in big.read_status().message
    assert [n for n, _, _ in starts] == ["small"]


def test_first_in_first_out_nothing_overtakes_a_waiting_head(root):
    used = {0: 12 * GiB}
    sched, starts, _ = make(root, used)
    q(root, "head", 6 * GiB)
    q(root, "small", GiB)  # would fit, but waits behind the head
    assert sched.tick() == [] and starts == []


def test_without_a_gpu_one_run_at_a_time_or_max_cpu_runs(root):
    sched, starts, procs = make(root, {}, present=False)
    a, b, c = q(root, "a"), q(root, "b"), q(root, "c")
    assert sched.tick() == ["a"]
    assert sched.tick() == []
    finish(a, procs["a"])
    assert sched.tick() == ["b"] and starts[-1][1] == {}
    sched.config.max_cpu_runs = 2
    assert sched.tick() == ["c"]


def test_a_cpu_recipe_on_a_gpu_box_takes_a_cpu_slot(root):
    sched, starts, _ = make(root, {0: 0})
    q(root, "cpu", GiB, 0, "compute.device=cpu")
    assert sched.tick() == ["cpu"] and starts[0][1] == {}


def test_a_claim_whose_scheduler_died_before_spawning_goes_back_in_line_and_starts_once(root):
    a = q(root, "a")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    s = a.read_status()
    s.state, s.pid = "starting", dead.pid  # what a scheduler killed between claim and spawn leaves
    a.write_status(s)
    assert run_state(a) == "lost"
    sched, starts, _ = make(root, {}, present=False)
    assert sched.tick() == ["a"]
    assert sched.tick() == []
    assert [n for n, _, _ in starts] == ["a"]


def test_a_claim_whose_worker_was_spawned_is_left_to_the_worker(root):
    a = q(root, "a")
    # stands in for the worker a killed scheduler spawned: its command line names the module and the run
    worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "vittui.train.worker",
                               str(a.path)])
    try:
        s = a.read_status()
        s.state, s.pid = "starting", 0  # the scheduler died before writing the worker's pid
        a.write_status(s)
        sched, starts, _ = make(root, {}, present=False)
        assert sched.tick() == [] and starts == []
        assert a.read_status().pid == worker.pid and run_state(a) == "starting"
        assert not (queue.waiting_dir(root) / "a").exists()
    finally:
        worker.kill()
        worker.wait()


def test_a_run_paused_too_long_while_others_wait_is_suspended_with_the_reason(root):
    held = q(root, "held")
    sched, starts, _ = make(root, {}, present=False, suspend_paused_after=1.0)
    assert sched.tick() == ["held"]
    waiting = q(root, "waiting")
    s = json.loads(held.status_path.read_text())
    s.update(state="paused", pid=os.getpid(), updated=time.time() - 30)  # paused half a minute: not yet
    held.status_path.write_text(json.dumps(s))
    assert sched.tick() == []
    assert held.commands_path.read_text() == ""
    s.update(updated=time.time() - 61)
    held.status_path.write_text(json.dumps(s))
    assert sched.tick() == []
    sent = control.CommandReader(held.commands_path).poll()
    assert [c.command for c in sent] == ["suspend"]
    assert "paused 1.0 min" in sent[0].args["reason"] and "1 queued run(s) wait" in sent[0].args["reason"]
    assert sched.tick() == [] and len(control.CommandReader(held.commands_path).poll()) == 1  # sent once
    assert queue.position(waiting) == 1


def test_a_worker_that_dies_before_starting_fails_the_run(root):
    a = q(root, "a")
    sched, starts, procs = make(root, {}, present=False)
    assert sched.tick() == ["a"]
    procs["a"].rc = 2  # exited without ever writing its status (status still names the scheduler's claim)
    sched.tick()
    assert run_state(a) == "failed" and "exited with code 2 before it started" in a.read_status().message


def test_a_run_frees_its_slot_when_its_status_ends_not_when_its_process_exits(root):
    """The next run's start-up (seconds of imports) overlaps the old process's teardown, never its training."""
    sched, starts, procs = make(root, {}, present=False)
    a, b = q(root, "a"), q(root, "b")
    assert sched.tick() == ["a"]
    s = a.read_status()
    s.state = "running"
    a.write_status(s)
    assert sched.tick() == []
    s.state = "finished"  # the Finished event is written; the process is still shutting down
    a.write_status(s)
    assert procs["a"].poll() is None
    assert sched.tick() == ["b"]
    procs["a"].rc = 0
    sched.tick()
    entry = queue.read_entry(a)
    assert entry.exit_code == 0 and entry.exited_at >= entry.started_at


def test_schedulers_started_together_leave_one_holding_the_folder(root):
    """Several `vittui` commands may each find no scheduler and start one: exactly one keeps running."""
    q(root, "a")
    stale = queue.scheduler_lock_path(root)
    stale.write_text(json.dumps({"pid": 999999, "start_time": 1.0}))  # a scheduler killed with -9
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    # the run waits behind a full CPU slot (max_cpu_runs=1 taken by a live run): each scheduler stays up
    holder = q(root, "holder")
    s = holder.read_status()
    s.state, s.pid = "running", os.getpid()
    holder.write_status(s)
    procs = [subprocess.Popen([sys.executable, "-m", "vittui.scheduler", str(root)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for _ in range(4)]
    try:
        from tiny import wait_for

        # the losers see the lock taken and exit 0 at once; the one holding it waits on the queue
        wait_for(lambda: sum(p.poll() is not None for p in procs) == 3, timeout=120, what="three to give up")
        alive = [p for p in procs if p.poll() is None]
        assert len(alive) == 1 and all(p.returncode == 0 for p in procs if p is not alive[0])
        assert json.loads(stale.read_text())["pid"] == alive[0].pid
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_a_run_queued_while_the_scheduler_decides_to_exit_is_not_left_waiting(root):
    """The enqueuer saw the scheduler alive and started none; the scheduler, exiting, looks once more."""
    from vittui.runs import lock

    sched, _, _ = make(root, {}, present=False)
    lock_path = queue.scheduler_lock_path(root)
    queue.waiting_dir(root).mkdir(parents=True)
    lock.acquire(lock_path)
    assert sched._hand_back(lock_path) is True and not lock_path.exists()  # nothing waits: it exits
    lock.acquire(lock_path)
    q(root, "late")
    assert sched._hand_back(lock_path) is False  # it stays, holding the lock again
    assert lock.read_lock(lock_path)["pid"] == os.getpid()
    lock.release(lock_path)

"""The queue's scheduler: `python -m vittui.scheduler RUNS_ROOT`, one per runs folder, started detached by
`runs/queue.py:ensure_scheduler`. It starts queued runs first in, first out when they fit, and exits when
nothing waits and none of the runs it started is live.

It sits above `runs` and `hardware` (admission needs NVML, which the run-directory floor may not import)
and below everything torch-bound: it starts workers as commands, like the launcher.

**Admission.** The head of the line starts when
  - CPU (no NVML GPU, or the recipe says compute.device = "cpu"): fewer than `max_cpu_runs` (default 1)
    live runs in the folder that hold no GPU;
  - GPU: `max(gpus, 1)` cards each with fewer than `max_per_gpu` (default 1) live vittui runs on it and
    NVML free memory ≥ the run's estimate + `margin_bytes` (free memory minus the estimates of runs this
    scheduler started that have not allocated yet). The run gets those cards through CUDA_VISIBLE_DEVICES.
A run whose estimate + margin is above the total memory of the cards it would need is refused: state
`failed` with the reason, never kept waiting. Strict FIFO: nothing overtakes a head that waits.
A run holds its slot while its status is live; once it says finished, suspended, stopped or failed the
next run may start while the old process still tears down (seconds of interpreter and torch shutdown on a
busy box): training never overlaps, and on a GPU the memory it still holds shows in NVML's free memory.

**Crash safety.** Before spawning, the run is claimed under the queue mutex: status `starting` naming this
scheduler's pid (readers see a live `starting`, not `lost`); after the spawn status names the worker's
pid and the waiting marker goes. A scheduler killed in between leaves a marker on a `starting` run whose
pid is dead: the next one (`recover`) looks for the worker (the run's lock holder, or a process whose
command line trains that run directory) and, only when there is none, puts the run back in line. A run
found `starting`/`running` with a live worker is the worker's, never started twice.

**Suspend when paused** (`suspend_paused_after`, minutes, off by default): while the head of the line
waits, a run holding the slot it needs that has been paused that long is sent `suspend` with the reason;
it checkpoints and exits, freeing the slot. It is not requeued by itself (`vittui ctl RUN resume` does).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from vittui.runs import lock, queue
from vittui.runs.launcher import spawn as spawn_detached
from vittui.runs.launcher import worker_command
from vittui.runs.registry import is_live, run_state
from vittui.runs.store import RunDir, RunStatus, list_runs

MIB = 1 << 20


@dataclass
class SchedulerConfig:
    max_per_gpu: int = 1
    max_cpu_runs: int = 1
    suspend_paused_after: float | None = None  # minutes; None = never
    margin_bytes: int = 512 * MIB  # allocator slack and the CUDA context beyond the estimate
    poll: float = 0.1  # seconds between passes: a finished run's slot is reused within about this
    rescan: float = 2.0  # seconds between full scans of the folder for runs this scheduler did not start

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SchedulerConfig":
        names = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in d.items() if k in names and v is not None})


@dataclass
class LiveRun:
    """A run with a worker behind it, as admission counts it."""

    run: RunDir
    state: str
    pid: int
    gpu_ids: list[int] = field(default_factory=list)


def find_worker_pid(run: RunDir) -> int | None:
    """A live process training `run` (its command line names the run directory and the worker module):
    how a restarted scheduler tells a worker its predecessor spawned from a claim it never acted on."""
    import psutil

    target = str(run.path.resolve())
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = p.info.get("cmdline") or []
        if "vittui.train.worker" in cmd and any(a == target or a == str(run.path) for a in cmd):
            return p.info["pid"]
    return None


class Scheduler:
    """One admission pass per `tick()`; `run()` loops until the queue is empty and its runs are done.

    `gpu_source` (hardware.GpuSource) and `start` (run, resume, gpus, env → Popen-like with .pid and
    .poll()) are injectable: tests admit against a fake NVML without starting workers."""

    def __init__(self, runs_root: str | Path, config: SchedulerConfig | None = None, *, gpu_source: Any = None,
                 start: Callable[..., Any] | None = None, log: Callable[[str], None] | None = None):
        self.root = Path(runs_root)
        self.fixed_config = config
        self.config = config or SchedulerConfig.from_dict(queue.read_config(self.root))
        self._gpu_source = gpu_source
        self._start = start or self._spawn_worker
        self.children: dict[str, Any] = {}  # run name -> Popen of the workers this scheduler started
        self.pending_bytes: dict[str, tuple[list[int], int]] = {}  # started, not yet running: cards, estimate
        self.suspend_sent: set[str] = set()
        self._others: list[LiveRun] = []
        self._devices: dict[str, str] = {}  # run name -> its recipe's compute.device
        self.wait_reason = ""  # why the head of the line waits (logged once per head)
        self._logged_wait = ""
        self._scanned = 0.0
        self.log = log or (lambda line: print(time.strftime("%H:%M:%S"), line, flush=True))

    # --- sources ------------------------------------------------------------------------------------------
    @property
    def gpu_source(self):
        if self._gpu_source is None:
            from vittui.hardware import NvmlSource

            self._gpu_source = NvmlSource()
        return self._gpu_source

    def _spawn_worker(self, run: RunDir, *, resume: bool, gpus: int, env: dict[str, str]):
        return spawn_detached(worker_command(run, resume=resume, gpus=gpus if gpus > 1 else 0), run, env)

    # --- the pass -----------------------------------------------------------------------------------------
    def tick(self) -> list[str]:
        """Recover stale claims, reap finished children, start what fits. Names of the runs started."""
        if self.fixed_config is None:
            self.config = SchedulerConfig.from_dict(queue.read_config(self.root))
        self.recover()
        self._reap()
        started = []
        while True:
            line = queue.queued(self.root)
            if not line:
                break
            head = line[0]
            verdict = self._admit(head)
            if verdict is None:  # waits: strict FIFO, nothing overtakes it
                if self._logged_wait != head.name:  # once per head, not every pass
                    self._logged_wait = head.name
                    self.log(f"{head.name}: waits for {self.wait_reason}")
                break
            if isinstance(verdict, str):
                self._refuse(head, verdict)
                continue
            if self._claim_and_start(head, verdict):
                started.append(head.name)
        return started

    def recover(self) -> None:
        """Markers of runs that are no longer waiting: a claim its scheduler never finished, a run deleted
        by hand or removed. Each goes back in line or off the list; nothing is started twice."""
        wd = queue.waiting_dir(self.root)
        try:
            names = os.listdir(wd)
        except FileNotFoundError:
            return
        for name in names:
            run = RunDir(self.root / name)
            marker = wd / name
            status = run.read_status()
            if not run.exists() or status is None:
                marker.unlink(missing_ok=True)
                continue
            if status.state == "queued" or name in self.children:
                continue
            if status.state == "starting":
                with queue.mutex(self.root):
                    status = run.read_status() or status
                    if status.state != "starting":
                        continue
                    if lock.lock_holder_alive(run.lock_path) or (status.pid and status.pid != os.getpid()
                                                                 and lock.pid_alive(status.pid)):
                        marker.unlink(missing_ok=True)  # the worker's now
                        continue
                    pid = find_worker_pid(run)
                    if pid is not None:
                        status.pid = pid
                        run.write_status(status)
                        marker.unlink(missing_ok=True)
                        self.log(f"{name}: found its worker (pid {pid}) started before a scheduler restart")
                        continue
                    status.state, status.message, status.pid = "queued", "back in line: its start was interrupted", 0
                    run.write_status(status)
                    self.log(f"{name}: claimed by a scheduler that died before starting it; back in line")
                continue
            marker.unlink(missing_ok=True)  # finished, stopped, …: not waiting

    def _reap(self) -> None:
        for name, proc in list(self.children.items()):
            run = RunDir(self.root / name)
            status = run.read_status()
            if status is not None and status.state != "starting":
                self.pending_bytes.pop(name, None)  # running: its memory shows in NVML from now on
            rc = proc.poll()
            if rc is None:
                continue
            del self.children[name]
            self.pending_bytes.pop(name, None)
            entry = queue.read_entry(run)
            if entry is not None:  # when the process was gone: the benchmark's worker teardown
                entry.exited_at, entry.exit_code = time.time(), rc
                queue.write_entry(run, entry)
            self.suspend_sent.discard(name)
            if status is not None and status.state == "starting" and status.pid in (proc.pid, os.getpid()):
                status.state = "failed"
                status.message = f"the worker exited with code {rc} before it started (see {run.log_path})"
                run.write_status(status)
            self.log(f"{name}: worker {proc.pid} exited with code {rc} ({run_state(run)})")

    # --- admission ----------------------------------------------------------------------------------------
    def live_runs(self) -> list[LiveRun]:
        """Live runs in the folder: this scheduler's children at once, the others from a scan every
        `rescan` seconds (a run started by `--detach`, or by a scheduler before a restart)."""
        now = time.monotonic()
        if now - self._scanned >= self.config.rescan:
            self._scanned = now
            self._others = []
            for run in list_runs(self.root):
                if run.name in self.children:
                    continue
                state = run_state(run)
                if is_live(state):
                    entry = queue.read_entry(run)
                    pid = (run.read_status() or RunStatus()).pid
                    self._others.append(LiveRun(run, state, pid, list(entry.gpu_ids) if entry else []))
        mine = []
        for name, proc in self.children.items():
            run = RunDir(self.root / name)
            status = run.read_status() or RunStatus()
            if not is_live(status.state):
                continue  # ended (finished, suspended, …): its slot is free while the process tears down
            entry = queue.read_entry(run)
            mine.append(LiveRun(run, status.state, status.pid or proc.pid, list(entry.gpu_ids) if entry else []))
        return mine + [o for o in self._others if o.run.name not in self.children]

    def _wants_gpu(self, run: RunDir) -> bool:
        if run.name not in self._devices:  # read once: a waiting head is looked at every pass
            from vittui.recipe import load

            try:
                self._devices[run.name] = load(run.recipe_path).compute.device
            except Exception:  # noqa: BLE001 - the worker reports a broken recipe; admission treats it as CPU
                self._devices[run.name] = "cpu"
        return self._devices[run.name] != "cpu" and bool(self.gpu_source.gpus())

    def _admit(self, run: RunDir) -> list[int] | str | None:
        """The cards to start `run` on ([] for a CPU run), a reason to refuse it, or None: it waits."""
        entry = queue.read_entry(run) or queue.QueueEntry(seq=0.0)
        live = self.live_runs()
        if not self._wants_gpu(run):
            on_cpu = [r for r in live if not r.gpu_ids]
            if len(on_cpu) < max(self.config.max_cpu_runs, 1):
                return []
            self.wait_reason = (f"a CPU slot ({len(on_cpu)} of {max(self.config.max_cpu_runs, 1)} taken by "
                                f"{', '.join(r.run.name for r in on_cpu)})")
            self._maybe_suspend(on_cpu)
            return None
        need = max(entry.gpus, 1)
        want = (entry.estimate_bytes or 0) + self.config.margin_bytes if entry.estimate_bytes else 0
        gpus = self.gpu_source.gpus()
        big_enough = [g for g in gpus if g.memory_total is None or g.memory_total >= want]
        if len(big_enough) < need:
            biggest = max((g.memory_total or 0 for g in gpus), default=0)
            return (f"refused by the queue: needs {need} GPU(s) with {want / 2**30:.1f} GiB (estimate "
                    f"{(entry.estimate_bytes or 0) / 2**30:.1f} GiB + margin {self.config.margin_bytes / 2**30:.1f} "
                    f"GiB); the largest card here has {biggest / 2**30:.1f} GiB, {len(gpus)} card(s) in all")
        gpu_pids = {g.index: {p.pid for p in g.processes} for g in gpus}
        runs_on: dict[int, list[LiveRun]] = {g.index: [] for g in gpus}
        for r in live:
            cards = set(r.gpu_ids) | {i for i, pids in gpu_pids.items() if r.pid and r.pid in pids}
            for i in cards:
                runs_on.setdefault(i, []).append(r)
        pending: dict[int, int] = {}
        for cards, est in self.pending_bytes.values():
            for i in cards:
                pending[i] = pending.get(i, 0) + est
        fits = []
        for g in gpus:
            free = None if g.memory_total is None or g.memory_used is None else g.memory_total - g.memory_used
            if free is not None:
                free -= pending.get(g.index, 0)
            if len(runs_on[g.index]) < max(self.config.max_per_gpu, 1) and (want == 0 or (free is not None and free >= want)):
                fits.append((-(free or 0), g.index))
        if len(fits) >= need:
            return sorted(i for _, i in sorted(fits)[:need])
        self.wait_reason = (f"{need} GPU(s) with a free slot and {want / 2**30:.1f} GiB free (free now: "
                            + ", ".join(f"GPU {g.index} {((g.memory_total or 0) - (g.memory_used or 0)) / 2**30:.1f} "
                                        f"GiB, {len(runs_on[g.index])} run(s)" for g in gpus) + ")")
        self._maybe_suspend([r for i in runs_on for r in runs_on[i]])
        return None

    def _maybe_suspend(self, holders: list[LiveRun]) -> None:
        """Suspend runs that hold the waiting head's slot and have been paused for `suspend_paused_after`."""
        minutes = self.config.suspend_paused_after
        if not minutes:
            return
        from vittui.runs import control

        waiting = len(queue.queued(self.root))
        for r in holders:
            status = r.run.read_status()
            if status is None or status.state != "paused" or r.run.name in self.suspend_sent:
                continue
            paused_for = time.time() - status.updated  # a paused worker does not rewrite its status
            if paused_for >= minutes * 60:
                reason = (f"suspended by the queue: paused {paused_for / 60:.1f} min (limit {minutes:g} min) "
                          f"while {waiting} queued run(s) wait for its slot")
                control.send(r.run.path, "suspend", reason=reason)
                self.suspend_sent.add(r.run.name)
                self.log(f"{r.run.name}: {reason}")

    def _refuse(self, run: RunDir, reason: str) -> None:
        with queue.mutex(self.root):
            status = run.read_status() or RunStatus()
            if status.state != "queued":
                return
            status.state, status.message = "failed", reason
            run.write_status(status)
            from vittui.runs import events as ev

            w = ev.EventWriter(run.events_path)
            w.write(ev.Status(state="failed", step=status.step, reason=reason))
            w.close()
            (queue.waiting_dir(self.root) / run.name).unlink(missing_ok=True)
        self.log(f"{run.name}: {reason}")

    def _claim_and_start(self, run: RunDir, cards: list[int]) -> bool:
        """Claim (status `starting` naming this scheduler) under the mutex, spawn, then name the worker."""
        with queue.mutex(self.root):
            status = run.read_status()
            if status is None or status.state != "queued":
                return False  # removed (or started) since the line was read
            entry = queue.read_entry(run) or queue.QueueEntry(seq=0.0)
            entry.gpu_ids, entry.started_by, entry.started_at = list(cards), os.getpid(), time.time()
            queue.write_entry(run, entry)
            status.state, status.pid = "starting", os.getpid()
            status.message = "started by the queue" + (f" on GPU {','.join(map(str, cards))}" if cards else "")
            run.write_status(status)
        env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, cards))} if cards else {}
        try:
            proc = self._start(run, resume=entry.resume, gpus=entry.gpus, env=env)
        except OSError as e:
            with queue.mutex(self.root):
                status.state, status.message = "failed", f"the queue could not start its worker: {e}"
                run.write_status(status)
                (queue.waiting_dir(self.root) / run.name).unlink(missing_ok=True)
            return False
        self.children[run.name] = proc
        if cards and entry.estimate_bytes:
            self.pending_bytes[run.name] = (list(cards), entry.estimate_bytes)
        with queue.mutex(self.root):
            now = run.read_status()
            if now is not None and now.state == "starting" and now.pid == os.getpid():
                now.pid = proc.pid
                run.write_status(now)
            (queue.waiting_dir(self.root) / run.name).unlink(missing_ok=True)
        self.log(f"{run.name}: started worker {proc.pid}" + (" (resume)" if entry.resume else "")
                 + (f" on GPU {cards}" if cards else ""))
        return True

    # --- the process --------------------------------------------------------------------------------------
    def done(self) -> bool:
        return not self.children and not queue.queued(self.root) and not queue.has_waiting(self.root)

    def run(self) -> int:
        lock_path = queue.scheduler_lock_path(self.root)
        try:
            # under the queue mutex: two schedulers started at once (a `--queue` and a `vittui runs` that both
            # found none alive) must not both clear a stale lock and each think it holds the new one
            with queue.mutex(self.root):
                lock.acquire(lock_path)
        except lock.RunLocked:
            return 0  # another scheduler holds this folder: nothing to do
        self.log(f"scheduler {os.getpid()} for {self.root}: {self.config}")
        try:
            while True:
                try:
                    self.tick()
                except Exception:  # noqa: BLE001 - one bad run directory must not stop the queue for the others
                    import traceback

                    self.log("error in a scheduling pass (retrying):\n" + traceback.format_exc())
                    time.sleep(1.0)
                if self.done() and self._hand_back(lock_path):
                    self.log("queue empty and no run of mine is live: exiting")
                    return 0
                time.sleep(self.config.poll)
        finally:
            lock.release(lock_path)

    def _hand_back(self, lock_path: Path) -> bool:
        """Release the lock, then look once more: a run queued meanwhile whose enqueuer still saw this
        scheduler alive (and so started none) is not left waiting. False: carry on, lock held again."""
        lock.release(lock_path)
        if not queue.has_waiting(self.root):
            return True
        try:
            with queue.mutex(self.root):
                lock.acquire(lock_path)
        except lock.RunLocked:
            return True  # a new scheduler has it
        return False


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vittui.scheduler")
    p.add_argument("runs_root")
    a = p.parse_args(argv)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal that started us may go away
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    return Scheduler(a.runs_root).run()


if __name__ == "__main__":
    sys.exit(main())

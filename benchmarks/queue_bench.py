"""The queue's own costs, through the installed command on tiny runs:

1. the scheduler's delay: a run's `finished` event → the next queued run's worker spawn (queue.json
   `started_at`, written by the scheduler as it claims the run), printed beside the worker's own start-up
   (spawn → its `run_started` event: importing torch, building the model and the data) which it is not;
2. suspend + resume: `suspend` sent → the `suspended` status event (checkpoint written) → the worker gone;
   `vittui ctl RUN resume` → the resumed worker's first step (start-up plus checkpoint restore).

    python benchmarks/queue_bench.py [--runs 4] [--suspends 3]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "tests"))
from _common import load_note, median, wait_for  # noqa: E402
from tiny import TINY, TINY_PROCESS, tiny_toml, vittui_cmd  # noqa: E402

from vittui.runs import control, queue  # noqa: E402
from vittui.runs import events as ev  # noqa: E402
from vittui.runs.lock import pid_alive  # noqa: E402
from vittui.runs.store import RunDir  # noqa: E402


def cli(root: Path, *args: str) -> str:
    env = {**os.environ, "VITTUI_RUNS": str(root)}
    return subprocess.run(vittui_cmd() + list(args), env=env, check=True, capture_output=True, text=True,
                          cwd=root.parent).stdout


def state(run: RunDir) -> str:
    s = run.read_status()
    return s.state if s else ""


def scheduler_delay(work: Path, n: int) -> None:
    root = work / "queue-runs"
    toml = tiny_toml(work / "short.toml", TINY + ["schedule.epochs=1"])
    names = [f"r{i}" for i in range(n)]
    for name in names:
        cli(root, "train", str(toml), "--queue", "--name", name)
    runs = [RunDir(root / name) for name in names]
    wait_for(lambda: all(state(r) == "finished" for r in runs), timeout=1800)
    wait_for(lambda: all(queue.read_entry(r).exited_at for r in runs), timeout=600)
    delays, startups, teardowns = [], [], []
    for prev, nxt in zip(runs, runs[1:]):
        finished = [e.t for e in ev.read_all(prev.events_path) if isinstance(e, ev.Finished)][0]
        spawned = queue.read_entry(nxt).started_at
        run_started = [e.t for e in ev.read_all(nxt.events_path) if isinstance(e, ev.RunStarted)][0]
        delays.append(spawned - finished)
        startups.append(run_started - spawned)
        teardowns.append(queue.read_entry(prev).exited_at - finished)
        print(f"  {prev.name} finished → {nxt.name} spawned {spawned - finished:6.3f} s; "
              f"{nxt.name}'s own start-up (spawn → run_started) {run_started - spawned:6.2f} s; "
              f"{prev.name}'s process gone {teardowns[-1]:6.2f} s after its finished event")
    print(f"scheduler delay (finished → next spawn), median of {len(delays)}: {median(delays):.3f} s "
          f"(max {max(delays):.3f} s); worker start-up median {median(startups):.2f} s; "
          f"worker teardown (finished → process gone) median {median(teardowns):.2f} s")


def suspend_resume(work: Path, rounds: int) -> None:
    root = work / "suspend-runs"
    toml = tiny_toml(work / "long.toml", TINY_PROCESS + ["run.checkpoint_every=100000"])
    cli(root, "train", str(toml), "--detach", "--name", "s")
    run = RunDir(root / "s")
    writes, exits, resumes = [], [], []
    try:
        for _ in range(rounds):
            def steps():
                return [e for e in ev.read_all(run.events_path) if isinstance(e, ev.Step)]

            n0 = len(steps())
            wait_for(lambda: len(steps()) >= n0 + 5 and state(run) == "running", timeout=600)
            pid = run.read_status().pid
            t0 = time.time()
            control.send(run.path, "suspend")
            def suspended_events():
                return [e for e in ev.read_all(run.events_path) if isinstance(e, ev.Status) and e.state == "suspended"]

            n_said = len(suspended_events())
            said = wait_for(lambda: (s := suspended_events()) and len(s) > n_said and s[-1], timeout=600)
            wait_for(lambda: not pid_alive(pid), timeout=600, interval=0.005)
            t_gone = time.time()
            t1 = time.time()
            cli(root, "ctl", "s", "resume")
            at = len(steps())
            first = wait_for(lambda: (s := steps()) and len(s) > at and s[at], timeout=600)
            writes.append(said.t - t0)
            exits.append(t_gone - t0)
            resumes.append(first.t - t1)
            print(f"  suspend → suspended event {said.t - t0:6.3f} s, → worker gone {t_gone - t0:6.3f} s; "
                  f"ctl resume → first step {first.t - t1:6.2f} s")
        print(f"suspend (checkpoint + event) median {median(writes):.3f} s, to the worker's exit {median(exits):.3f} s; "
              f"resume to the first step median {median(resumes):.2f} s; suspend + resume "
              f"{median(exits) + median(resumes):.2f} s")
    finally:
        s = run.read_status()
        if s and s.pid and pid_alive(s.pid):
            os.kill(s.pid, 9)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=4)
    p.add_argument("--suspends", type=int, default=3)
    a = p.parse_args()
    print(f"before: {load_note()}")
    with tempfile.TemporaryDirectory() as d:
        scheduler_delay(Path(d), a.runs)
        suspend_resume(Path(d), a.suspends)
    print(f"after: {load_note()}")


if __name__ == "__main__":
    main()

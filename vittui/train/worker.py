"""The worker process: `python -m vittui.train.worker RUN_DIR [--resume]`.

It owns one run directory: takes its lock, trains the recipe stored there, answers commands from
`commands.jsonl`, and leaves `status.json` saying how it ended. SIGTERM (what cluster schedulers
send) checkpoints and exits cleanly; the first Ctrl-C does the same and a second one stops at once.
SIGUSR1 (what a Slurm job script asks for before its time limit, runs/slurm.py) checkpoints and ends the
run `suspended` with exit code 75, on which the job script requeues its job: the next job resumes it.
Exit codes: 0 finished, stopped or suspended, 75 suspended by SIGUSR1, 1 the run failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Callable, Sequence

from vittui.recipe import RecipeError, load
from vittui.runs import events as ev
from vittui.runs import lock
from vittui.runs.control import CommandReader
from vittui.runs.slurm import REQUEUE_EXIT  # 75: suspended by SIGUSR1; the job script requeues its job
from vittui.runs.store import RunDir, RunStatus

OOM_ADVICE = ("reduce data.batch_size and raise compute.accumulation to keep the effective batch, "
              "use compute.precision = 'bf16', or turn on compute.grad_checkpointing")


def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _acked_ids(run: RunDir) -> set[str]:
    return {e.id for e in ev.read_all(run.events_path) if isinstance(e, ev.ControlAck)}


def _fail(run: RunDir, fault: str, message: str, suggestion: str = "", notify: Sequence[str] = ()) -> None:
    status = run.read_status() or RunStatus()
    status.state, status.message = "failed", message
    run.write_status(status)
    w = ev.EventWriter(run.events_path)
    w.write(ev.Fault(fault=fault, step=status.step, message=message, suggestion=suggestion))
    w.write(ev.Status(state="failed", step=status.step, reason=message))
    w.close()
    if notify:  # logged, never raised: telling the user must not change how the run ends
        from vittui.runs.notify import notify as send

        send(notify, run.name, "failed", status.step, status.best_top1)


def run_worker(run_path: str | Path, *, resume: bool = False, on_event: Callable[[ev.Event], None] | None = None,
               interactive: bool = False) -> int:
    from vittui.train.allocator import tune_malloc
    from vittui.train.control_point import StopRequest
    from vittui.train.faults import Faults, is_out_of_memory

    run = RunDir(run_path)
    main = _rank() == 0
    tune_malloc()  # large blocks stay on the heap: no page faults per step (train/allocator.py)
    os.umask(0o077)  # whatever the libraries write in the run directory stays owner-only
    try:
        recipe = load(run.recipe_path)
    except RecipeError as e:
        print(f"RecipeError: {e}", file=sys.stderr)
        return 2
    if main:
        try:
            lock.acquire(run.lock_path)
        except lock.RunLocked as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
    reader = CommandReader(run.commands_path, skip_ids=_acked_ids(run)) if main else None
    stop = StopRequest()  # the loop's control point reads it at the next step boundary

    def on_signal(signum, frame):
        if stop.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop()
        if interactive and signum == signal.SIGINT:
            print("\ncheckpointing and stopping at the end of this step (Ctrl-C again to stop now)",
                  file=sys.stderr, flush=True)

    def on_time_limit(signum, frame):
        job = os.environ.get("SLURM_JOB_ID")
        stop.suspend(f"slurm job {job}'s time limit is near; the job requeues itself" if job else
                     "SIGUSR1 (a time limit is near)")

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    old[signal.SIGUSR1] = signal.signal(signal.SIGUSR1, on_time_limit)
    if main:
        status = run.read_status() or RunStatus()
        status.pid, status.state = os.getpid(), "starting"
        run.write_status(status)
    try:
        from vittui.train.loop import train

        result = train(recipe, run.path, reader, resume=resume, on_event=on_event, stop=stop,
                       faults=Faults.from_env())  # end-to-end tests set VITTUI_TEST_*_AT_STEP
        world = os.environ.get("WORLD_SIZE", "1")
        if world != "1":  # with several processes, worker.log says how each rank ended
            print(f"rank {_rank()}/{world}: {result.state} at step {result.step}", file=sys.stderr, flush=True)
        if result.state == "suspended" and stop.suspend_reason:
            return REQUEUE_EXIT
        return 0 if result.state in ("finished", "stopped", "suspended", "pruned") else 1
    except KeyboardInterrupt:
        if main:
            status = run.read_status() or RunStatus()
            status.state, status.message = "stopped", "interrupted without a checkpoint"
            run.write_status(status)
        return 130
    except Exception as e:  # noqa: BLE001 - every failure must reach status.json
        if interactive:  # a terminal gets one line; the traceback goes to worker.log
            with open(run.log_path, "a", encoding="utf-8") as log:
                traceback.print_exc(file=log)
            print(f"error: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                  f"(traceback in {run.log_path})", file=sys.stderr)
        else:
            traceback.print_exc()
        if main:
            if is_out_of_memory(e):  # train() saved the last completed step before raising
                bs = recipe.data.batch_size
                _fail(run, "oom", f"out of memory at batch size {bs}: {str(e).splitlines()[0]}", OOM_ADVICE,
                      recipe.run.notify)
            else:
                _fail(run, "exception", f"{type(e).__name__}: {e}", notify=recipe.run.notify)
        return 2 if isinstance(e, RecipeError) or type(e).__name__ in ("DataError", "ModelError") else 1
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if main:
            lock.release(run.lock_path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vittui.train.worker")
    p.add_argument("run_dir")
    p.add_argument("--resume", action="store_true")
    a = p.parse_args(argv)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal that launched us may go away
    return run_worker(a.run_dir, resume=a.resume)


if __name__ == "__main__":
    sys.exit(main())

"""`vittui ctl RUN pause|resume|stop|suspend|checkpoint|eval|set [--lr-scale X] [--wait S]`: send a command
to a live run through its `commands.jsonl`, optionally waiting for the worker's acknowledgement.

`resume` on a run no worker is behind (suspended; stopped, failed or lost with a checkpoint) continues it from
the last checkpoint: through the queue (runs/queue.py `requeue`) when a scheduler is alive or runs are
queued, so it waits its turn instead of jumping the line; else at once in a new detached worker, as
`vittui train --resume RUN --detach` does."""

from __future__ import annotations

import sys
import time

from vittui.commands._common import resolve_run


def add_parser(sub) -> None:
    c = sub.add_parser("ctl", help="send a command to a live run (resume also restarts a suspended one)")
    c.add_argument("run")
    c.add_argument("command", choices=["pause", "resume", "stop", "suspend", "checkpoint", "eval", "set"])
    c.add_argument("--lr-scale", type=float)
    c.add_argument("--eval-every", type=int)
    c.add_argument("--probe-every", type=int)
    c.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for the acknowledgement")
    c.set_defaults(func=run)


def run(args) -> int:
    from vittui.runs import control
    from vittui.runs.registry import is_live, run_state

    rd = resolve_run(args, args.run)
    state = run_state(rd)
    if args.command == "resume" and not is_live(state):
        return _relaunch(rd, state)
    if state not in ("running", "paused", "starting"):
        hint = f" (take it out of the queue with `vittui queue rm {rd.name}`)" if state == "queued" else ""
        print(f"error: run {rd.name} is {state}; nothing is listening for commands{hint}", file=sys.stderr)
        return 2
    knobs = {k: v for k, v in (("lr_scale", args.lr_scale), ("eval_every", args.eval_every),
                               ("probe_every", args.probe_every)) if v is not None}
    command = args.command
    if command == "set" and not knobs:
        print("error: `ctl set` needs --lr-scale, --eval-every or --probe-every", file=sys.stderr)
        return 2
    cmd = control.send(rd.path, command, **(knobs if command in ("set", "resume") else {}))
    if args.wait:
        ack = wait_for_ack(rd, cmd.id, timeout=args.wait)
        if ack is None:
            print(f"sent {command} to {rd.name}; no acknowledgement within {args.wait:g}s", file=sys.stderr)
            return 1
        print(f"{command} took effect at step {ack.step}" + (f" ({ack.detail})" if ack.detail else ""))
    else:
        print(f"sent {command} to {rd.name}")
    return 0


def _relaunch(rd, state: str) -> int:
    from vittui.runs import launcher, queue
    from vittui.runs.registry import why_not_resumable

    if state == "queued":
        print(f"error: run {rd.name} is already queued (position {queue.position(rd)})", file=sys.stderr)
        return 2
    if (why := why_not_resumable(rd, state)) is not None:
        print(f"error: {why}", file=sys.stderr)
        return 2
    root = rd.path.parent
    if queue.scheduler_alive(root) or queue.queued(root):
        queue.requeue(rd)
        print(f"queued {rd.name} ({state}) to resume from its last checkpoint at position {queue.position(rd)}")
        return 0
    proc = launcher.resume(rd)
    print(f"resuming {rd.name} ({state}) detached from its last checkpoint (pid {proc.pid}); log: {rd.log_path}")
    return 0


def wait_for_ack(run, command_id: str, timeout: float):
    from vittui.runs.events import ControlAck, EventTail

    tail = EventTail(run.events_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for e in tail.poll():
            if isinstance(e, ControlAck) and e.id == command_id:
                return e
        time.sleep(0.05)
    return None

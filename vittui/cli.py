"""`vittui` — the dashboard — and its headless commands.

Exit codes: 0 ok, 1 the run failed, 2 bad input. Bad input is reported as one line a person can act
on, never a traceback. Heavy imports (torch, Textual) happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from pathlib import Path

from vittui.recipe import RecipeError


def _runs_root(args) -> Path:
    return Path(args.runs_dir or os.environ.get("VITTUI_RUNS", "runs"))


def _load_recipe(args):
    from vittui.recipe import load_preset

    recipe = load_preset(args.preset)
    if args.set:
        recipe = recipe.with_overrides(args.set, source="--set")
    return recipe


def _printer(stream=sys.stdout):
    """Event sink for a terminal: a rewritten progress line on a tty, plain lines otherwise."""
    from vittui.runs.events import Eval, Finished, Step
    from vittui.runs.progress import Progress

    prog = Progress()
    tty = stream.isatty()
    last = [0.0]

    def on_event(e) -> None:
        prog.feed(e)
        kept = prog.take_lines()
        if kept:
            if tty:
                stream.write("\r\033[K")
            for line in kept:
                stream.write(line + "\n")
        now = time.monotonic()
        if isinstance(e, (Step, Eval, Finished)) and (tty and now - last[0] > 0.1 or isinstance(e, Finished)):
            last[0] = now
            stream.write(("\r\033[K" if tty else "") + prog.line() + ("" if tty and not isinstance(e, Finished) else "\n"))
        elif isinstance(e, Step) and not tty and prog.total_steps and e.step % max(prog.total_steps // 20, 1) == 0:
            stream.write(prog.line() + "\n")
        stream.flush()

    on_event.progress = prog  # type: ignore[attr-defined]
    return on_event


# ---- commands ---------------------------------------------------------------------------------------

def cmd_train(args) -> int:
    from vittui.runs import launcher
    from vittui.runs.store import RunDir

    root = _runs_root(args)
    if args.resume:
        run = launcher.resolve_run(args.resume, root)
        if launcher.run_state(run) in ("running", "paused", "starting", "stopping"):
            print(f"error: run {run.name} is still live (state {launcher.run_state(run)}); use `vittui attach {run.name}`",
                  file=sys.stderr)
            return 2
        if args.detach or args.gpus > 1 or args.accelerate_config:
            proc = launcher.resume(run, gpus=args.gpus, accelerate_config=args.accelerate_config)
            print(f"resuming {run.name} detached (pid {proc.pid}); log: {run.log_path}")
            return 0
        return _foreground(run, resume=True)
    if not args.preset:
        print("error: vittui train needs a PRESET (a .toml file or a shipped preset name) or --resume RUN",
              file=sys.stderr)
        return 2
    recipe = _load_recipe(args)
    if not recipe.run.output_dir == "runs" and not args.runs_dir:
        root = Path(recipe.run.output_dir)
    if args.detach or args.gpus > 1 or args.accelerate_config:
        run = launcher.launch(recipe, root, args.name, gpus=args.gpus, accelerate_config=args.accelerate_config)
        print(f"started {run.name} detached; follow it with `vittui attach {run.name}` (log: {run.log_path})")
        return 0
    run = launcher.prepare_run(recipe, root, args.name)
    print(f"run {run.name} in {run.path}")
    return _foreground(RunDir(run.path), resume=False)


def _foreground(run, resume: bool) -> int:
    from vittui.runs.store import RunDir
    from vittui.train.worker import run_worker

    printer = _printer()
    rc = run_worker(run.path, resume=resume, on_event=printer, interactive=True)
    status = RunDir(run.path).read_status()
    if status is not None:
        best = f"{status.best_top1:.2f}%" if status.best_top1 is not None else "n/a"
        last = f"{status.last_top1:.2f}%" if status.last_top1 is not None else "n/a"
        print(f"{run.name}: {status.state} at step {status.step}; val top-1 {last} (best {best})")
    return rc


def cmd_runs(args) -> int:
    from vittui.runs.launcher import summarize
    from vittui.runs.store import list_runs

    rows = [summarize(r) for r in list_runs(_runs_root(args))]
    if not rows:
        print(f"no runs in {_runs_root(args)}/")
        return 0
    print(f"{'NAME':<28} {'STATE':<9} {'STEP':>13} {'BEST':>7} {'LAST':>7}  MODEL")
    for r in rows:
        best = f"{r.best_top1:.2f}" if r.best_top1 is not None else "-"
        last = f"{r.last_top1:.2f}" if r.last_top1 is not None else "-"
        print(f"{r.name:<28} {r.state:<9} {f'{r.step}/{r.total_steps}':>13} {best:>7} {last:>7}  {r.model}")
    return 0


def cmd_ctl(args) -> int:
    from vittui.runs import control, launcher

    run = launcher.resolve_run(args.run, _runs_root(args))
    state = launcher.run_state(run)
    if state not in ("running", "paused", "starting"):
        print(f"error: run {run.name} is {state}; nothing is listening for commands", file=sys.stderr)
        return 2
    knobs = {k: v for k, v in (("lr_scale", args.lr_scale), ("eval_every", args.eval_every),
                               ("probe_every", args.probe_every)) if v is not None}
    command = args.command
    if command == "set" and not knobs:
        print("error: `ctl set` needs --lr-scale, --eval-every or --probe-every", file=sys.stderr)
        return 2
    cmd = control.send(run.path, command, **(knobs if command in ("set", "resume") else {}))
    if args.wait:
        ack = wait_for_ack(run, cmd.id, timeout=args.wait)
        if ack is None:
            print(f"sent {command} to {run.name}; no acknowledgement within {args.wait:g}s", file=sys.stderr)
            return 1
        print(f"{command} took effect at step {ack.step}" + (f" ({ack.detail})" if ack.detail else ""))
    else:
        print(f"sent {command} to {run.name}")
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


def cmd_attach(args) -> int:
    from vittui.runs import launcher

    root = _runs_root(args)
    run = launcher.resolve_run(args.run, root)
    if args.tui:
        return cmd_dashboard(args, attach=str(run.path))
    from vittui.runs.attach import attach_headless

    return attach_headless(run)


def cmd_dashboard(args, attach: str | None = None) -> int:
    # Starting the dashboard allocates ~half a million objects that all stay alive; the cyclic collector
    # walks them over and over (~60 ms, a tenth of the time to the first frame here) and finds nothing.
    # The app turns it back on after its first frame (VittuiApp.settle_gc); the finally covers a failed start.
    gc.disable()
    try:
        from vittui.ui.app import create_app

        preset = getattr(args, "preset", None)
        recipe = _load_recipe(args) if preset else None
        app = create_app(_runs_root(args), attach=attach, recipe=recipe)
        result = app.run()
    finally:
        gc.enable()
    if result == "detached":
        print("detached: the run keeps going; `vittui runs` lists it, `vittui attach RUN` follows it")
    return int(app.return_code or 0)


# ---- parser -----------------------------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vittui", description="Train and fine-tune Vision Transformers from the terminal.")
    p.add_argument("--runs-dir", help="folder holding runs (default ./runs or $VITTUI_RUNS)")
    p.add_argument("--preset", help="recipe the dashboard opens with (default demo-digits)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="cmd")

    t = sub.add_parser("train", help="train a recipe (foreground, or --detach)")
    t.add_argument("preset", nargs="?", help="recipe .toml or shipped preset name (e.g. demo-digits)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=3e-4")
    t.add_argument("--name", help="run name (default from the recipe)")
    t.add_argument("--detach", action="store_true", help="start a background worker and return")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    t.add_argument("--gpus", type=int, default=0, help="train on N GPUs through accelerate launch")
    t.add_argument("--accelerate-config", help="accelerate config file (several machines)")
    t.set_defaults(func=cmd_train)

    r = sub.add_parser("runs", help="list runs with their live state")
    r.set_defaults(func=cmd_runs)

    c = sub.add_parser("ctl", help="send a command to a live run")
    c.add_argument("run")
    c.add_argument("command", choices=["pause", "resume", "stop", "checkpoint", "eval", "set"])
    c.add_argument("--lr-scale", type=float)
    c.add_argument("--eval-every", type=int)
    c.add_argument("--probe-every", type=int)
    c.add_argument("--wait", type=float, default=0.0, metavar="SECONDS", help="wait for the acknowledgement")
    c.set_defaults(func=cmd_ctl)

    a = sub.add_parser("attach", help="follow a run: history, live progress, keys p/r/s/c/e")
    a.add_argument("run")
    a.add_argument("--tui", action="store_true", help="attach in the dashboard")
    a.set_defaults(func=cmd_attach)

    from vittui import cli_extra

    cli_extra.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    try:
        if func is None:
            return cmd_dashboard(args)
        return func(args)
    except RecipeError as e:
        print(f"RecipeError: {e}", file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as e:  # noqa: BLE001
        name = type(e).__name__
        if name in ("DataError", "ModelError", "CheckpointError"):
            print(f"{name}: {e}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())

"""`vittui train PRESET [--set k=v]… [--detach | --queue | --executor slurm] [--gpus N]` or `vittui train
--resume RUN`: train in the foreground with a progress line, start a detached worker, put the run in the
queue (runs/queue.py; the scheduler starts it when a slot is free), or submit it to Slurm (runs/slurm.py;
Slurm's own queue decides when it starts)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from vittui.commands._common import load_recipe, output_root, resolve_run, runs_root, slurm_action
from vittui.recipe import load


def add_parser(sub) -> None:
    t = sub.add_parser("train", help="train a recipe (foreground, or --detach)")
    t.add_argument("preset", nargs="?", help="recipe .toml or shipped preset name (e.g. demo-digits)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=3e-4")
    t.add_argument("--name", help="run name (default from the recipe)")
    t.add_argument("--detach", action="store_true", help="start a background worker and return")
    t.add_argument("--resume", metavar="RUN", help="continue RUN from its last checkpoint")
    t.add_argument("--gpus", type=int, default=0, help="train on N GPUs through accelerate launch")
    t.add_argument("--accelerate-config", help="accelerate config file (several machines)")
    t.add_argument("--queue", action="store_true", help="queue the run; the scheduler starts it when it fits")
    t.add_argument("--max-per-gpu", type=int, metavar="N", help="queue: at most N runs per GPU (default 1)")
    t.add_argument("--max-cpu-runs", type=int, metavar="N", help="queue: at most N runs at once without a GPU (default 1)")
    t.add_argument("--suspend-paused-after", type=float, metavar="MINUTES",
                   help="queue: suspend a run paused this long while queued runs wait for its slot (default off)")
    t.add_argument("--executor", choices=["local", "slurm"], default="local",
                   help="slurm: submit the run as an sbatch job (Slurm decides when it runs)")
    t.add_argument("--slurm-config", metavar="TOML", help="executor config for --executor slurm (default "
                   "$VITTUI_SLURM_CONFIG, else ./slurm.toml when present; keys in the README's Slurm section)")
    t.set_defaults(func=run)


def run(args) -> int:
    from vittui.runs import launcher
    from vittui.runs.registry import is_live, run_state
    from vittui.runs.store import RunDir

    root = runs_root(args)
    if (problem := _queue_flags_problem(args)) is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.resume:
        rd = resolve_run(args, args.resume)
        if args.preset or args.set:  # a resumed run trains its own recipe.toml, nothing else
            print(f"error: --resume continues the run's own recipe; it takes no PRESET or --set (to change a "
                  f"value before resuming, edit {rd.recipe_path})", file=sys.stderr)
            return 2
        if is_live(state := run_state(rd)):
            print(f"error: run {rd.name} is still live (state {state}); use `vittui attach {rd.name}`",
                  file=sys.stderr)
            return 2
        from vittui.runs.slurm import job_id_of

        # the run's own recipe: its data may be gone (a Slurm run's devices are the compute node's)
        if refused(load(rd.recipe_path), rd.path.parent, here=job_id_of(rd) is None):
            return 2
        if args.queue:
            return _requeue(rd)
        if args.detach or args.gpus > 1 or args.accelerate_config:
            proc = launcher.resume(rd, gpus=args.gpus, accelerate_config=args.accelerate_config)
            print(f"resuming {rd.name} detached (pid {proc.pid}); log: {rd.log_path}")
            return 0
        return _foreground(rd, resume=True)
    slurm_config = None
    if args.slurm_config and args.executor != "slurm":
        print("error: --slurm-config needs --executor slurm", file=sys.stderr)
        return 2
    if args.executor == "slurm":
        if args.detach or args.queue or args.accelerate_config:
            print("error: --executor slurm submits the run to Slurm's queue; it takes no --detach, --queue or "
                  "--accelerate-config (put sbatch options in the Slurm config)", file=sys.stderr)
            return 2
        if (slurm_config := slurm_config_of(args)) is None:
            return 2
    if not args.preset:
        print("error: vittui train needs a PRESET (a .toml file or a shipped preset name) or --resume RUN",
              file=sys.stderr)
        return 2
    recipe = load_recipe(args)
    root = output_root(args, recipe)
    if slurm_config is not None and slurm_config.runs_dir and not args.runs_dir:
        root = Path(slurm_config.runs_dir)  # the runs folder on the cluster's shared filesystem
    if refused(recipe, root, here=slurm_config is None):  # before any run directory exists
        return 2
    if args.queue:
        return _enqueue(recipe, root, args)
    if slurm_config is not None:
        return _submit_slurm(recipe, root, args, slurm_config)
    if args.detach or args.gpus > 1 or args.accelerate_config:
        rd = launcher.launch(recipe, root, args.name, gpus=args.gpus, accelerate_config=args.accelerate_config)
        print(f"started {rd.name} detached; follow it with `vittui attach {rd.name}` (log: {rd.log_path})")
        return 0
    rd = launcher.prepare_run(recipe, root, args.name)
    print(f"run {rd.name} in {rd.path}")
    return _foreground(RunDir(rd.path), resume=False)


def slurm_config_of(args):
    """The Slurm executor config (--slurm-config, $VITTUI_SLURM_CONFIG, ./slurm.toml, or the defaults) and a
    usable sbatch; None after printing the one line that says what is wrong."""
    import os

    from vittui.runs import slurm

    path = args.slurm_config or os.environ.get("VITTUI_SLURM_CONFIG") or (
        "slurm.toml" if Path("slurm.toml").is_file() else None)
    try:
        config = slurm.load_config(path)
        slurm.require_sbatch()
    except slurm.SlurmError as e:
        print(f"error: {e}", file=sys.stderr)
        return None
    if getattr(args, "gpus", 0):  # --gpus N asks for N GPUs per node, over the config's
        config.gpus = args.gpus
    return config


def _submit_slurm(recipe, root: Path, args, config) -> int:
    """`--executor slurm`: the run directory in state queued, submitted at once (Slurm is the scheduler).
    A job sbatch refuses leaves no run directory behind."""
    from vittui.runs import slurm

    try:
        rd, job_id = slurm.submit_new(recipe, root, args.name, config)
    except slurm.SlurmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"submitted {rd.name} as slurm job {job_id}; follow it with `vittui attach {rd.name}` "
          f"(log: {rd.log_path})")
    return 0


def _queue_flags_problem(args) -> str | None:
    """The scheduler's options go with --queue, and --queue with nothing that starts a worker now."""
    if args.queue and (args.detach or args.accelerate_config):
        return "--queue starts the run when it fits; it takes no --detach or --accelerate-config"
    for flag, least in (("max_per_gpu", 1), ("max_cpu_runs", 1), ("suspend_paused_after", 0)):
        value = getattr(args, flag)
        opt = "--" + flag.replace("_", "-")
        if value is not None and not args.queue:
            return f"{opt} needs --queue"
        if value is not None and value < least:
            return f"{opt} must be >= {least} (got {value:g})"
    return None


def _requeue(rd) -> int:
    """`--resume RUN --queue`: back in line, started with --resume when it fits (a Slurm run: back in
    Slurm's queue as a new job)."""
    from vittui.runs import queue, slurm
    from vittui.runs.registry import run_state, why_not_resumable

    if slurm.job_id_of(rd) is not None:
        if (why := why_not_resumable(rd, run_state(rd))) is not None:
            print(f"error: {why}", file=sys.stderr)
            return 2
        return slurm_action(slurm.resubmit, rd, f"resubmitted {rd.name} as slurm job {{job}}; it resumes from "
                                                f"its last checkpoint")
    try:
        queue.requeue(rd)
    except queue.QueueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"queued {rd.name} to resume from its last checkpoint at position {queue.position(rd)}")
    return 0


def _enqueue(recipe, root: Path, args) -> int:
    """`--queue`: the run directory in state queued with its memory estimate; the scheduler starts it."""
    from vittui.hardware import fmt_bytes
    from vittui.runs import queue

    try:
        from vittui.planning.memory import estimate

        est = estimate(recipe).peak
    except Exception:  # noqa: BLE001 - a model the estimator does not know still queues, admitted on slots alone
        est = None
    queue.write_config(root, max_per_gpu=args.max_per_gpu, max_cpu_runs=args.max_cpu_runs,
                       suspend_paused_after=args.suspend_paused_after)
    rd = queue.enqueue(recipe, root, args.name, estimate_bytes=est, gpus=args.gpus)
    est_text = f", memory estimate {fmt_bytes(est)}" if est else ""
    print(f"queued {rd.name} at position {queue.position(rd)}{est_text}; see `vittui queue`")
    return 0


def refused(recipe, root: Path, *, here: bool = True) -> bool:
    """Pre-flight (vittui/planning/preflight.py): problems found before anything starts, one line each on
    stderr; True when there were any. `here=False` (Slurm): the run trains on a compute node, so this
    machine's devices are not checked."""
    from vittui.planning import preflight_libs as pf

    if here:
        problems = pf.preflight(recipe, root)
    else:
        problems = pf.basic_problems(recipe, root) + pf.model_name_problems(recipe) + pf.augment_problems(recipe)
    for line in problems:
        print(f"error: {line}", file=sys.stderr)
    return bool(problems)


def _foreground(rd, resume: bool) -> int:
    from vittui.runs.store import RunDir
    from vittui.train.worker import run_worker

    printer = _printer()
    rc = run_worker(rd.path, resume=resume, on_event=printer, interactive=True)
    status = RunDir(rd.path).read_status()
    if status is not None:
        best = f"{status.best_top1:.2f}%" if status.best_top1 is not None else "n/a"
        last = f"{status.last_top1:.2f}%" if status.last_top1 is not None else "n/a"
        print(f"{rd.name}: {status.state} at step {status.step}; val top-1 {last} (best {best})")
    return rc


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

"""`vittui sweep PRESET --space SPACE.toml --trials N …`: an Optuna sweep whose trials are runs;
`vittui sweep status STUDY [--json] [--tui]`: how it stands; `vittui sweep best STUDY -o best.toml`: the best
trial's recipe as a preset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from vittui.commands._common import JSON_HELP, load_recipe, print_json, runs_root


def add_parser(sub) -> None:
    s = sub.add_parser("sweep", help="Optuna sweep over a recipe (also: sweep status STUDY, sweep best STUDY)",
                       description="vittui sweep PRESET --space SPACE.toml --trials N [options] | "
                                   "vittui sweep status STUDY [--json] [--tui] | vittui sweep best STUDY -o best.toml")
    s.add_argument("preset", help="recipe .toml or shipped preset name; or `status` / `best`")
    s.add_argument("study_name", nargs="?", help="the study (after `status` or `best`)")
    s.add_argument("--space", help="search-space TOML: one table per recipe key")
    s.add_argument("--trials", type=int, help="trials in the study when the sweep ends")
    s.add_argument("--study", help="study name (default: the preset's name + '-sweep')")
    s.add_argument("--storage", help="Optuna storage URL (default sqlite:///RUNS/sweeps.db)")
    s.add_argument("--sampler", choices=("tpe", "random", "grid"), default="tpe")
    s.add_argument("--pruner", choices=("median", "hyperband", "none"), default="median")
    s.add_argument("--objective", choices=("val_top1", "val_loss"), default="val_top1")
    s.add_argument("--parallel", type=int, default=1, help="trials queued or running at once (default 1)")
    s.add_argument("--max-cpu-runs", type=int, metavar="N",
                   help="the queue's CPU slots: trials training on the CPU at once (as `train --queue`)")
    s.add_argument("--max-per-gpu", type=int, metavar="N", help="the queue's runs per GPU (as `train --queue`)")
    s.add_argument("--seed", type=int, help="sampler seed")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the preset")
    s.add_argument("--executor", choices=("local", "slurm"), default="local",
                   help="slurm: every trial an sbatch job (the driver stays here, e.g. on the login node)")
    s.add_argument("--slurm-config", metavar="TOML", help="executor config for --executor slurm (as `vittui train`)")
    s.add_argument("--detach", action="store_true", help="run the driver in the background and return")
    s.add_argument("--json", action="store_true", help=JSON_HELP)
    s.add_argument("--tui", action="store_true", help="(status) open the dashboard's sweep screen")
    s.add_argument("-o", "--output", help="(best) where to write the best trial's recipe")
    s.set_defaults(func=run)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def run(args) -> int:
    if args.preset in ("status", "best"):
        if not args.study_name:
            return _error(f"vittui sweep {args.preset} needs a STUDY name")
        storage = args.storage or _default_storage(args)
        return _status(args, storage) if args.preset == "status" else _best(args, storage)
    if args.study_name:
        return _error(f"unexpected argument {args.study_name!r} (a sweep takes one PRESET)")
    return _sweep(args)


def _default_storage(args) -> str:
    from vittui.sweep.storage import default_storage

    return default_storage(runs_root(args))


def _sweep(args) -> int:
    from vittui.runs.store import slug
    from vittui.sweep.driver import SweepConfig, drive
    from vittui.sweep.space import SpaceError, load_space

    if not args.space:
        return _error("vittui sweep needs --space SPACE.toml (one table per recipe key)")
    if args.trials is None or args.trials < 1:
        return _error("vittui sweep needs --trials N with N >= 1")
    if args.parallel < 1:
        return _error(f"--parallel must be >= 1 (got {args.parallel})")
    for flag in ("max_cpu_runs", "max_per_gpu"):
        opt, value = "--" + flag.replace("_", "-"), getattr(args, flag)
        if value is not None and value < 1:
            return _error(f"{opt} must be >= 1 (got {value})")
        if value is not None and args.executor == "slurm":
            return _error(f"{opt} sets this box's queue; with --executor slurm, Slurm decides how many trials run")
    recipe = load_recipe(args)
    try:
        space = load_space(args.space, recipe)
        if args.sampler == "grid":
            space.grid()
    except SpaceError as e:
        print(f"SpaceError: {e}", file=sys.stderr)
        return 2
    root = runs_root(args)
    if recipe.run.output_dir != "runs" and not args.runs_dir:
        root = Path(recipe.run.output_dir)
    study = slug(args.study or f"{Path(args.preset).stem}-sweep")
    storage = args.storage or _default_storage(args)
    slurm_config = None
    if args.slurm_config and args.executor != "slurm":
        return _error("--slurm-config needs --executor slurm")
    if args.executor == "slurm":
        from vittui.commands.train import slurm_config_of

        if (slurm_config := slurm_config_of(args)) is None:  # the one line is printed
            return 2
    lock = root / f"{study}.sweep.lock"
    if (holder := _driver_holding(lock, study)) is not None:
        return _error(holder)
    if args.detach:
        return _detach(args, root, study, storage)
    if args.executor == "local":
        _queue_slots(root, args)
    cfg = SweepConfig(recipe=recipe, space=space, runs_root=root, study=study, storage=storage,
                      n_trials=args.trials, sampler=args.sampler, pruner=args.pruner, objective=args.objective,
                      parallel=args.parallel, seed=args.seed, executor=args.executor, slurm=slurm_config)
    root.mkdir(parents=True, exist_ok=True)
    print(f"sweep {study}: {args.trials} trials of {', '.join(space.keys)} ({args.sampler}, pruner {args.pruner}, "
          f"{args.objective}); storage {storage}", flush=True)
    from vittui.runs.lock import RunLocked, acquire, release

    try:
        acquire(lock)
    except RunLocked:  # another driver took it since the check above
        return _error(_driver_holding(lock, study) or f"study {study}: could not take {lock}")
    try:
        drive(cfg, say=lambda line: print(line, flush=True))
    except ValueError as e:  # a study made with another objective or direction, an executor not here
        return _error(str(e))
    finally:
        release(lock)
    return _status(args, storage, study=study)


def _driver_holding(lock: Path, study: str) -> str | None:
    """Why this sweep cannot start here: one driver per study and runs folder (a second one would look after
    the same trials as its own, and tell the trials the first is still enqueueing FAIL). None when free; a
    lock left by a killed driver is free (its pid is dead)."""
    from vittui.runs.lock import is_foreign, lock_holder_alive, read_lock

    if not lock_holder_alive(lock):
        return None
    info = read_lock(lock) or {}
    if is_foreign(info):
        return (f"study {study} is driven from this runs folder by {info.get('host')} (pid {info.get('pid')}); "
                f"if that driver is gone, delete {lock}")
    return (f"study {study} already has a driver in {lock.parent} (pid {info.get('pid')}); it goes on by itself: "
            f"`vittui sweep status {study}` shows it (kill it first to start it again)")


def _queue_slots(root: Path, args) -> None:
    """--max-cpu-runs / --max-per-gpu into the queue's config (the scheduler rereads it on every pass), and
    a note when --parallel asks for more trials at once than the CPU slots let train."""
    from vittui.runs import queue
    from vittui.scheduler import SchedulerConfig

    config = queue.write_config(root, max_cpu_runs=args.max_cpu_runs, max_per_gpu=args.max_per_gpu)
    cpu_slots = max(SchedulerConfig.from_dict(config).max_cpu_runs, 1)
    if args.parallel > cpu_slots:
        print(f"note: trials that train on the CPU run {cpu_slots} at a time (the queue's max_cpu_runs); "
              f"add --max-cpu-runs {args.parallel} for {args.parallel} at once", flush=True)


def _detach(args, root: Path, study: str, storage: str) -> int:
    """The same command without --detach, in a new session: it survives the terminal, output in a log."""
    argv = [sys.executable, "-m", "vittui.cli", "--runs-dir", str(root), "sweep", args.preset, "--space", args.space,
            "--trials", str(args.trials), "--study", study, "--storage", storage, "--sampler", args.sampler,
            "--pruner", args.pruner, "--objective", args.objective, "--parallel", str(args.parallel),
            "--executor", args.executor]
    argv += ["--seed", str(args.seed)] if args.seed is not None else []
    for flag in ("max_cpu_runs", "max_per_gpu"):
        if getattr(args, flag) is not None:
            argv += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    argv += ["--slurm-config", str(Path(args.slurm_config).resolve())] if args.slurm_config else []
    for item in args.set:
        argv += ["--set", item]
    root.mkdir(parents=True, exist_ok=True)
    log_path = root / f"{study}.sweep.log"
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                close_fds=True)
    finally:
        os.close(log)
    print(f"sweep {study} driving in the background (pid {proc.pid}); `vittui sweep status {study}`; log: {log_path}")
    return 0


def _status(args, storage: str, study: str | None = None) -> int:
    from vittui.sweep.status import study_report

    name = study or args.study_name
    if args.tui:
        from vittui.commands.dashboard import run_sweep_screen

        return run_sweep_screen(args, name, storage)
    try:
        report = study_report(name, storage)
    except KeyError as e:
        return _error(e.args[0])
    if args.json:
        print_json(report.to_dict())
        return 0
    for line in status_lines(report):
        print(line)
    return 0


def status_lines(report) -> list[str]:
    keys = report.params
    lines = [f"study {report.study}: {len(report.trials)}"
             + (f"/{report.n_trials}" if report.n_trials else "") + f" trials, {report.direction} {report.objective}"]
    lines.append(f"{'#':>4} {'RUN':<28} {'STATE':<9} {'VALUE':>9} {'PRUNED AT':>9}  " + "  ".join(keys))
    for t in report.trials:
        value = f"{t.value:.4g}" if t.value is not None else "-"
        pruned = str(t.pruned_at) if t.pruned_at is not None else "-"
        params = "  ".join(_fmt(t.params.get(k)) for k in keys)
        lines.append(f"{t.number:>4} {t.run or '-':<28} {t.state:<9} {value:>9} {pruned:>9}  {params}")
    if report.best is not None:
        b = report.best
        lines.append(f"best: trial {b.number} ({b.run}) {report.objective} {b.value:.4g}: "
                     + ", ".join(f"{k}={_fmt(v)}" for k, v in b.params.items()))
    if report.importances:
        lines.append("importances: " + ", ".join(f"{k} {v:.2f}" for k, v in report.importances.items()))
    elif report.importance_note:
        lines.append(report.importance_note)
    return lines


def _fmt(v) -> str:
    if v is None:
        return "-"
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _best(args, storage: str) -> int:
    from vittui.sweep.status import best_recipe_text

    if not args.output:
        return _error("vittui sweep best needs -o FILE.toml")
    try:
        best, text = best_recipe_text(args.study_name, storage)
    except KeyError as e:
        return _error(e.args[0])
    Path(args.output).write_text(text, encoding="utf-8")
    print(f"trial {best.number} ({best.run}, {best.value:.4g}) written to {args.output}")
    return 0

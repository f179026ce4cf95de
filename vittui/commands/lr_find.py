"""`vittui lr-find PRESET [--set k=v]… [--steps 100] [--start 1e-7] [--end 10] [--json] [--plot]`: the LR
range test (vittui/train/lr_find.py) on the recipe's model and data. Pre-flight first; no run directory
is created. `--json` prints one object (the setup screen reads it); otherwise the curve is drawn."""

from __future__ import annotations

import sys

from vittui.commands._common import JSON_HELP, load_recipe, print_json, runs_root


def add_parser(sub) -> None:
    p = sub.add_parser("lr-find", help="LR range test: ramp the lr over ~100 real steps and suggest one")
    p.add_argument("preset", help="recipe .toml or shipped preset name (e.g. demo-digits)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. data.batch_size=32")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps of the ramp (default 100)")
    p.add_argument("--start", type=float, default=1e-7, help="first lr (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last lr (default 10)")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.add_argument("--plot", action="store_true", help="draw the curve even with --json (on stderr)")
    p.set_defaults(func=run)


def check_ramp(steps: int, start: float, end: float) -> str | None:
    """The one line that refuses a ramp, or None."""
    if steps < 2:
        return f"--steps must be at least 2 (got {steps})"
    if not 0 < start < end:
        return f"--start and --end must satisfy 0 < start < end (got {start:g}, {end:g})"
    return None


def build_for_finder(args):
    """The recipe's `Built` with nothing written to disk, after pre-flight; (built, None) or (None, problems)."""
    from pathlib import Path

    from vittui.planning.preflight_libs import preflight

    recipe = load_recipe(args)
    root = runs_root(args) if getattr(args, "runs_dir", None) or recipe.run.output_dir == "runs" else Path(recipe.run.output_dir)
    if problems := preflight(recipe, root):
        return None, problems
    from vittui.train.build import build

    # `record=False`: the Emitter writes nothing, so the path is never created
    return build(recipe, root / f".{recipe.run.name}-finder", record=False), []


def run(args) -> int:
    if bad := check_ramp(args.steps, args.start, args.end):
        print(f"error: {bad}", file=sys.stderr)
        return 2
    b, problems = build_for_finder(args)
    if problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
        return 2
    from vittui.train.lr_find import find_lr, plot

    def progress(i: int, lr: float, loss: float) -> None:
        if not args.json and (i % 10 == 0 or i == 1):
            print(f"  step {i:>4d}  lr {lr:.2e}  loss {loss:.4f}", file=sys.stderr, flush=True)

    result = find_lr(b, steps=args.steps, start=args.start, end=args.end, on_step=progress)
    if args.json:
        if args.plot:
            print(plot(result, color=sys.stderr.isatty()), file=sys.stderr)
        print_json(result.as_dict())
        return 0
    print(plot(result, color=sys.stdout.isatty()))
    print(f"{result.steps} steps, lr {args.start:g} -> {result.lrs[-1] if result.lrs else args.start:.2e}"
          + (" (stopped early: the loss diverged)" if result.stopped_early else ""))
    if result.suggested_lr is None:
        print("no step gave a finite loss: no suggestion (lower --start)")
        return 1
    print(f"suggested lr: {result.suggested_lr:.3g}   (rule: {result.rule})")
    print(f"apply it with --set optim.lr={result.suggested_lr:.3g}")
    return 0

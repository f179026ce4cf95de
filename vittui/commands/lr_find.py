"""`vittui lr-find PRESET [--set k=v]… [--steps 100] [--start 1e-7] [--end 10] [--json] [--plot]`: the LR
range test (vittui/train/lr_find.py) on the recipe's model and data. Pre-flight first; no run directory
is created. `--json` prints one object (the setup screen reads it); otherwise the curve is drawn."""

from __future__ import annotations

import math
import sys

from vittui.commands._common import FINDER_JSON_HELP, print_json
from vittui.commands._finder import build_for_finder

PROGRESS = "lr-find: step "  # the progress lines' prefix (stderr), which the setup screen looks for


def add_parser(sub) -> None:
    p = sub.add_parser("lr-find", help="LR range test: ramp the lr over ~100 real steps and suggest one")
    p.add_argument("preset", help="recipe .toml or shipped preset name (e.g. demo-digits)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. data.batch_size=32")
    p.add_argument("--steps", type=int, default=100, help="optimizer steps of the ramp (default 100)")
    p.add_argument("--start", type=float, default=1e-7, help="first lr (default 1e-7)")
    p.add_argument("--end", type=float, default=10.0, help="last lr (default 10)")
    p.add_argument("--json", action="store_true", help=FINDER_JSON_HELP)
    p.add_argument("--plot", action="store_true", help="draw the curve even with --json (on stderr)")
    p.set_defaults(func=run)


def check_ramp(steps: int, start: float, end: float) -> str | None:
    """The one line that refuses a ramp, or None."""
    if steps < 2:
        return f"--steps must be at least 2 (got {steps})"
    if not 0 < start < end:
        return f"--start and --end must satisfy 0 < start < end (got {start:g}, {end:g})"
    return None


def run(args) -> int:
    if bad := check_ramp(args.steps, args.start, args.end):
        print(f"error: {bad}", file=sys.stderr)
        return 2
    if (b := build_for_finder(args)) is None:
        return 2
    from vittui.train.lr_find import find_lr

    def progress(i: int, lr: float, loss: float) -> None:
        # on stderr, every step under --json (the setup screen shows it as it comes), every tenth for a person
        if args.json or i % 10 == 0 or i == 1:
            print(f"{PROGRESS}{i}/{args.steps}  lr {lr:.2e}  loss {loss:.4f}", file=sys.stderr, flush=True)

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


def plot(result, width: int = 80, height: int = 20, color: bool = True) -> str:
    """An `LRFindResult` as terminal text (plotext): the smoothed loss (blue) and the raw loss (gray)
    against the lr on a log axis with a tick per decade, the suggestion a red vertical line. The y range
    runs from the smoothed minimum to a little above the starting loss, so the divergence at the end does
    not flatten the part that matters."""
    import plotext as plt

    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    finite = [(lr, loss, sm) for lr, loss, sm in zip(result.lrs, result.losses, result.smoothed)
              if math.isfinite(loss) and math.isfinite(sm)]
    title = "LR range test"
    if finite:
        lrs, losses, smoothed = (list(c) for c in zip(*finite))
        plt.xscale("log")
        plt.plot(lrs, losses, color="gray", label="loss")
        plt.plot(lrs, smoothed, color="blue", label="smoothed")
        low, high = min(smoothed), max(smoothed[0], min(smoothed)) * 1.25
        plt.ylim(low - 0.05 * (high - low), high)
        decades = range(math.floor(math.log10(lrs[0])), math.ceil(math.log10(lrs[-1])) + 1)
        ticks = [10.0 ** d for d in decades if lrs[0] <= 10.0 ** d <= lrs[-1]]
        if ticks:
            plt.xticks(ticks, [f"{t:.0e}" for t in ticks])
        if result.suggested_lr is not None:
            plt.vline(result.suggested_lr, color="red")
            title += f": suggested lr {result.suggested_lr:.2e} (red line)"
    plt.title(title)
    plt.xlabel("lr")
    text = plt.build()
    return text if color else plt.uncolorize(text)

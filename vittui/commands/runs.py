"""`vittui runs`: every run in the runs folder with its live state, step and metrics; a queued run shows its
place in line (`queued:2`, JSON `queue_position`)."""

from __future__ import annotations

from vittui.commands._common import JSON_HELP, print_json, runs_root


def add_parser(sub) -> None:
    r = sub.add_parser("runs", help="list runs with their live state")
    r.add_argument("--json", action="store_true", help=JSON_HELP)
    r.set_defaults(func=run)


def run(args) -> int:
    from vittui.runs.queue import queued
    from vittui.runs.registry import scan_runs

    rows = scan_runs(runs_root(args))
    line = {r.name: i for i, r in enumerate(queued(runs_root(args)), 1)}
    if args.json:
        print_json([{"name": r.name, "path": r.path, "state": r.state, "step": r.step, "total_steps": r.total_steps,
                     "epoch": r.epoch, "best_top1": r.best_top1, "last_top1": r.last_top1, "model": r.model,
                     "updated": r.updated or None, "queue_position": line.get(r.name)} for r in rows])
        return 0
    if not rows:
        print(f"no runs in {runs_root(args)}/")
        return 0
    print(f"{'NAME':<28} {'STATE':<9} {'STEP':>13} {'BEST':>7} {'LAST':>7}  MODEL")
    for r in rows:
        best = f"{r.best_top1:.2f}" if r.best_top1 is not None else "-"
        last = f"{r.last_top1:.2f}" if r.last_top1 is not None else "-"
        state = f"queued:{line[r.name]}" if r.state == "queued" and r.name in line else r.state
        print(f"{r.name:<28} {state:<9} {f'{r.step}/{r.total_steps}':>13} {best:>7} {last:>7}  {r.model}")
    return 0

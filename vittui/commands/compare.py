"""`vittui compare RUN RUN…`: the recipe fields that differ, with each run's best and last metrics."""

from __future__ import annotations

import json
import sys

from vittui.commands._common import resolve_run


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="compare runs: differing recipe fields, best and last metrics")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run names (in --runs-dir) or run folders")
    p.add_argument("--json", action="store_true", help="print the comparison (with curves) as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from vittui.runs.compare import compare_runs, format_table

    if len(args.runs) < 2:
        print("error: compare needs at least two runs", file=sys.stderr)
        return 2
    paths = [resolve_run(args, name).path for name in args.runs]
    cmp = compare_runs(paths)
    if args.json:
        print(json.dumps(cmp.to_dict(), indent=1, allow_nan=False))
    else:
        print(format_table(cmp))
    return 0

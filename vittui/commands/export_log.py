"""`vittui export-log RUN… --format tensorboard|csv|jsonl -o DIR [--follow]`: a run's log in the formats
other tools read, one subfolder of DIR per run. No torch: it reads the run directory only
(`vittui.analysis.log_export`). `--follow` keeps converting as the runs go on, a reader beside the worker,
until every run reaches a final state (or Ctrl-C)."""

from __future__ import annotations

import argparse
import sys
import time

from vittui.commands._common import resolve_run

POLL_SECONDS = 0.5


def add_parser(sub) -> None:
    p = sub.add_parser("export-log", help="a run's log as TensorBoard event files, CSV or JSON lines")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run names or run folders")
    p.add_argument("--format", default="tensorboard", help="tensorboard (default) | csv | jsonl")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder (one subfolder per run)")
    p.add_argument("--follow", action="store_true", help="keep converting until the runs end (or Ctrl-C)")
    p.add_argument("--interval", type=float, default=POLL_SECONDS, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from vittui.analysis.log_export import FORMATS, open_exports
    from vittui.runs.registry import is_live, run_state

    if args.format not in FORMATS:
        print(f"error: unknown format {args.format!r} (choose {', '.join(FORMATS)})", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        print(f"error: -o {out}: is a file, not a folder", file=sys.stderr)
        return 2
    runs = [resolve_run(args, name) for name in args.runs]  # FileNotFoundError: one line, exit 2 (cli.py)
    try:
        exports = open_exports(runs, out, args.format)
    except OSError as e:
        print(f"error: -o {out}: {e.strerror or e}", file=sys.stderr)
        return 2
    try:
        for x in exports:
            x.poll()
        while args.follow and exports:
            live = [x for x in exports if not x.closed]
            if not live:
                break
            time.sleep(args.interval)
            for x in live:
                ended = not is_live(run_state(x.run))
                x.poll()
                if ended:  # the final state seen: one more read for anything written just before it
                    x.poll()
                    x.close()
    except KeyboardInterrupt:
        pass
    finally:
        for x in exports:
            x.close()
    print(f"exported {len(exports)} run(s) as {args.format} to {out}/", file=sys.stderr)
    return 0

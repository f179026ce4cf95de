"""`vittui attach RUN [--tui]`: follow a run, headless (history, live progress, keys) or in the dashboard."""

from __future__ import annotations

from vittui.commands import dashboard
from vittui.commands._common import resolve_run


def add_parser(sub) -> None:
    a = sub.add_parser("attach", help="follow a run: history, live progress, keys p/r/s/c/e")
    a.add_argument("run")
    a.add_argument("--tui", action="store_true", help="attach in the dashboard")
    a.set_defaults(func=run)


def run(args) -> int:
    rd = resolve_run(args, args.run)
    if args.tui:
        return dashboard.run(args, attach=str(rd.path))
    from vittui.runs.attach import attach_headless

    return attach_headless(rd)

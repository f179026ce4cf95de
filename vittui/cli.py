"""`vittui` — the dashboard — and its headless commands: this module parses the arguments and dispatches to
`vittui.commands.<name>.run`; the commands live one per module in `vittui/commands/`, each with its own
`add_parser(sub)`.

Exit codes: 0 ok, 1 the run failed, 2 bad input. Bad input is reported as one line a person can act
on, never a traceback. Heavy imports (torch, Textual) happen inside the command that needs them.
"""

from __future__ import annotations

import argparse
import sys

from vittui.commands import (attach, batch_find, check, compare, ctl, dashboard, estimate, export, export_log,
                             export_model, lr_find, predict, queue, runs, select, sweep, train)
from vittui.commands import eval as evaluate
from vittui.recipe import RecipeError

# In the order `vittui --help` lists them.
SUBCOMMANDS = (train, check, queue, runs, ctl, attach, compare, export_log, estimate, lr_find, batch_find, evaluate,
               export, export_model, predict, select, sweep)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="vittui", description="Train and fine-tune Vision Transformers from the terminal.")
    p.add_argument("--runs-dir", help="folder holding runs (default ./runs or $VITTUI_RUNS)")
    p.add_argument("--preset", help="recipe the dashboard opens with (default demo-digits)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=argparse.SUPPRESS)
    sub = p.add_subparsers(dest="cmd")
    for command in SUBCOMMANDS:
        command.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    _revive_queue(args)
    try:
        if func is None:
            return dashboard.run(args)
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


def _revive_queue(args) -> None:
    """Restart the queue's scheduler when runs wait and none is alive (killed, machine rebooted). One
    directory listing when nothing is queued: no psutil, nothing that delays the dashboard's first frame."""
    from vittui.commands._common import runs_root
    from vittui.runs.queue import revive

    revive(runs_root(args))


if __name__ == "__main__":
    sys.exit(main())

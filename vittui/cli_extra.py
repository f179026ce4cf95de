"""Subcommands beyond train/runs/ctl/attach live one per module in `vittui/commands/`, each with an
`add_parser(sub)`; they are found here so that adding a command touches no shared file."""

from __future__ import annotations

import importlib
import pkgutil


def register(sub) -> None:
    import vittui.commands as pkg

    for info in sorted(pkgutil.iter_modules(pkg.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"vittui.commands.{info.name}").add_parser(sub)

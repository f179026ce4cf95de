"""Subcommands beyond train/runs/ctl/attach, each registered by its own module so that `cli.py`
stays a table of contents: eval, estimate, export, select (planning and analysis)."""

from __future__ import annotations

import importlib

MODULES: list[str] = []


def register(sub) -> None:
    for name in MODULES:
        importlib.import_module(name).add_parser(sub)

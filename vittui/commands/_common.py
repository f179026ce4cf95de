"""Helpers shared by subcommands."""

from __future__ import annotations

import os
from pathlib import Path


def runs_root(args) -> Path:
    return Path(getattr(args, "runs_dir", None) or os.environ.get("VITTUI_RUNS", "runs"))


def resolve_run(args, name: str):
    """`vittui.runs.registry.resolve_run` in the runs folder these arguments name."""
    from vittui.runs.registry import resolve_run as _resolve

    return _resolve(name, runs_root(args))


def load_recipe(args):
    """The recipe named by `args.preset` (a .toml file or a shipped preset), with the `--set` overrides."""
    from vittui.recipe import load_preset

    recipe = load_preset(args.preset)
    if args.set:
        recipe = recipe.with_overrides(args.set, source="--set")
    return recipe

"""Helpers shared by subcommands."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any


JSON_HELP = "print JSON instead of text (shapes: README, \"JSON output\")"
FINDER_JSON_HELP = "print one JSON object instead of text (shape: README, \"LR range test and batch-size finder\")"


def _plain(x: Any) -> Any:
    """JSON-safe: non-finite floats become null, tuples lists, paths strings."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, Path):
        return str(x)
    return x


def print_json(obj: Any) -> None:
    """One JSON document on stdout: `--json` output of every listing (`vittui runs`, `estimate`, `select`, `eval`)."""
    print(json.dumps(_plain(obj), indent=1, allow_nan=False))


def runs_root(args) -> Path:
    return Path(getattr(args, "runs_dir", None) or os.environ.get("VITTUI_RUNS", "runs"))


def output_root(args, recipe) -> Path:
    """Where a new run of `recipe` goes: --runs-dir / $VITTUI_RUNS, or `run.output_dir` when the recipe
    moves it from the default."""
    if recipe.run.output_dir != "runs" and not getattr(args, "runs_dir", None):
        return Path(recipe.run.output_dir)
    return runs_root(args)


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


def slurm_action(action, rd, done: str) -> int:
    """`action(rd)` from runs/slurm.py (cancel, resubmit) and the line `done` says with its `{job}` id; a
    SlurmError (no scancel/sbatch, a refusal) is one line on stderr and exit 2."""
    import sys

    from vittui.runs.slurm import SlurmError

    try:
        job_id = action(rd)
    except SlurmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(done.format(job=job_id))
    return 0

"""What `lr-find` and `batch-find` share: the recipe of their arguments, pre-flighted and built, writing
nothing. A module of its own because it imports the training build (torch): `_common` is imported by the
torch-free commands and must stay torch-free (import-linter contract)."""

from __future__ import annotations

import os

from vittui.commands._common import load_recipe, output_root
from vittui.commands.train import refused


def build_for_finder(args):
    """The recipe of `args` built for `lr-find` / `batch-find` (a `vittui.train.build.Built`), after
    pre-flight, writing nothing: no run directory. None after printing the problems, one line each."""
    recipe = load_recipe(args)
    root = output_root(args, recipe)  # as `vittui train` decides
    if refused(recipe, root):
        return None
    from vittui.train.build import build

    # `record=False`: the Emitter writes nothing, so this path is never created
    return build(recipe, root / f".finder-{os.getpid()}", record=False)

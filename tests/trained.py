"""Tiny runs trained with the real loop, for the tests that read finished run directories (compare in
tests/runs, predict and export in tests/deploy). The fixtures are session-scoped in tests/conftest.py:
each run costs a few seconds and every reader leaves it unchanged."""

from __future__ import annotations

from pathlib import Path

from tiny import TINY

from vittui.recipe import Recipe

# what run "b" changes from run "a": compare must report exactly these keys
B_CHANGES = {"optim.lr": 2e-3, "regularize.label_smoothing": 0.0}


def tiny_overrides() -> list[str]:
    """The tiny model and data of tests/tiny.py, stopped after 4 optimizer steps."""
    return list(TINY) + ["schedule.max_steps=4"]


def train_tiny(root: Path, name: str, extra: list[str]) -> Path:
    from vittui.runs.launcher import prepare_run
    from vittui.train.loop import train

    recipe = Recipe().with_overrides(tiny_overrides() + extra)
    run = prepare_run(recipe, root, name)
    result = train(recipe, run.path)
    assert result.state == "finished", result
    return run.path

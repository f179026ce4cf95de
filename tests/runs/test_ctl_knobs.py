"""`vittui ctl RUN set`: the knob's one name (`--lr-multiplier`; `--lr-scale` still read), values checked
before anything is written (one line, exit 2, commands.jsonl untouched), knobs written under their one name."""

import json
import os

import pytest

from vittui.cli import main
from vittui.recipe import Recipe, save
from vittui.runs.store import RunDir, RunStatus


@pytest.fixture
def live_run(tmp_path):
    """A run directory whose status says running with this process as its worker (so it counts as live)."""
    run = RunDir(tmp_path / "live").create()
    save(Recipe(), run.recipe_path)
    run.write_status(RunStatus(state="running", step=5, total_steps=10, pid=os.getpid()))
    return run


def sent(run) -> list[dict]:
    if not run.commands_path.exists():
        return []
    return [json.loads(line) for line in run.commands_path.read_text().splitlines()]


def test_set_writes_knobs_under_their_one_name(live_run, capsys):
    assert main(["ctl", str(live_run.path), "set", "--lr-multiplier", "0.5", "--eval-every", "20"]) == 0
    assert main(["ctl", str(live_run.path), "set", "--lr-scale", "0.25"]) == 0  # the old option still works
    assert [(c["command"], c["args"]) for c in sent(live_run)] == [
        ("set", {"lr_multiplier": 0.5, "eval_every": 20}), ("set", {"lr_multiplier": 0.25})]


@pytest.mark.parametrize("argv, line", [
    (["--lr-multiplier", "0"], "error: lr_multiplier must be > 0 (got 0.0)"),
    (["--lr-multiplier", "nan"], "error: lr_multiplier must be a number (got nan)"),
    (["--eval-every", "-3"], "error: eval_every must be a whole number of steps >= 0, 0 for off (got -3)"),
])
def test_bad_knob_values_are_one_line_exit_2_and_nothing_sent(live_run, capsys, argv, line):
    assert main(["ctl", str(live_run.path), "set", *argv]) == 2
    err = capsys.readouterr().err
    assert err.strip() == line and "Traceback" not in err
    assert sent(live_run) == []

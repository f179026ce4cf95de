"""The space file is checked before any trial: each problem one line on stderr, exit 2, nothing written
(no runs folder, no study)."""

from __future__ import annotations

import pytest

from vittui.cli import main
from vittui.recipe import load_preset
from vittui.sweep.space import SpaceError, parse_space

# (space file, a phrase the one error line must hold)
BAD = [
    ("[optim.lrr]\nlow = 1e-4\nhigh = 1e-3\n", "unknown key optim.lrr (did you mean optim.lr?)"),
    ("[optimm.lr]\nlow = 1e-4\nhigh = 1e-3\n", "unknown key optimm"),
    ("[optim.lr]\nlow = 1e-3\nhigh = 1e-4\n", "optim.lr: low must be < high"),
    ("[optim.lr]\nlow = 1e-3\nhigh = 1e-3\n", "optim.lr: low must be < high"),
    ("[optim.lr]\nlow = 0.0\nhigh = 1e-3\nlog = true\n", "optim.lr: a log range needs low > 0"),
    ("[adapt.freeze_blocks]\nchoices = []\n", "adapt.freeze_blocks: choices must be a non-empty list"),
    ("[adapt.freeze_blocks]\nchoices = [0, \"two\"]\n", "adapt.freeze_blocks must be an integer (got 'two')"),
    ("[data.batch_size]\nlow = 16.5\nhigh = 64\n", "data.batch_size.low must be an integer"),
    ("[data.batch_size]\nlow = 16\nhigh = 64\nstep = 0\n", "data.batch_size: step must be > 0"),
    ("[optim.name]\nlow = 1\nhigh = 2\n", "optim.name is a string: sweep it with choices"),
    ("[optim.name]\nchoices = [\"adamw\", \"adamx\"]\n", "optim.name must be one of"),
    ("[optim.lr]\nlow = 1e-4\n", "optim.lr needs low and high"),
    ("[optim.lr]\nlow = 1e-4\nhigh = 1e-3\nlg = true\n", "optim.lr: unknown entry 'lg'"),
    ("[optim.lr]\nlow = -1e-3\nhigh = 1e-3\n", "optim.lr must be > 0 (got -0.001)"),  # a corner the recipe refuses
    # two values that clash only together: min_lr (1e-5 in demo-digits) above the lowest lr
    ("[optim.lr]\nlow = 1e-6\nhigh = 1e-3\n", "schedule.min_lr (1e-05) must not exceed optim.lr (1e-06)"),
    ("[model.depth]\nchoices = [2, 4]\n[adapt.freeze_blocks]\nchoices = [0, 3]\n",
     "the corner model.depth=2, adapt.freeze_blocks=3 is refused by the recipe"),
    ("[optim.lr\nlow = 1\n", "is not valid TOML"),
    ("", "the space is empty"),
]


@pytest.mark.parametrize("text, phrase", BAD, ids=[b[1][:40] for b in BAD])
def test_bad_space_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, text, phrase):
    space = tmp_path / "space.toml"
    space.write_text(text)
    runs = tmp_path / "runs"
    rc = main(["--runs-dir", str(runs), "sweep", "demo-digits", "--space", str(space), "--trials", "3"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert phrase in err, err
    assert not runs.exists()  # no runs folder, so neither a run directory nor sweeps.db


def test_good_space_reads_ranges_and_choices():
    base = load_preset("demo-digits")
    space = parse_space({"optim": {"lr": {"low": 1e-4, "high": 3e-3, "log": True}},
                         "data": {"batch_size": {"low": 16, "high": 64, "step": 16}},
                         "adapt": {"freeze_blocks": {"choices": [0, 2, 4]}}}, base)
    by_key = {p.key: p for p in space.params}
    assert (by_key["optim.lr"].kind, by_key["optim.lr"].log) == ("float", True)
    assert by_key["data.batch_size"].grid() == [16, 32, 48, 64]
    assert by_key["adapt.freeze_blocks"].choices == (0, 2, 4)


def test_grid_sampler_needs_a_step_on_float_ranges(tmp_path, capsys):
    space = tmp_path / "space.toml"
    space.write_text("[optim.lr]\nlow = 1e-4\nhigh = 1e-3\n")
    rc = main(["--runs-dir", str(tmp_path / "runs"), "sweep", "demo-digits", "--space", str(space), "--trials", "3",
               "--sampler", "grid"])
    assert rc == 2 and "the grid sampler needs choices or a step" in capsys.readouterr().err
    with pytest.raises(SpaceError):
        parse_space({"optim": {"lr": {"low": 1e-4, "high": 1e-3}}}, load_preset("demo-digits")).grid()

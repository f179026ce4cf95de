"""`vittui compare` lists each run's live knob changes (step, knob, old -> new) beside the recipe
differences, from the same fold as the monitor's markers; `--json` carries them; a change redone away by a
resume is not listed."""

import json

from fake_events import fake_run, started, step

from vittui.cli import main
from vittui.runs import events as ev


def ack(s: int, t: float, **changes) -> ev.ControlAck:
    return ev.ControlAck(command="set", id=f"c{s}", step=s, detail="", t=t,
                         changes={k: list(v) for k, v in changes.items()})


def two_runs(tmp_path):
    """Run "a": lr halved at 2, eval interval 10 at 3, probe interval 5 at 5 — then resumed from its
    checkpoint at 4, so the change at 5 was redone away. Run "b": no knob touched."""
    a = fake_run(tmp_path / "a", [started(t=0.0), step(1, 9.0, 1), step(2, 8.0, 2),
                                  ack(2, 2.1, lr_multiplier=(1.0, 0.5)), step(3, 7.0, 3),
                                  ack(3, 3.1, eval_every=(0, 10)), step(4, 6.0, 4), step(5, 5.0, 5),
                                  ack(5, 5.1, probe_every=(0, 5)), started(resumed=4, t=10.0), step(5, 5.5, 11)])
    b = fake_run(tmp_path / "b", [started(t=0.0), step(1, 9.0, 1), step(2, 8.5, 2)])
    return a, b


def test_compare_lists_knob_changes_in_the_table(tmp_path, capsys):
    a, b = two_runs(tmp_path)
    assert main(["compare", str(a.path), str(b.path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    counts = next(line for line in lines if line.startswith("knob changes"))
    assert counts.split()[2:] == ["2", "0"]
    rows = [line for line in lines if line.startswith("  change")]
    assert len(rows) == 2
    assert "@2 lr_multiplier 1 -> 0.5" in rows[0] and rows[0].rstrip().endswith("-")
    assert "@3 eval_every 0 -> 10" in rows[1]
    assert "probe_every" not in "\n".join(lines)  # set at 5, after the checkpoint the run resumed from


def test_compare_json_carries_knob_changes(tmp_path, capsys):
    a, b = two_runs(tmp_path)
    assert main(["compare", "--json", str(a.path), str(b.path)]) == 0
    runs = json.loads(capsys.readouterr().out)["runs"]
    assert runs[0]["knob_changes"] == [{"step": 2, "knob": "lr_multiplier", "old": 1.0, "new": 0.5},
                                       {"step": 3, "knob": "eval_every", "old": 0, "new": 10}]
    assert runs[1]["knob_changes"] == []

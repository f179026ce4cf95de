"""Markers folded from events a real (in-process, tiny) run recorded: a live `set` of the lr multiplier
and a divergence rewind, with the resume rule applied to what the rewind redid."""

from vittui.runs import events as ev
from vittui.runs.control import InProcessControl
from vittui.runs.history import KnobChange, RunHistory
from vittui.runs.launcher import prepare_run
from vittui.train.faults import Faults
from vittui.train.loop import train


def test_a_knob_change_and_a_rewind_recorded_by_a_real_run(tmp_path, tiny_recipe):
    r = tiny_recipe.with_overrides(["run.probe_every=0", "run.checkpoint_every=3", "run.on_divergence=rewind",
                                    "run.rewind_lr_factor=0.5"])
    run = prepare_run(r, tmp_path, "t")
    control = InProcessControl()

    def on_event(e):
        if isinstance(e, ev.Step) and e.step == 2 and not any(c.command == "set" for c in sent):
            sent.append(control.send("set", lr_multiplier=0.5))

    sent = []
    result = train(r, run.path, control, on_event=on_event, faults=Faults(nan_at=8))
    assert result.state == "finished"
    events = ev.read_all(run.events_path)
    [ack] = [e for e in events if isinstance(e, ev.ControlAck)]
    assert (ack.command, ack.step, ack.changes) == ("set", 2, {"lr_multiplier": [1.0, 0.5]})
    [rw] = [e for e in events if isinstance(e, ev.Rewound)]
    assert (rw.to_step, rw.lr_multiplier) == (6, 0.25)  # checkpoints every 3; the NaN at 8 goes back to 6

    h = RunHistory(max_buckets=None)
    h.feed(events)
    assert [(m.step, m.kind, m.tag) for m in h.markers] == [(2, "knob", "lr x0.5"), (6, "rewind", "rewind lr x0.25")]
    assert h.knob_changes == [KnobChange(2, "lr_multiplier", 1.0, 0.5)]
    assert h.knobs == {"lr_multiplier": 0.25}

"""Markers in the one event fold: knob changes (old -> new, from the worker's acks), pauses and resumes,
faults, suspends and worker restarts, each at its step; the resume rule drops the ones after the step a
resume goes back to, as it drops steps."""

from fake_events import started, step

from vittui.runs import events as ev
from vittui.runs.history import KnobChange, Marker, RunHistory, markers_of


def ack(s: int, t: float, ok: bool = True, command: str = "set", **changes) -> ev.ControlAck:
    return ev.ControlAck(command=command, id=f"c{s}", step=s, ok=ok, detail="", t=t,
                         changes={k: list(v) for k, v in changes.items()})


# a run: lr halved at 2, paused and resumed at 3, eval interval set at 4, a NaN at 6 (the step not taken)
# that paused it at 5; killed, the worker resumed from its checkpoint at 4
LIVE = [started(t=0.0), step(1, 9.0, 1), step(2, 8.0, 2), ack(2, 2.1, lr_multiplier=(1.0, 0.5)),
        step(3, 7.0, 3), ev.Status(state="paused", step=3, reason="paused by user", t=3.1),
        ev.Status(state="running", step=3, reason="resumed", t=3.2), step(4, 6.0, 4),
        ack(4, 4.1, eval_every=(0, 10)), step(5, 5.0, 5),
        ev.Fault(fault="nan", step=6, message="loss is nan at step 6", t=6.0),
        ev.Status(state="paused", step=5, reason="non-finite loss at step 6", t=6.1)]


def kinds(h: RunHistory) -> list[tuple[int, str]]:
    return [(m.step, m.kind) for m in h.markers]


def test_knob_changes_pauses_and_faults_are_marked_at_their_steps():
    h = RunHistory()
    h.feed(LIVE)
    assert kinds(h) == [(2, "knob"), (3, "pause"), (3, "resume"), (4, "knob"), (6, "fault"), (5, "pause")]
    assert h.markers[0] == Marker(2, "knob", "lr_multiplier 1 -> 0.5", "lr x0.5")
    assert h.markers[3].label == "eval_every 0 -> 10" and h.markers[3].tag == "eval 10"
    assert h.markers[5].label == "pause: non-finite loss at step 6"
    assert h.knob_changes == [KnobChange(2, "lr_multiplier", 1.0, 0.5), KnobChange(4, "eval_every", 0, 10)]
    assert h.knobs == {"lr_multiplier": 0.5, "eval_every": 10}


def test_a_resume_drops_the_markers_after_its_checkpoint_and_marks_the_restart():
    h = RunHistory()
    h.feed(LIVE + [started(resumed=3, t=10.0), step(4, 6.5, 11)])
    # the knob change at 4, the fault at 6 and the pause at 5 were after the checkpoint at 3: redone, gone
    assert kinds(h) == [(2, "knob"), (3, "pause"), (3, "resume"), (3, "restart")]
    assert h.knob_changes == [KnobChange(2, "lr_multiplier", 1.0, 0.5)]
    # the new worker starts from its recipe's intervals and the lr multiplier its checkpoint (at 3) kept
    assert h.knobs == {"lr_multiplier": 0.5}


def test_a_start_over_keeps_no_knob():
    h = RunHistory()
    h.feed(LIVE + [started(resumed=0, t=10.0)])
    assert kinds(h) == [(0, "restart")] and h.knob_changes == [] and h.knobs == {}


def test_a_divergence_rewind_is_marked_where_it_went_back_to_and_sets_the_lr_multiplier():
    h = RunHistory()
    # the loss spiked at step 6; the guard reloaded the checkpoint at 4 and halved the multiplier (0.5 -> 0.25)
    h.feed(LIVE[:10] + [ev.Fault(fault="spike", step=6, message="loss spike", t=6.0),
                        ev.Rewound(step=6, to_step=4, lr_multiplier=0.25, reason="loss spike at step 6", t=6.1),
                        step(5, 5.2, 7)])
    assert kinds(h) == [(2, "knob"), (3, "pause"), (3, "resume"), (4, "knob"), (4, "rewind")]  # the fault at 6: gone
    assert h.markers[-1] == Marker(4, "rewind", "rewind: diverged at step 6 (loss spike at step 6), back to step 4, "
                                                "lr multiplier 0.25", "rewind lr x0.25")
    assert h.knobs == {"lr_multiplier": 0.25, "eval_every": 10}
    # killed later and resumed from the checkpoint at 4: the multiplier the rewind set is the one kept
    h.feed([started(resumed=4, t=20.0)])
    assert h.knobs == {"lr_multiplier": 0.25} and kinds(h)[-1] == (4, "restart")


def test_repeated_steps_without_a_resume_event_drop_markers_the_same_way():
    h = RunHistory()
    h.feed(LIVE[:9] + [step(3, 6.9, 9)])  # step 3 again: the history rewinds to 2
    assert kinds(h) == [(2, "knob")]


def test_suspend_markers_carry_their_reason():
    h = RunHistory()
    why = "suspended automatically: paused 30 min while 2 runs wait for its GPU"
    h.feed([started(t=0.0), step(1, 9.0, 1), ev.Status(state="suspended", step=1, reason=why, t=1.5)])
    assert h.markers == [Marker(1, "suspend", f"suspend: {why}", "zz")]


def test_refused_and_old_acks_change_no_knob():
    old = ev.decode('{"command":"set","id":"k1","step":3,"ok":true,"detail":"lr_scale=0.5","t":1.0,'
                    '"type":"control_ack"}')  # a log written before acks carried their changes
    assert isinstance(old, ev.ControlAck) and old.changes == {}
    refused = ack(4, 2.0, ok=False, command="resume", lr_multiplier=(1.0, 0.5))
    h = RunHistory()
    h.feed([started(t=0.0), old, refused])
    assert h.markers == [] and h.knob_changes == [] and h.knobs == {}
    assert markers_of(refused) == []


def test_markers_survive_a_sampled_replay_exactly(tmp_path):
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path)
    for e in LIVE:
        w.write(e)
    for i in range(6, 2000):
        w.write(step(i, 1.0 / i, 10.0 + i))
    w.close()
    full, sampled = RunHistory(), RunHistory()
    full.feed(ev.read_all(path))
    tail = ev.EventTail(path)
    sampled.feed(tail.poll(step_stride=50))
    assert tail.steps_skipped > 1000
    assert sampled.markers == full.markers and len(full.markers) == 6
    assert sampled.knob_changes == full.knob_changes

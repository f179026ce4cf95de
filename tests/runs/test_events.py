import os

from vittui.runs import events as ev


def test_round_trip_every_event_type(tmp_path):
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path)
    samples = [
        ev.Step(step=1, epoch=0.1, loss=2.3, lr=1e-3, grad_norm=1.0, images_per_s=100.0, data_time=0.01, step_time=0.2),
        ev.Eval(step=1, epoch=0.1, loss=2.0, top1=10.0, top5=50.0),
        ev.Log(level="warning", message="hi"),
        ev.Status(state="paused", step=1, reason="user"),
        ev.ControlAck(command="pause", id="abc", step=1),
        ev.Fault(fault="nan", step=3, message="loss is nan", quantity="loss"),
    ]
    for e in samples:
        w.write(e)
    w.close()
    back = ev.read_all(path)
    assert [type(e) for e in back] == [type(e) for e in samples]
    assert back[0].loss == 2.3 and back[3].state == "paused" and back[5].quantity == "loss"


def test_torn_trailing_line_is_held_back_then_read(tmp_path):
    path = tmp_path / "events.jsonl"
    full = ev.Log(level="info", message="one").to_json() + "\n"
    second = ev.Log(level="info", message="two").to_json()
    path.write_text(full + second[:10])
    tail = ev.EventTail(path)
    assert [e.message for e in tail.poll()] == ["one"]
    with open(path, "a") as f:
        f.write(second[10:] + "\n")
    assert [e.message for e in tail.poll()] == ["two"]


def test_writer_after_a_torn_line_starts_a_fresh_line(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text(ev.Log(level="info", message="one").to_json() + "\n" + '{"type":"log","lev')
    w = ev.EventWriter(path)
    w.write(ev.Log(level="info", message="three"))
    w.close()
    assert [e.message for e in ev.read_all(path)] == ["one", "three"]


def test_unknown_and_garbage_lines_are_skipped(tmp_path):
    path = tmp_path / "events.jsonl"
    path.write_text('{"type":"from_the_future","x":1}\nnot json\n[1,2]\n' + ev.Log(level="info", message="ok").to_json() + "\n")
    assert [e.message for e in ev.read_all(path)] == ["ok"]


def test_tail_reads_in_bounded_chunks(tmp_path):
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path)
    for i in range(2000):
        w.write(ev.Step(step=i, epoch=0, loss=1.0, lr=0.1, grad_norm=0, images_per_s=0, data_time=0, step_time=0))
    w.close()
    tail = ev.EventTail(path, chunk=4096)
    got = tail.poll()
    assert [e.step for e in got] == list(range(2000))
    assert tail.poll() == []
    assert os.stat(path).st_mode & 0o777 == 0o600


def _step(i: int, loss: float = 1.0) -> ev.Step:
    return ev.Step(step=i, epoch=i / 100, loss=loss, lr=0.1, grad_norm=0, images_per_s=0, data_time=0, step_time=0)


def test_step_stride_samples_steps_but_reads_every_other_event(tmp_path):
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path)
    w.write(ev.RunStarted(name="r", model="vit", params_total=1, params_trainable=1, num_classes=2, classes=["a", "b"],
                          train_size=1, val_size=1, steps_per_epoch=100, total_steps=1000, device="cpu"))
    for i in range(1, 1001):
        w.write(_step(i))
        if i % 100 == 0:
            w.write(ev.Eval(step=i, epoch=i / 100, loss=1.0, top1=50.0, top5=90.0))
        if i == 555:
            w.write(ev.Log(level="warning", message="careful", step=i))
    w.close()
    tail = ev.EventTail(path, chunk=4096)  # chunks end mid-line: the held-back part must not confuse the count
    got = tail.poll(max_bytes=20_000, step_stride=10)
    while batch := tail.poll(max_bytes=20_000, step_stride=10):
        got += batch
    steps = [e.step for e in got if isinstance(e, ev.Step)]
    others = [e for e in got if not isinstance(e, ev.Step)]
    assert [type(e).__name__ for e in others] == ["RunStarted"] + ["Eval"] * 5 + ["Log"] + ["Eval"] * 5
    assert steps == sorted(steps) and steps[-1] == 1000
    assert {100 * k for k in range(1, 11)} | {555} <= set(steps)  # the step before any other event is exact
    assert 100 <= len(steps) <= 130 and len(steps) + tail.steps_skipped == 1000
    # the order of the stream is kept: each eval comes right after its step
    for a, b in zip(got, got[1:]):
        if isinstance(b, ev.Eval):
            assert isinstance(a, ev.Step) and a.step == b.step


def test_replay_stride_sizes_the_sample_from_what_is_left(tmp_path):
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path)
    for i in range(1, 3001):
        w.write(_step(i))
    w.close()
    tail = ev.EventTail(path)
    assert ev.replay_stride(tail, 10_000) == 1  # a short run is read whole
    stride = ev.replay_stride(tail, 300)
    assert 3 <= stride <= 13  # ~3000 short lines (STEP_LINE_BYTES is a real line), 300 wanted
    tail.poll()
    assert ev.replay_stride(tail, 300) == 1  # nothing left to read

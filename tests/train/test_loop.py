import math
import threading

import pytest
from tiny import run_in_thread, wait_for

from vittui.runs import events as ev
from vittui.runs.control import InProcessControl
from vittui.runs.launcher import prepare_run
from vittui.train.control_point import ControlPoint
from vittui.train.faults import Faults
from vittui.train.loop import train


def steps(run):
    return [e for e in ev.read_all(run.events_path) if isinstance(e, ev.Step)]


def test_trains_and_writes_the_run_directory(tmp_path, tiny_recipe):
    run = prepare_run(tiny_recipe, tmp_path, "t")
    result = train(tiny_recipe, run.path)
    assert result.state == "finished" and result.step == 16  # 128 images / 16 per batch * 2 epochs
    events = ev.read_all(run.events_path)
    kinds = [e.kind for e in events]
    assert kinds[0] == "run_started" and "eval" in kinds and "checkpoint" in kinds and kinds[-1] == "status"
    s = steps(run)
    assert [e.step for e in s] == list(range(1, 17))
    assert all(math.isfinite(e.loss) and e.images_per_s > 0 for e in s)
    evals = [e for e in events if isinstance(e, ev.Eval)]
    assert len(evals) == 2 and all(0 <= e.top1 <= 100 and e.top5 >= e.top1 for e in evals)
    status = run.read_status()
    assert status.state == "finished" and status.step == 16 and status.last_top1 == evals[-1].top1
    assert (run.checkpoints / "last.json").exists() and (run.checkpoints / "best.json").exists()


def test_an_epoch_end_does_not_evaluate_the_step_eval_every_just_did(tmp_path, tiny_recipe):
    """8 steps an epoch; run.eval_every = 4 lands on each epoch's end too: one eval per step, not two (a
    second would also count twice toward schedule.early_stop_patience)."""
    r = tiny_recipe.with_overrides(["run.eval_every=4", "run.probe_every=0"])
    run = prepare_run(r, tmp_path, "t")
    train(r, run.path)
    started = next(e for e in ev.read_all(run.events_path) if isinstance(e, ev.RunStarted))
    assert started.steps_per_epoch == 8 and started.total_steps == 16
    assert [e.step for e in ev.read_all(run.events_path) if isinstance(e, ev.Eval)] == [4, 8, 12, 16]


def test_warmup_then_cosine_schedule(tmp_path, tiny_recipe):
    r = tiny_recipe.with_overrides(["schedule.min_lr=1e-5", "schedule.warmup_lr=1e-6"])
    run = prepare_run(r, tmp_path, "t")
    train(r, run.path)
    lrs = [e.lr for e in steps(run)]
    peak = lrs.index(max(lrs))
    assert 2 <= peak <= 5 and max(lrs) == pytest.approx(1e-3, rel=0.05)
    assert all(a <= b for a, b in zip(lrs[:peak], lrs[1:peak + 1]))
    assert all(a >= b for a, b in zip(lrs[peak:], lrs[peak + 1:]))
    assert lrs[-1] < 1e-4


def _losses(run):
    return [e.loss for e in steps(run)]


def test_exact_resume_matches_a_straight_run(tmp_path, tiny_recipe):
    r = tiny_recipe.with_overrides(["augment.re_prob=0.25", "regularize.drop_path=0.1", "regularize.ema=true",
                                    "run.probe_every=5",
                                    "regularize.ema_decay=0.9", "augment.mixup=0.8", "augment.cutmix=1.0"])
    straight = prepare_run(r, tmp_path, "straight")
    train(r, straight.path)

    split = prepare_run(r, tmp_path, "split")
    stop_at = 11  # mid-epoch: the resume must restore the position inside the epoch
    control = InProcessControl()

    def on_event(e):
        if isinstance(e, ev.Step) and e.step == stop_at:
            control.send("stop")

    first = train(r, split.path, control, on_event=on_event)
    assert first.state == "stopped" and first.step == stop_at
    second = train(r, split.path, resume=True)
    assert second.state == "finished"
    a, b = _losses(straight), _losses(split)
    assert len(a) == len(b) == 16
    for x, y in zip(a, b):
        assert abs(x - y) < 1e-6, (a, b)
    ea = [e.top1 for e in ev.read_all(straight.events_path) if isinstance(e, ev.Eval)]
    eb = [e.top1 for e in ev.read_all(split.events_path) if isinstance(e, ev.Eval)]
    assert ea[-1] == eb[-1]


# Each technique (EMA, mixup, accumulation, freezing, LoRA, ...) is checked for its effect in test_techniques.py.


def test_layer_decay_scales_lr_towards_the_input(tmp_path, tiny_recipe):
    from vittui.models.build import build_model
    from vittui.train.optim import build_optimizer

    r = tiny_recipe.with_overrides(["optim.layer_decay=0.5"])
    model = build_model(r.model, 10)
    opt = build_optimizer(model, r)
    scales = sorted({g["lr_scale"] for g in opt.param_groups})
    assert scales[-1] == 1.0 and scales[0] == pytest.approx(0.5 ** 3)  # embed, 2 blocks, head
    no_decay = [p for g in opt.param_groups if g["weight_decay"] == 0 for p in g["params"]]
    assert any(p is model.pos_embed for p in no_decay) and any(p is model.cls_token for p in no_decay)


def test_control_point_pauses_within_one_step_and_resumes(tmp_path, tiny_recipe):
    """Event-driven: pause is sent as step 3 is reported, so it must take effect at step 3 (before step 4
    starts); while paused a checkpoint command is served and no step runs; resume continues the sequence."""
    r = tiny_recipe.with_overrides(["schedule.epochs=4"])
    run = prepare_run(r, tmp_path, "t")
    control = InProcessControl()
    send_at = 3
    paused, checkpointed = threading.Event(), threading.Event()

    def on_event(e):
        if isinstance(e, ev.Step) and e.step == send_at:
            control.send("pause")
        elif isinstance(e, ev.Status) and e.state == "paused":
            paused.set()
        elif isinstance(e, ev.ControlAck) and e.command == "checkpoint":
            checkpointed.set()

    t, box = run_in_thread(lambda: train(r, run.path, control, on_event=on_event))
    try:
        assert paused.wait(120), "no paused state"
        assert run.read_status().state == "paused" and run.read_status().step == send_at
        control.send("checkpoint")  # served by the paused control point, without a step
        assert checkpointed.wait(120), "checkpoint command not acknowledged while paused"
        assert len(steps(run)) == send_at  # held still: nothing ran between the pause and this ack
        control.send("resume")
        t.join(120)
        assert box["result"].state == "finished"
    finally:
        control.send("stop")  # ends the thread if an assertion fired while it was paused
        t.join(60)
    events = ev.read_all(run.events_path)
    s = [e.step for e in events if isinstance(e, ev.Step)]
    assert s == list(range(1, len(s) + 1)) and s[-1] == box["result"].step  # nothing skipped
    acks = [e for e in events if isinstance(e, ev.ControlAck)]
    assert [(a.command, a.step) for a in acks] == [("pause", send_at), ("checkpoint", send_at), ("resume", send_at)]
    # no step between the pause and the resume acknowledgements, and a checkpoint at the paused step
    i, j = events.index(acks[0]), events.index(acks[2])
    assert not any(isinstance(e, ev.Step) for e in events[i:j])
    assert any(isinstance(e, ev.CheckpointSaved) and e.step == send_at for e in events[i:j])


def test_nan_loss_pauses_and_resume_lowers_lr(tmp_path, tiny_recipe):
    run = prepare_run(tiny_recipe, tmp_path, "t")
    control = InProcessControl()
    t, box = run_in_thread(lambda: train(tiny_recipe, run.path, control, faults=Faults(nan_at=4)))
    wait_for(lambda: (run.read_status() or None) and run.read_status().state == "paused", timeout=60, what="paused")
    faults = [e for e in ev.read_all(run.events_path) if isinstance(e, ev.Fault)]
    assert faults and faults[0].fault == "nan" and faults[0].step == 4 and faults[0].quantity == "loss"
    assert run.read_status().step == 3
    # the gradient pane's data: which blocks went non-finite at the poisoned step, whatever the median
    flows = [e for e in ev.read_all(run.events_path) if isinstance(e, ev.GradFlow) and e.step == 4]
    assert len(flows) == 1 and flows[0].measured == "before clipping"
    assert any("non-finite gradient in block" in f for f in flows[0].flags), flows[0].flags
    assert not all(math.isfinite(v) for v in flows[0].attn + flows[0].mlp)
    control.send("resume", lr_scale=0.5)
    t.join(120)
    assert box["result"].state == "finished"
    assert all(math.isfinite(e.loss) for e in steps(run))
    assert [e.step for e in steps(run)] == list(range(1, 17))
    # the multiplier scales the scheduled lr from the resumed step on, and only from there
    import torch

    from vittui.train.optim import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=tiny_recipe.optim.lr)
    schedule = build_scheduler(opt, tiny_recipe, total_steps=16, steps_per_epoch=8)
    for e in steps(run):
        schedule.step_update(e.step)
        want = opt.param_groups[0]["lr"] * (0.5 if e.step >= 4 else 1.0)
        assert e.lr == pytest.approx(want, rel=1e-9), (e.step, e.lr, want)


def test_control_point_unit():
    control = InProcessControl()
    acks = []
    cp = ControlPoint(source=control, ack=lambda c, s, ok, d, ch: acks.append((c.command, s, ok, ch)))
    control.send("set", lr_scale=0.25, eval_every=7)  # the old name of lr_multiplier still reads
    assert cp(3) is False
    assert cp.knobs.lr_multiplier == 0.25 and cp.knobs.eval_every == 7
    control.send("stop")
    assert cp(4) is True
    # the ack says what changed, old -> new, under the knob's one name
    assert acks == [("set", 3, True, {"lr_multiplier": [1.0, 0.25], "eval_every": [0, 7]}), ("stop", 4, True, {})]


def test_control_point_suspend_ends_the_loop_even_while_paused():
    control = InProcessControl()
    acks = []
    cp = ControlPoint(source=control, ack=lambda c, s, ok, d, ch: acks.append((c.command, s, ok)), poll_interval=0.001)
    control.send("pause")
    control.send("suspend")  # read while paused: the pause ends and the loop stops, suspended
    assert cp(5) is True
    assert cp.suspended and not cp.stop.now  # a suspend checkpoints: not a stop-now
    assert acks == [("pause", 5, True), ("suspend", 5, True)]


def test_a_suspend_with_a_reason_says_it_in_the_final_status_event(tmp_path, tiny_recipe):
    """The queue's scheduler suspends a run paused too long: the run's last event names who and why."""
    r = tiny_recipe.with_overrides(["schedule.max_steps=8"])
    run = prepare_run(r, tmp_path, "z")
    control = InProcessControl()
    why = "suspended by the queue: paused 5.0 min (limit 5 min) while 2 queued run(s) wait for its slot"

    def on_event(e):
        if isinstance(e, ev.Step) and e.step == 3:
            control.send("suspend", reason=why)

    result = train(r, run.path, control, on_event=on_event)
    assert result.state == "suspended"
    last = [e for e in ev.read_all(run.events_path) if isinstance(e, ev.Status)][-1]
    assert (last.state, last.reason) == ("suspended", f"{why}: checkpoint at step {result.step}, worker exited")
    ack = [e for e in ev.read_all(run.events_path) if isinstance(e, ev.ControlAck)][-1]
    assert (ack.command, ack.detail) == ("suspend", why)


def test_attention_and_gradient_probes_are_written(tmp_path, tiny_recipe):
    from vittui.runs.probes import load_probe

    r = tiny_recipe.with_overrides(["run.probe_every=4", "schedule.max_steps=8"])
    run = prepare_run(r, tmp_path, "t")
    train(r, run.path)
    events = ev.read_all(run.events_path)
    probes = [e for e in events if isinstance(e, ev.AttentionProbe)]
    flows = [e for e in events if isinstance(e, ev.GradFlow)]
    assert [p.step for p in probes] == [4, 8] and [g.step for g in flows] == [4, 8]
    assert len(probes[0].entropy) == 2 and len(probes[0].entropy[0]) == 2  # layers x heads
    probe = load_probe(probes[-1].path, run.path)
    assert probe.attention.shape == (2, 4, 2, 17, 17)  # layers, images, heads, tokens
    assert probe.images.shape == (4, 16, 16, 3)
    assert len(flows[0].attn) == 2 and all(v > 0 for v in flows[0].attn + flows[0].mlp)


def test_one_host_sync_of_the_loss_per_optimizer_step(tmp_path, tiny_recipe, monkeypatch):
    """The loss of `accum` micro-batches adds up on the device: the loop calls .item() once a step."""
    import sys

    import torch

    r = tiny_recipe.with_overrides(["compute.accumulation=2", "schedule.max_steps=3"])
    run = prepare_run(r, tmp_path, "t")
    from_loop, real_item = [], torch.Tensor.item

    def item(self):
        if sys._getframe(1).f_code.co_filename.endswith(("train/loop.py", "train\\loop.py")):
            from_loop.append(sys._getframe(1).f_code.co_name)
        return real_item(self)

    monkeypatch.setattr(torch.Tensor, "item", item)
    assert train(r, run.path).step == 3
    assert len(from_loop) == 3, from_loop

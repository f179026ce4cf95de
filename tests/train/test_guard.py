"""The divergence guard (NaN/Inf and the spike rule; pause or rewind) and early stopping (train/guard.py and
their marked calls in train/loop.py), on the tiny model in-process."""

import math
import random

import pytest
from tiny import run_in_thread, wait_for

from vittui.runs import events as ev
from vittui.runs.control import InProcessControl
from vittui.runs.history import RunHistory
from vittui.runs.launcher import prepare_run
from vittui.train.faults import Faults
from vittui.train.guard import WARMUP, DivergenceRule, EarlyStop
from vittui.train.loop import train

GUARD = ["run.probe_every=0", "run.checkpoint_every=3"]


def _events(run):
    return ev.read_all(run.events_path)


def _of(run, cls):
    return [e for e in _events(run) if isinstance(e, cls)]


def _folded(run) -> RunHistory:
    h = RunHistory(columns=("loss", "lr"), max_buckets=None)
    h.feed(_events(run))
    return h


def _scheduled_lrs(recipe, total=16, per_epoch=8):
    """The lr timm's schedule gives each step, computed apart from the loop."""
    import torch

    from vittui.train.optim import build_scheduler

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=recipe.optim.lr)
    schedule = build_scheduler(opt, recipe, total_steps=total, steps_per_epoch=per_epoch)
    out = {}
    for s in range(1, total + 1):
        schedule.step_update(s)
        out[s] = opt.param_groups[0]["lr"]
    return out


# ---- the spike rule on numbers the test controls ------------------------------------------------------


def test_spike_rule_triggers_on_a_sustained_spike_and_not_on_noise():
    rng = random.Random(0)
    noisy = [2.3 * (0.97 ** i) * rng.uniform(0.6, 1.6) for i in range(400)]  # a falling loss, +-60% noise
    rule = DivergenceRule(factor=3.0, steps=3)
    assert all(rule.check(i + 1, x) == ("", 0) for i, x in enumerate(noisy))

    rule = DivergenceRule(factor=3.0, steps=3)
    for s in range(1, 21):
        assert rule.check(s, 1.0) == ("", 0)
    # one spike then normal: not a divergence (m = 3 steps in a row are needed), and the count starts over
    assert rule.check(21, 10.0) == ("", 0) and rule.check(22, 1.0) == ("", 0)
    assert rule.check(23, 10.0) == ("", 0) and rule.check(24, 10.0) == ("", 0)
    why, good = rule.check(25, 10.0)
    assert "above 3 x its running mean 1 for 3 steps (since step 23)" in why and good == 22
    # below k x mean is never a spike, however long
    rule = DivergenceRule(factor=3.0, steps=3)
    assert all(rule.check(s, 1.0 if s <= 20 else 2.9) == ("", 0) for s in range(1, 60))
    # off (k = 0): only non-finite losses diverge; warm-up: the first WARMUP steps are never judged
    assert DivergenceRule(factor=0.0).check(5, math.inf) == ("loss is inf at step 5", 4)
    rule = DivergenceRule(factor=3.0, steps=1)
    assert all(rule.check(s, 1.0 if s == 1 else 100.0) == ("", 0) for s in range(1, WARMUP + 1))


def test_early_stop_counts_evals_without_improvement_beyond_min_delta():
    stop = EarlyStop(patience=2, metric="val_top1", min_delta=1.0)
    assert [stop.after_eval(v) for v in (10, 30, 30.5, 29)] == [False, False, False, True]
    stop = EarlyStop(patience=2, metric="val_loss")
    assert [stop.after_eval(v) for v in (2.0, 1.5, 1.6, 1.4, 1.4, 1.45)] == [False, False, False, False, False, True]
    assert not any(EarlyStop(patience=0).after_eval(v) for v in (5, 4, 3, 2, 1))


# ---- rewind in training ------------------------------------------------------------------------------


def test_nan_with_rewind_finishes_with_the_rewound_event_and_a_lower_lr(tmp_path, tiny_recipe):
    r = tiny_recipe.with_overrides(GUARD + ["run.on_divergence=rewind", "run.rewind_lr_factor=0.5"])
    run = prepare_run(r, tmp_path, "t")
    result = train(r, run.path, faults=Faults(nan_at=8))
    assert result.state == "finished" and result.step == 16
    [rw] = _of(run, ev.Rewound)
    # checkpoints at 3 and 6 (every 3): the NaN at step 8 goes back to 6, the last one before it
    assert (rw.step, rw.to_step, rw.lr_multiplier) == (8, 6, 0.5) and "loss is nan at step 8" in rw.reason
    assert not _of(run, ev.Fault)  # rewound, not paused
    h = _folded(run)
    assert h.steps == list(range(1, 17)) and all(math.isfinite(x) for x in h.loss)
    assert [x.to_step for x in h.rewinds] == [6]
    want = _scheduled_lrs(r)
    for step, lr in zip(h.steps, h.lr):  # the redone steps run at half the scheduled lr, the first ones at all of it
        assert lr == pytest.approx(want[step] * (0.5 if step > 6 else 1.0), rel=1e-9), step
    assert run.read_status().state == "finished"
    from vittui.runs.compare import compare_runs, format_table

    cmp = compare_runs([run.path])  # `vittui compare` lists the rewinds
    assert cmp.runs[0].rewinds == ["8->6"] and cmp.to_dict()["runs"][0]["rewinds"] == ["8->6"]
    assert any(line.startswith("rewinds (step->to)") and "8->6" in line for line in format_table(cmp).splitlines())


def test_rewind_is_exact_the_redone_steps_reproduce_the_checkpointed_run(tmp_path, tiny_recipe):
    """With rewind_lr_factor = 1 a rewind changes nothing: the run's losses and evals equal a run that never
    diverged, step for step (weights, optimizer, RNG and data position all came back). With 0.5 the first
    redone step, computed from the checkpoint's weights, still equals the straight run's."""
    r = tiny_recipe.with_overrides(GUARD + ["run.on_divergence=rewind", "run.divergence_factor=3",
                                            "run.divergence_steps=2", "augment.re_prob=0.25",
                                            "regularize.drop_path=0.1"])
    straight = prepare_run(r, tmp_path, "straight")
    train(r, straight.path)
    assert not _of(straight, ev.Rewound) and not _of(straight, ev.Fault)  # ordinary noise trips nothing

    same = r.with_overrides(["run.rewind_lr_factor=1.0"])
    exact = prepare_run(same, tmp_path, "exact")
    train(same, exact.path, faults=Faults(nan_at=11))
    [rw] = _of(exact, ev.Rewound)
    assert (rw.step, rw.to_step) == (11, 9)
    a, b = _folded(straight), _folded(exact)
    assert a.steps == b.steps == list(range(1, 17))
    assert a.loss == b.loss and a.lr == b.lr  # bit for bit
    assert [(e.step, e.top1, e.loss) for e in a.evals] == [(e.step, e.top1, e.loss) for e in b.evals]

    half = prepare_run(r, tmp_path, "half")  # rewind_lr_factor 0.5 (the default)
    train(r, half.path, faults=Faults(nan_at=11))
    c = _folded(half)
    assert c.loss[:10] == a.loss[:10]  # steps 1..10: 10 is the first redone one, from step 9's weights
    assert c.loss[10:] != a.loss[10:]  # then the lower lr shows


def test_a_spike_rewinds_to_the_checkpoint_before_it_began(tmp_path, tiny_recipe):
    r = tiny_recipe.with_overrides(["run.probe_every=0", "run.checkpoint_every=3", "run.on_divergence=rewind",
                                    "run.divergence_factor=3", "run.divergence_steps=3"])
    run = prepare_run(r, tmp_path, "t")
    # steps 12, 13, 14 report 50x their loss: the rule trips at 14; the spike began at 12, so the last good
    # checkpoint is 9 (every 3), not 12, saved after the spiking step 12
    result = train(r, run.path, faults=Faults(spike_at=12, spike_steps=3, spike_scale=50.0))
    assert result.state == "finished" and result.step == 16
    [rw] = _of(run, ev.Rewound)
    assert (rw.step, rw.to_step) == (14, 9) and "(since step 12)" in rw.reason
    h = _folded(run)
    assert h.steps == list(range(1, 17)) and max(h.loss) < 10  # the spiked steps were redone


def test_a_resumed_run_judges_a_spike_at_once_with_the_mean_its_checkpoint_kept(tmp_path, tiny_recipe):
    from vittui.train import checkpoint as ckpt

    r = tiny_recipe.with_overrides(["run.probe_every=0", "run.checkpoint_every=4", "run.keep_last=10",
                                    "run.on_divergence=rewind", "run.divergence_factor=3", "run.divergence_steps=2"])
    straight = prepare_run(r, tmp_path, "straight")
    train(r, straight.path)
    run = prepare_run(r, tmp_path, "t")
    control = InProcessControl()

    def on_event(e):
        if isinstance(e, ev.Step) and e.step == 12:
            control.send("stop")

    assert train(r, run.path, control, on_event=on_event).step == 12
    kept = ckpt.load_state(ckpt.find(run.checkpoints, "12")).divergence
    assert kept["seen"] == 12 and kept == pytest.approx(ckpt.load_state(ckpt.find(straight.checkpoints, "12")).divergence)
    # steps 13 and 14 spike right after the resume: judged at once against the kept mean, not after another
    # warm-up of WARMUP steps (which would outlast the run: it ends at 16)
    result = train(r, run.path, resume=True, faults=Faults(spike_at=13, spike_steps=2, spike_scale=50.0))
    assert result.state == "finished" and result.step == 16
    [rw] = _of(run, ev.Rewound)
    assert (rw.step, rw.to_step) == (14, 12) and "(since step 13)" in rw.reason


def test_after_max_rewinds_the_guard_pauses(tmp_path, tiny_recipe):
    r = tiny_recipe.with_overrides(GUARD + ["run.on_divergence=rewind", "run.max_rewinds=1"])
    run = prepare_run(r, tmp_path, "t")
    control = InProcessControl()
    # the NaN comes back when step 8 is redone: one rewind, then the guard pauses
    t, box = run_in_thread(lambda: train(r, run.path, control, faults=Faults(nan_at=8, nan_times=2)))
    try:
        wait_for(lambda: (run.read_status() or None) and run.read_status().state == "paused", timeout=120,
                 what="paused")
        assert len(_of(run, ev.Rewound)) == 1
        [fault] = _of(run, ev.Fault)
        assert fault.fault == "divergence" and fault.step == 8
        assert "1 rewind(s) done, the most run.max_rewinds allows" in fault.message
        assert run.read_status().step == 7
        assert run.read_status().message == "divergence: non-finite loss at step 8"  # run.notify's word for it
        control.send("resume")
        t.join(120)
        assert box["result"].state == "finished"
    finally:
        control.send("stop")
        t.join(60)


def test_a_spike_with_on_divergence_pause_pauses(tmp_path, tiny_recipe):
    r = tiny_recipe.with_overrides(GUARD + ["run.divergence_factor=3", "run.divergence_steps=2"])
    assert r.run.on_divergence == "pause"  # the default: what NaN did before the guard
    run = prepare_run(r, tmp_path, "t")
    control = InProcessControl()
    t, box = run_in_thread(lambda: train(r, run.path, control, faults=Faults(spike_at=12, spike_steps=2,
                                                                          spike_scale=50.0)))
    try:
        wait_for(lambda: (run.read_status() or None) and run.read_status().state == "paused", timeout=120,
                 what="paused")
        [fault] = _of(run, ev.Fault)
        assert fault.fault == "spike" and fault.step == 13 and "for 2 steps (since step 12)" in fault.message
        assert not _of(run, ev.Rewound)
        control.send("stop")
        t.join(120)
    finally:
        control.send("stop")
        t.join(60)


# ---- the fold --------------------------------------------------------------------------------------


def test_history_folds_a_rewind_like_a_resume():
    def step(s, loss):
        return ev.Step(step=s, epoch=0.0, loss=loss, lr=1e-3, grad_norm=1.0, images_per_s=1.0, data_time=0.0,
                       step_time=0.1)

    started = ev.RunStarted(name="r", model="m", params_total=1, params_trainable=1, num_classes=2,
                            classes=["a", "b"], train_size=1, val_size=1, steps_per_epoch=10, total_steps=10,
                            device="cpu")
    log = [started] + [step(s, 1.0) for s in range(1, 9)]
    log += [ev.Eval(step=4, epoch=0.4, loss=1.0, top1=50.0, top5=100.0),
            ev.Eval(step=8, epoch=0.8, loss=1.0, top1=90.0, top5=100.0),
            ev.Rewound(step=9, to_step=6, lr_multiplier=0.5, reason="loss is nan at step 9")]
    h = RunHistory(max_buckets=None)
    h.feed(log)
    # at the Rewound itself, before any redone step: back at 6, the eval at 8 gone
    assert h.step == 6 and h.steps == list(range(1, 7)) and h.eval_steps == [4] and h.best_eval.top1 == 50.0
    log = [step(s, 2.0) for s in range(7, 11)]
    h.feed(log)
    assert h.steps == list(range(1, 11))
    assert h.loss == [1.0] * 6 + [2.0] * 4  # the redone steps replace the old ones
    assert h.eval_steps == [4] and h.best_eval.top1 == 50.0  # the eval at 8 was after the rewind point
    assert [r.to_step for r in h.rewinds] == [6] and h.resumes == []


# ---- early stopping ----------------------------------------------------------------------------------


def _scripted_evals(monkeypatch, top1s, losses):
    """The loop's evaluation returns these scores in turn (the weights still train for real)."""
    from vittui.train import loop
    from vittui.train.evaluate import Scores

    scores = iter(zip(losses, top1s))

    def fake(*args, **kwargs):
        loss, top1 = next(scores)
        return Scores(loss, top1, 100.0)

    monkeypatch.setattr(loop, "evaluate", fake)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path))


@pytest.mark.parametrize(("metric", "top1s", "losses"), [
    ("val_top1", [10.0, 30.0, 20.0, 25.0, 99.0], [9.0] * 5),  # best 30 at step 4, then 2 evals without better
    ("val_loss", [50.0] * 5, [2.0, 1.0, 1.5, 1.2, 0.1]),  # best 1.0 at step 4 (top-1 is flat throughout)
])
def test_early_stop_ends_the_run_and_best_follows_the_metric(tmp_path, tiny_recipe, monkeypatch, metric, top1s,
                                                             losses):
    _scripted_evals(monkeypatch, top1s, losses)
    r = tiny_recipe.with_overrides(["run.probe_every=0", "run.eval_every=2", "run.checkpoint_every=2",
                                    "schedule.early_stop_patience=2", f"schedule.early_stop_metric={metric}"])
    run = prepare_run(r, tmp_path, "t")
    result = train(r, run.path)
    # evals at 2, 4 (best), 6, 8: two without improvement -> stop at 8 of 16, finished
    assert result.state == "finished" and result.step == 8
    assert [e.step for e in _of(run, ev.Eval)] == [2, 4, 6, 8]
    status = run.read_status()
    assert status.state == "finished" and status.message.startswith("early stop at step 8: no improvement in 2 evals")
    assert any(isinstance(e, ev.Log) and e.message.startswith("early stop at step 8") for e in _events(run))
    assert not any(isinstance(e, ev.Step) and e.step > 8 for e in _events(run))
    best = [c for c in _of(run, ev.CheckpointSaved) if c.best]
    assert best[-1].step == 4
    from vittui.train import checkpoint as ckpt

    assert ckpt.find(run.checkpoints, "best").name == "step-00000004"
    # what export and eval load by default (restore's "best") is step 4's weights, not the last ones
    from vittui.train.restore import restore

    restored = restore(run.path)
    assert restored.checkpoint.name == "step-00000004"
    at4, at8 = _weights(run.checkpoints / "step-00000004" / "model.safetensors"), _weights(
        run.checkpoints / "step-00000008" / "model.safetensors")
    state = restored.model.state_dict()
    assert all((state[k] == v).all() for k, v in at4.items())
    assert any(not (state[k] == v).all() for k, v in at8.items())
    if metric == "val_top1":  # `vittui export-model RUN` (checkpoint "best" by default) writes those weights
        from vittui.deploy.export import export_model

        res = export_model(run.path, tmp_path / "export", "safetensors")
        exported = _weights(tmp_path / "export" / "model.safetensors")
        assert res.checkpoint == "step-00000004"
        assert exported.keys() == at4.keys() and all((exported[k] == at4[k]).all() for k in at4)


def test_early_stop_stops_a_stalled_run(tmp_path, tiny_recipe):
    """A real stall: an lr so small the weights cannot move top-1; the first eval stays the best."""
    r = tiny_recipe.with_overrides(["run.probe_every=0", "run.eval_every=2", "optim.lr=1e-12",
                                    "schedule.min_lr=0", "schedule.warmup_lr=0", "schedule.epochs=4",
                                    "schedule.early_stop_patience=3"])
    run = prepare_run(r, tmp_path, "t")
    result = train(r, run.path)
    evals = _of(run, ev.Eval)
    assert len({e.top1 for e in evals}) == 1  # it did stall
    assert result.state == "finished" and result.step == 8 < 32  # evals at 2 (best), 4, 6, 8: three without
    assert "no improvement in 3 evals" in run.read_status().message
    assert [c.step for c in _of(run, ev.CheckpointSaved) if c.best] == [2]  # ties are no improvement

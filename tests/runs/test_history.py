"""The one event fold (vittui.runs.history): bounded per-step series, the rule for resumed runs, sampled
replay, and the three views (monitor, terminal line, compare) agreeing on one file."""

import math
import random

import pytest
from fake_events import AFTER, BEFORE, fake_run, started, step

from vittui.runs import events as ev
from vittui.runs.history import RunHistory, smooth
from vittui.runs.step_series import StepSeries


def test_short_series_keeps_every_step_exactly():
    s = StepSeries(("loss", "lr"), max_buckets=64)
    for i in range(1, 101):
        s.add(i, (1 / i, 0.01 * i))
    assert s.xs() == list(range(1, 101))
    assert s.ys("loss") == [1 / i for i in range(1, 101)]
    assert s.width == 1 and s.points == 100


def test_long_series_stays_bounded_and_keeps_the_means():
    s = StepSeries(("loss",), max_buckets=64)
    rng = random.Random(0)
    values = [rng.random() for _ in range(100_000)]
    for i, v in enumerate(values, start=1):
        s.add(i, (v,))
    assert len(s) < 2 * 64 and s.width > 1 and s.points == 100_000
    xs, ys = s.xs(), s.ys("loss")
    assert xs == sorted(xs) and xs[0] < 1000 and s.last_step == 100_000
    # every point counted once: the bucket means, weighted by their sizes, give the overall mean
    assert math.isclose(sum(y * n for y, n in zip(ys, s._n)) / 100_000, sum(values) / 100_000, rel_tol=1e-9)
    assert sum(s._n) == 100_000


def test_resume_cuts_the_stale_tail():
    s = StepSeries(("loss",))
    for i in range(1, 101):
        s.add(i, (float(i),))
    for i in range(61, 81):  # resumed from a checkpoint at step 60
        s.add(i, (-float(i),))
    assert s.xs() == list(range(1, 81))
    assert s.ys("loss")[59:] == [60.0] + [-float(i) for i in range(61, 81)]


def test_nan_is_left_out_of_a_bucket_and_a_gap_only_when_alone():
    s = StepSeries(("loss",))
    s.add(1, (1.0,))
    s.add(2, (math.nan,))
    s.add(3, (3.0,))
    ys = s.ys("loss")
    assert ys[0] == 1.0 and math.isnan(ys[1]) and ys[2] == 3.0
    s._merge()  # buckets of two: [1, 2] and [3]
    assert s.ys("loss") == [1.0, 3.0]


def _write_run(path, n: int) -> list[float]:
    w = ev.EventWriter(path)
    w.write(ev.RunStarted(name="r", model="vit", params_total=1, params_trainable=1, num_classes=2, classes=["a", "b"],
                          train_size=1, val_size=1, steps_per_epoch=1000, total_steps=2 * n, device="cpu"))
    rng = random.Random(1)
    losses = []
    for i in range(1, n + 1):
        losses.append(2 / math.sqrt(i) + 0.05 * rng.random())
        w.write(ev.Step(step=i, epoch=i / 1000, loss=losses[-1], lr=1e-3, grad_norm=0, images_per_s=0, data_time=0,
                        step_time=0, t=1000.0 + 0.1 * i))
        if i % 1000 == 0:
            w.write(ev.Eval(step=i, epoch=i / 1000, loss=1.0, top1=i / n * 90, top5=99.0))
    w.close()
    return losses


def _replay(path, stride: int) -> RunHistory:
    tail, h = ev.EventTail(path), RunHistory()
    while batch := tail.poll(max_bytes=1 << 20, step_stride=stride):
        h.feed(batch)
    return h


def test_sampled_replay_draws_the_same_run_as_a_full_one(tmp_path):
    path = tmp_path / "events.jsonl"
    _write_run(path, 20_000)
    full, sampled = _replay(path, 1), _replay(path, 20)
    assert sampled.series.points < full.series.points / 10
    # what the header shows is exact: last step, best accuracy, every eval, the ETA
    assert sampled.step == full.step == 20_000
    assert sampled.best_top1 == full.best_top1 and sampled.eval_steps == full.eval_steps
    assert math.isclose(sampled.eta_seconds(), full.eta_seconds(), rel_tol=1e-6)
    assert math.isclose(sampled.eta_seconds(), 20_000 * 0.1)  # 20k steps left at 0.1 s each
    # and the loss curve, at the resolution a plot draws (a few hundred points), is the same curve
    def curve(h: RunHistory, points: int = 100) -> list[float]:
        ys = smooth(h.loss, 0.0)
        xs = h.steps
        out = []
        for k in range(points):
            lo, hi = 20_000 * k / points, 20_000 * (k + 1) / points
            seg = [y for x, y in zip(xs, ys) if lo < x <= hi]
            out.append(sum(seg) / len(seg))
        return out

    a, b = curve(full), curve(sampled)
    # past the first 200 steps (where 2/sqrt(step) falls steeply between samples) the curves agree
    # inside the noise (0.05 wide) on a curve that spans 2 → 0.01
    assert max(abs(x - y) for x, y in zip(a[1:], b[1:])) < 0.02  # ~10 samples a segment: sd ≈ 0.005


def test_probes_stay_bounded_newest_whole_and_the_start_kept():
    from vittui.runs import history as H

    h = RunHistory()
    for i in range(1, 20_001):
        h.feed([ev.AttentionProbe(step=50 * i, path=f"attention/{50 * i}.safetensors",
                                  entropy=[[0.5] * 3] * 4, distance=[[1.0] * 3] * 4, diversity=[0.1] * 4)])
    steps = [p.step for p in h.probes]
    assert len(steps) <= H.MAX_PROBES
    assert steps == sorted(steps) and steps[0] == 50  # the first probe of the run is still there
    assert steps[-H.KEEP_PROBES:] == [50 * i for i in range(20_001 - H.KEEP_PROBES, 20_001)]
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    assert max(gaps) > 50 and gaps[-1] == 50  # thinned in the past, every probe lately


# ---- the rule for resumed runs, on a hand-written events file ------------------------------------------------
def test_a_resume_rewinds_to_its_checkpoint_and_keeps_what_happened():
    h = RunHistory()
    h.feed(BEFORE)
    assert h.step == 4 and h.eval_steps == [2, 4] and h.best_top1 == 90.0 and h.grad_flow is not None
    h.feed(AFTER[:1])  # RunStarted(resumed_from_step=2): steps, evals, probes, grad flow after 2 are gone
    assert h.steps == [1, 2] and h.loss == [9.0, 8.0]
    assert h.step == 2 and h.epoch == 1.0 and h.last_step is None  # the step is the checkpoint's; no speed yet
    assert h.eval_steps == [2] and h.best_top1 == 40.0 and h.last_eval.top1 == 40.0
    assert [p.step for p in h.probes] == [2] and h.grad_flow is None
    assert h.faults == 1 and h.warnings == 1 and h.resumes == [2]  # what happened to the run stays
    assert h.eta_seconds() is None  # a new process: its speed is not known yet
    h.feed(AFTER[1:])
    # computed by hand: steps 1-2 from the first worker, 3-6 from the resumed one
    assert h.steps == [1, 2, 3, 4, 5, 6]
    assert h.loss == [9.0, 8.0, 5.0, 4.0, 3.0, 2.0]
    assert h.lr == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    assert h.eval_steps == [2, 4, 6] and h.top1 == [40.0, 60.0, 70.0]  # the lost 90% is gone
    assert h.best_eval.step == 6 and h.best_top1 == 70.0
    assert h.step == 6 and h.epoch == 3.0 and h.total_steps == 8 and h.epochs == 4
    assert h.seconds_per_step() == pytest.approx(1.0)  # 201..204: the resumed worker's speed only
    assert h.eta_seconds() == pytest.approx(2.0)
    assert h.state == "finished" and h.finished.wall_time == 9.0
    assert h.faults == 1 and h.count == len(BEFORE) + len(AFTER)


def test_repeated_steps_without_a_resume_event_follow_the_same_rule():
    old_log = [started(t=100.0), *BEFORE[1:9], step(3, 5.0, 201)]  # no RunStarted(resumed_from_step=2)
    h = RunHistory()
    h.feed(old_log)
    assert h.steps == [1, 2, 3] and h.loss == [9.0, 8.0, 5.0]
    assert h.eval_steps == [2] and [p.step for p in h.probes] == [2]


def test_a_resumed_run_read_back_with_sampled_steps_keeps_every_eval_exact(tmp_path):
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path)
    for e in BEFORE + AFTER:
        w.write(e)
    w.close()
    tail, h = ev.EventTail(path), RunHistory()
    h.feed(tail.poll(step_stride=3))
    assert h.eval_steps == [2, 4, 6] and h.top1 == [40.0, 60.0, 70.0] and h.step == 6 and h.best_top1 == 70.0


def test_the_monitor_the_terminal_and_compare_agree_on_one_file(tmp_path):
    import io

    from vittui.runs.attach import attach_headless
    from vittui.runs.compare import read_run
    from vittui.runs.progress import Progress

    run = fake_run(tmp_path, BEFORE + AFTER)
    monitor = _replay(run.events_path, 1)  # what the monitor screen folds, batch by batch
    prog = Progress()
    prog.feed_all(ev.read_all(run.events_path))
    m, c, _ = read_run(run.path)

    assert monitor.step == prog.step == m.steps == 6
    assert monitor.total_steps == prog.total_steps == m.total_steps == 8
    assert c.train_step == monitor.steps == [1, 2, 3, 4, 5, 6]
    assert c.train_loss == monitor.loss and m.last_train_loss == monitor.loss[-1] == 2.0
    assert c.val_step == monitor.eval_steps == prog.history.eval_steps == [2, 4, 6]
    assert c.val_top1 == monitor.top1 == [40.0, 60.0, 70.0]
    assert m.best.step == monitor.best_eval.step == 6 and m.best_top1 == monitor.best_top1 == 70.0
    assert m.last.top1 == monitor.last_eval.top1 == prog.history.last_eval.top1
    assert c.train_time[0] == pytest.approx(1.0) and c.train_time[-1] == pytest.approx(104.0)
    line = prog.line()
    assert "[finished]" in line and "step 6/8" in line and "val 70.0%" in line and "epoch 4/4" in line
    assert "resumed from the checkpoint at step 2" in prog.take_lines()

    out = io.StringIO()
    assert attach_headless(run, out=out, inp=io.StringIO(), poll=0.01) == 0
    text = out.getvalue()
    assert text.startswith("run fake: finished, step 6/8,") and "step 6/8" in text.splitlines()[-2]


def test_fmt_duration_one_format():
    from vittui.runs.history import fmt_duration

    assert fmt_duration(65) == "01:05" and fmt_duration(3725) == "1:02:05" and fmt_duration(0) == "00:00"
    assert fmt_duration(None) == fmt_duration(math.nan) == fmt_duration(math.inf) == fmt_duration(-1) == "--:--"

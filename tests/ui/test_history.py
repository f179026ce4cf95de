"""The monitor's run history without Textual: bounded per-step series, resume cuts, sampled replay."""

import math
import random

from vittui.runs import events as ev
from vittui.ui.history import RunHistory, smooth
from vittui.ui.step_series import StepSeries


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
    from vittui.ui import history as H

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

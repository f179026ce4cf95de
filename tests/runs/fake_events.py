"""Hand-written events and run directories for the readers' tests: a run that died after step 4 and was
resumed from its checkpoint at step 2 (BEFORE + AFTER), and the builders it is made of."""

from __future__ import annotations

from pathlib import Path

from vittui.recipe import Recipe, save
from vittui.runs import events as ev
from vittui.runs.store import RunDir, RunStatus


def started(resumed: int = 0, t: float = 0.0) -> ev.RunStarted:
    return ev.RunStarted(name="fake", model="m", params_total=1, params_trainable=1, num_classes=2,
                         classes=["x", "y"], train_size=8, val_size=4, steps_per_epoch=2, total_steps=8,
                         device="cpu", resumed_from_step=resumed, t=t)


def step(s: int, loss: float, t: float) -> ev.Step:
    return ev.Step(step=s, epoch=s / 2, loss=loss, lr=0.1 * s, grad_norm=1.0, images_per_s=10.0 * s,
                   data_time=0.0, step_time=0.1, t=t)


def evaluation(s: int, top1: float, t: float) -> ev.Eval:
    return ev.Eval(step=s, epoch=s / 2, loss=1.0 / top1, top1=top1, top5=100.0, t=t)


def probe(s: int, t: float) -> ev.AttentionProbe:
    return ev.AttentionProbe(step=s, path=f"attention/{s}.npz", entropy=[[0.5]], distance=[[1.0]],
                             diversity=[0.1], t=t)


BEFORE = [started(t=100.0), step(1, 9.0, 101), step(2, 8.0, 102), evaluation(2, 40.0, 102.5), probe(2, 102.6),
          step(3, 7.0, 103), step(4, 6.0, 104), evaluation(4, 90.0, 104.5), probe(4, 104.6),
          ev.GradFlow(step=4, names=["b0"], attn=[1.0], mlp=[1.0], t=104.7),
          ev.Fault(fault="nan", step=4, message="loss is nan", t=104.8),
          ev.Log(level="warning", message="killed", step=4, t=104.9)]
# the worker died after step 4; its last checkpoint was at step 2, and the resumed worker redoes 3 and 4
AFTER = [started(resumed=2, t=200.0), step(3, 5.0, 201), step(4, 4.0, 202), evaluation(4, 60.0, 202.5),
         step(5, 3.0, 203), step(6, 2.0, 204), evaluation(6, 70.0, 204.5),
         ev.Status(state="finished", step=6, t=204.9), ev.Finished(step=6, best_top1=70.0, wall_time=9.0, t=205)]


def fake_run(root: Path, events: list[ev.Event], status: RunStatus | None = None) -> RunDir:
    run = RunDir(root / "fake").create()
    save(Recipe(), run.recipe_path)
    run.write_status(status or RunStatus(state="finished", step=6, total_steps=8))
    w = ev.EventWriter(run.events_path)
    for e in events:
        w.write(e)
    w.close()
    return run

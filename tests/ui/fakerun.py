"""A fake run directory driven by the test: recipe.toml, status.json, events appended on demand.

The test process plays the worker (its own pid is the worker pid, so the run counts as live)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from vittui import recipe as R
from vittui.runs import events as E
from vittui.runs.store import RunDir, RunStatus

T0 = 1_700_000_000.0  # fixed clock: snapshots hold still


class FakeRun:
    def __init__(self, runs_root: Path, name: str = "fake-run", total_steps: int = 100, steps_per_epoch: int = 10,
                 state: str = "running", pid: int | None = None):
        self.run = RunDir(runs_root / name).create()
        recipe = R.load_preset("demo-digits").with_overrides({"run.name": name})
        R.save(recipe, self.run.recipe_path)
        self.total_steps = total_steps
        self.steps_per_epoch = steps_per_epoch
        self.pid = os.getpid() if pid is None else pid
        self.step = 0
        self.status = RunStatus(state=state, step=0, total_steps=total_steps, pid=self.pid, started=T0)
        self.run.write_status(self.status)
        self._w = E.EventWriter(self.run.events_path)

    @property
    def path(self) -> Path:
        return self.run.path

    def emit(self, *events: E.Event) -> None:
        for ev in events:
            self._w.write(ev)

    def started(self) -> None:
        self.emit(E.RunStarted(
            name=self.run.name, model="vit_tiny_patch16_224", params_total=460_000, params_trainable=460_000,
            num_classes=10, classes=[str(i) for i in range(10)], train_size=1437, val_size=360,
            steps_per_epoch=self.steps_per_epoch, total_steps=self.total_steps, device="cpu", t=T0,
        ))
        self.set_state("running")

    def steps(self, n: int, *, allocated: int = 0, reserved: int = 0) -> None:
        for _ in range(n):
            self.step += 1
            s = self.step
            self.emit(E.Step(
                step=s, epoch=s / self.steps_per_epoch, loss=2.3 * 0.97 ** s + 0.05 * ((s * 7) % 5) / 5,
                lr=1e-3 * min(1.0, s / 20), grad_norm=1.0, images_per_s=640.0, data_time=0.004, step_time=0.1,
                torch_allocated=allocated, torch_reserved=reserved, t=T0 + 0.1 * s,
            ))
            if s % self.steps_per_epoch == 0:
                e = s / self.steps_per_epoch
                top1 = min(0.97, 0.3 + 0.07 * e)
                self.emit(E.Eval(step=s, epoch=e, loss=2.0 * 0.9 ** e, top1=top1, top5=min(1.0, top1 + 0.2),
                                 t=T0 + 0.1 * s))
                if self.status.best_top1 is None or top1 > self.status.best_top1:
                    self.status.best_top1 = top1
        self.status.step = self.step
        self.run.write_status(self.status)

    def set_state(self, state: str, reason: str = "") -> None:
        self.status.state = state
        self.status.step = self.step
        self.run.write_status(self.status)
        self.emit(E.Status(state=state, step=self.step, reason=reason, t=T0 + 0.1 * self.step))

    def commands(self) -> list[dict]:
        text = self.run.commands_path.read_text()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        self._w.close()

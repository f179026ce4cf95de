"""The worker's side of the run directory: events appended, status.json kept current, summary.csv (one row
per evaluation, timm's columns) kept as the run goes, and the user told through `run.notify` when it ends.

Only the main process writes (several ranks share one run directory). status.json is rewritten on
every state change and at most twice a second otherwise, so a fast loop does not pay for it each step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

from vittui.runs import events as ev
from vittui.runs.notify import RunNotifier
from vittui.runs.store import RunDir, RunStatus
from vittui.runs.summary_csv import SummaryCsv
from vittui.sweep.report import trial_reporter


class Emitter:
    STATUS_INTERVAL = 0.5

    def __init__(self, run_path: Path, *, enabled: bool = True, on_event: Callable[[ev.Event], None] | None = None,
                 notify: Sequence[str] = ()):
        self.run = RunDir(run_path)
        self.enabled = enabled
        self.on_event = on_event
        self.writer = ev.EventWriter(self.run.events_path) if enabled else None
        # readers of the events, fed as they are written (main process only); neither can fail the run
        self.summary = SummaryCsv(self.run.summary_csv_path) if enabled else None
        self.notifier = RunNotifier(notify, self.run.name) if enabled and notify else None
        # a sweep trial reports each eval to its Optuna trial; `pruned` is the pruner's reason to stop
        self.trial = trial_reporter(self.run) if enabled else None
        self.pruned: str | None = None
        self.status_data = self.run.read_status() or RunStatus()
        self._last_status = 0.0
        self.skipped = 0
        self.skipped_examples: list[str] = []

    def emit(self, event: ev.Event) -> None:
        if self.writer is not None:
            self.writer.write(event)
            self.summary.feed(event)
            if self.notifier is not None:
                self.notifier.feed(event)
            if self.trial is not None and isinstance(event, ev.RunStarted):
                self.trial.started(event)  # the median pruner's warm-up: part of the run, past its lr warm-up
            if self.trial is not None and isinstance(event, ev.Eval):
                self._report_trial(event)
        if self.on_event is not None and self.enabled:
            self.on_event(event)
        if isinstance(event, ev.Step):
            self.status_data.step, self.status_data.epoch = event.step, event.epoch
            if time.time() - self._last_status > self.STATUS_INTERVAL:
                self._write_status()

    def _report_trial(self, event: ev.Eval) -> None:
        self.pruned = self.trial.feed(event)
        if self.trial.error is not None:
            self.log("warning", self.trial.error)
            self.trial = None

    def log(self, level: str, message: str, step: int = 0) -> None:
        self.emit(ev.Log(level=level, message=message, step=step or self.status_data.step))

    def status(self, **fields) -> None:
        for k, v in fields.items():
            setattr(self.status_data, k, v)
        self._write_status()

    def set_state(self, state: str, step: int, reason: str = "") -> None:
        self.status_data.state, self.status_data.step, self.status_data.message = state, step, reason
        self._write_status()
        self.emit(ev.Status(state=state, step=step, reason=reason))

    def _write_status(self) -> None:
        if self.enabled:
            self.run.write_status(self.status_data)
            self._last_status = time.time()

    def watch_skips(self, data) -> None:
        """Items the source dropped before training (e.g. unreadable files found while indexing)."""
        pre = list(getattr(data, "skipped_files", []) or [])
        if pre:
            self.count_skipped(pre)

    def count_skipped(self, skipped: list[str]) -> None:
        if not skipped:
            return
        self.skipped += len(skipped)
        self.skipped_examples = (self.skipped_examples + list(skipped))[-5:]
        self.emit(ev.DataSkipped(count=self.skipped, examples=self.skipped_examples))
        self.log("warning", f"skipped {len(skipped)} unreadable image(s): {', '.join(map(str, skipped[:3]))}")

    def close(self) -> None:
        self._write_status()
        if self.writer is not None:
            self.writer.close()

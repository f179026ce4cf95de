"""`summary.csv`: the timm-style table of a run, one row per evaluation, written as the run trains.

    epoch,train_loss,eval_loss,eval_top1,eval_top5,lr,step,eval_ema_top1

timm's first six columns in timm's order (a script that reads timm's `summary.csv` reads this one), then
the optimizer step and the EMA top-1 (empty without EMA). `train_loss` is the mean of the finite step
losses since the previous evaluation (timm's epoch mean when evaluating once an epoch); `lr` is the last
step's. Top-1/top-5 are in percent, as in the `Eval` events.

An event consumer, no torch: the worker's emitter feeds it every event it writes (`feed`), and
`vittui export-log --format csv` replays `events.jsonl` through the same class. Resumed runs follow the
fold's rule (`runs/history.py`): at `RunStarted(resumed_from_step=K)` (K = 0 too) the rows after K are dropped (the
file is rewritten) and the redone evaluations are appended again. A new `SummaryCsv` on an existing file
(a resumed worker) keeps its rows.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Iterable

from vittui.runs.events import Eval, Event, RunStarted, Step
from vittui.runs.store import atomic_write_text

SUMMARY_CSV = "summary.csv"
COLUMNS = ("epoch", "train_loss", "eval_loss", "eval_top1", "eval_top5", "lr", "step", "eval_ema_top1")


def _cell(v: float | int | None) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else str(v)  # nan / inf, as Python (and pandas) read them back
    return str(v)


class SummaryCsv:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.rows: list[dict[str, str]] = []
        self._losses: list[float] = []  # finite step losses since the last evaluation
        self._lr: float | None = None
        self._last_step = -1
        if self.path.exists() and self.path.stat().st_size:
            with open(self.path, newline="", encoding="utf-8") as f:
                self.rows = [dict(r) for r in csv.DictReader(f)]
        else:
            self._rewrite()

    def feed(self, event: Event) -> None:
        """One event, as the worker writes it; only Step, Eval and RunStarted matter."""
        if isinstance(event, Step):
            if event.step <= self._last_step:  # repeated steps without a resume logged: the fold's rule
                self.rewind(event.step - 1)
            self._last_step = event.step
            if math.isfinite(event.loss):
                self._losses.append(event.loss)
            self._lr = event.lr
        elif isinstance(event, Eval):
            train_loss = sum(self._losses) / len(self._losses) if self._losses else None
            row = {"epoch": _cell(float(event.epoch)), "train_loss": _cell(train_loss),
                   "eval_loss": _cell(float(event.loss)), "eval_top1": _cell(float(event.top1)),
                   "eval_top5": _cell(float(event.top5)), "lr": _cell(self._lr), "step": _cell(int(event.step)),
                   "eval_ema_top1": _cell(None if event.ema_top1 is None else float(event.ema_top1))}
            self.rows.append(row)
            self._losses = []
            self._append(row)
        elif isinstance(event, RunStarted):  # a start-over (resumed before any checkpoint) rewinds to 0
            self.rewind(event.resumed_from_step)

    def feed_all(self, events: Iterable[Event]) -> "SummaryCsv":
        for e in events:
            self.feed(e)
        return self

    def rewind(self, step: int) -> None:
        """Drop the rows of evaluations after `step` (a resume redoes them)."""
        self._losses = []
        self._last_step = step
        kept = [r for r in self.rows if int(r["step"] or 0) <= step]
        if len(kept) != len(self.rows):
            self.rows = kept
            self._rewrite()

    def _rewrite(self) -> None:
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(self.rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, buf.getvalue(), fsync=False)

    def _append(self, row: dict[str, str]) -> None:
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n").writerow(row)


def write_summary_csv(path: str | Path, events: Iterable[Event]) -> SummaryCsv:
    """`summary.csv` from a whole history at once (what the worker would have written)."""
    p = Path(path)
    if p.exists():
        p.unlink()
    return SummaryCsv(p).feed_all(events)

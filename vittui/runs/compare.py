"""Compare runs side by side: the recipe fields that differ, the live knob changes each run had (step,
knob, old -> new: what the recipe does not say), each run's best and last metrics, and the curves (train
loss, val top-1) against step, epoch and wall time.

Pure: reads `recipe.toml`, `events.jsonl` and `status.json` of each run directory, imports neither torch
nor Textual, so the dashboard can call `compare_runs` from its own process.

The events are folded by `runs/history.py`, the fold every view uses; a resumed run's curves and metrics
are the run as it finally went (its rule for resumed runs).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vittui.recipe import Recipe, diff, field_keys, get, load
from vittui.runs import events as ev
from vittui.runs.history import KnobChange, RunHistory, fmt_duration
from vittui.runs.registry import run_state
from vittui.runs.store import RunDir


@dataclass
class EvalPoint:
    step: int
    epoch: float
    top1: float  # percent
    top5: float
    loss: float
    ema_top1: float | None = None


@dataclass
class Curves:
    """Series for plotting. Train: one point per logged step. Val: one point per evaluation.
    `*_time` is seconds since the run's first event (wall clock, pauses and restarts included)."""

    train_step: list[int] = field(default_factory=list)
    train_epoch: list[float] = field(default_factory=list)
    train_time: list[float] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    val_step: list[int] = field(default_factory=list)
    val_epoch: list[float] = field(default_factory=list)
    val_time: list[float] = field(default_factory=list)
    val_top1: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)


@dataclass
class RunMetrics:
    name: str
    path: str
    state: str
    model: str
    steps: int  # optimizer steps reached
    total_steps: int
    wall_time: float | None  # seconds, from the Finished event (None while running)
    best: EvalPoint | None  # the evaluation with the highest top-1 (the latest one on ties)
    last: EvalPoint | None  # the latest evaluation
    best_loss: float | None  # lowest validation loss seen
    last_train_loss: float | None
    ema: bool = False
    knob_changes: list[KnobChange] = field(default_factory=list)  # set live, as the run finally went
    rewinds: list[str] = field(default_factory=list)  # the divergence guard's, "STEP->TO_STEP" each

    @property
    def best_top1(self) -> float | None:
        return self.best.top1 if self.best else None

    @property
    def last_top1(self) -> float | None:
        return self.last.top1 if self.last else None

    @property
    def last_loss(self) -> float | None:
        return self.last.loss if self.last else None


@dataclass
class Comparison:
    runs: list[RunMetrics]
    differing_fields: dict[str, list[Any]]  # dotted recipe key -> one value per run, in run order
    curves: list[Curves]
    recipes: list[Recipe] = field(default_factory=list, repr=False)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.runs]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; NaN and infinities become None."""
        return jsonable({
            "runs": [{**asdict(r), "best_top1": r.best_top1, "last_top1": r.last_top1, "last_loss": r.last_loss}
                     for r in self.runs],
            "differing_fields": self.differing_fields,
            "curves": [asdict(c) for c in self.curves],
        })


def jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def differing_fields(recipes: Sequence[Recipe]) -> dict[str, list[Any]]:
    """Keys whose value is not the same in every recipe -> the value in each (lists for tuples).

    A key differs across the set exactly when it differs between the first recipe and some other one,
    so the union of `recipe.diff(first, other)` is the set; keys keep the recipe's section order."""
    if len(recipes) < 2:
        return {}
    keys: set[str] = set()
    for other in recipes[1:]:
        keys |= set(diff(recipes[0], other))
    order = [k for k in field_keys() if k in keys]
    return {k: [_plain(get(r, k)) for r in recipes] for k in order}


def _plain(v: Any) -> Any:
    return list(v) if isinstance(v, tuple) else v


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def _point(e: ev.Eval) -> EvalPoint:
    return EvalPoint(e.step, e.epoch, e.top1, e.top5, e.loss, e.ema_top1)


def read_run(run_path: str | Path) -> tuple[RunMetrics, Curves, Recipe]:
    """Metrics and curves of one run from its directory; FileNotFoundError if it is not a run.

    A view of the run's `RunHistory` with every step kept (a resumed run as it finally went)."""
    run = RunDir(run_path)
    if not run.exists():
        raise FileNotFoundError(f"{run.path} is not a run directory (no {run.recipe_path.name})")
    recipe = load(run.recipe_path)
    h = RunHistory(columns=("epoch", "t", "loss"), max_buckets=None)
    h.feed(ev.read_all(run.events_path))
    status = run.read_status()
    t0 = h.first_t or 0.0
    c = Curves(
        train_step=[int(x) for x in h.steps], train_epoch=h.series.ys("epoch"),
        train_time=[t - t0 for t in h.series.ys("t")], train_loss=h.loss,
        val_step=h.eval_steps, val_epoch=[e.epoch for e in h.evals], val_time=[e.t - t0 for e in h.evals],
        val_top1=h.top1, val_loss=h.eval_loss,
    )
    evals = [_point(e) for e in h.evals]
    best = _point(h.best_eval) if h.best_eval else None
    last = evals[-1] if evals else None
    losses = [p.loss for p in evals if _finite(p.loss)]
    steps = max(h.step, h.finished.step if h.finished else 0)
    total_steps = h.total_steps
    if status is not None:
        steps = max(steps, status.step)
        total_steps = total_steps or status.total_steps
        # no evaluation events (an old or truncated log): fall back on the status file's numbers
        if best is None and status.best_top1 is not None:
            best = EvalPoint(status.step, status.epoch, status.best_top1, float("nan"), float("nan"))
        if last is None and status.last_top1 is not None:
            last = EvalPoint(status.step, status.epoch, status.last_top1, float("nan"), float("nan"))
    metrics = RunMetrics(
        name=run.name, path=str(run.path), state=run_state(run),
        model=(h.started.model if h.started else "") or recipe.model.name, steps=steps,
        total_steps=total_steps, wall_time=h.finished.wall_time if h.finished else None, best=best, last=last,
        best_loss=min(losses) if losses else None,
        last_train_loss=c.train_loss[-1] if c.train_loss else None,
        ema=recipe.regularize.ema, knob_changes=list(h.knob_changes),
        rewinds=[f"{r.step}->{r.to_step}" for r in h.rewinds],
    )
    return metrics, c, recipe


def compare_runs(run_dirs: Sequence[str | Path]) -> Comparison:
    """Read every run and line them up: differing recipe fields, metrics, curves (in the order given)."""
    metrics, curves, recipes = [], [], []
    for d in run_dirs:
        m, c, r = read_run(d)
        metrics.append(m)
        curves.append(c)
        recipes.append(r)
    return Comparison(runs=metrics, differing_fields=differing_fields(recipes), curves=curves, recipes=recipes)


# ------------------------------------------------------------------------------------------------ text


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if not math.isfinite(v):
            return "-"
        return f"{v:g}"
    if isinstance(v, list):
        return "[" + ", ".join(_cell(x) for x in v) + "]"
    if v == "":
        return '""'
    return str(v)


def _pct(p: EvalPoint | None) -> str:
    return "-" if p is None or not _finite(p.top1) else f"{p.top1:.2f} @{p.step}"


def _num(x: float | None, digits: int = 4) -> str:
    return "-" if x is None or not _finite(x) else f"{x:.{digits}f}"


def _duration(s: float | None) -> str:
    if s is None or not _finite(s):
        return "-"
    return f"{s:.1f}s" if s < 60 else fmt_duration(s)


def knob_cell(c: KnobChange | None) -> str:
    """One knob change as a cell: "@120 lr_multiplier 1 -> 0.5"."""
    return "-" if c is None else f"@{c.step} {c.knob} {_cell(c.old)} -> {_cell(c.new)}"


def knob_rows(cmp: Comparison) -> list[list[str]]:
    """"knob changes" (how many each run had), then the i-th change of each run on row i."""
    rows = [["knob changes", *(str(len(r.knob_changes)) for r in cmp.runs)]]
    for i in range(max((len(r.knob_changes) for r in cmp.runs), default=0)):
        rows.append([f"  change {i + 1}", *(knob_cell(r.knob_changes[i] if i < len(r.knob_changes) else None)
                                             for r in cmp.runs)])
    return rows


def table_rows(cmp: Comparison) -> list[list[str]]:
    """Header, the differing recipe fields, the knob changes, then the metrics; each row a label and one
    cell per run."""
    rows = [["", *cmp.names]]
    for key, values in cmp.differing_fields.items():
        rows.append([key, *(_cell(v) for v in values)])
    rows.append(["--"])
    rows.extend(knob_rows(cmp))
    rows.append(["--"])
    rows.append(["best val top-1 % @step", *(_pct(r.best) for r in cmp.runs)])
    rows.append(["last val top-1 % @step", *(_pct(r.last) for r in cmp.runs)])
    rows.append(["best val loss", *(_num(r.best_loss) for r in cmp.runs)])
    rows.append(["last val loss", *(_num(r.last_loss) for r in cmp.runs)])
    rows.append(["last train loss", *(_num(r.last_train_loss) for r in cmp.runs)])
    if any(r.ema for r in cmp.runs):
        rows.append(["last EMA top-1 %", *(_num(r.last.ema_top1 if r.last else None, 2) for r in cmp.runs)])
    rows.append(["steps", *(f"{r.steps}/{r.total_steps}" for r in cmp.runs)])
    rows.append(["wall time", *(_duration(r.wall_time) for r in cmp.runs)])
    rows.append(["state", *(r.state for r in cmp.runs)])
    if any(r.rewinds for r in cmp.runs):
        rows.append(["rewinds (step->to)", *(", ".join(r.rewinds) or "-" for r in cmp.runs)])
    return rows


def format_table(cmp: Comparison, max_width: int = 32) -> str:
    rows = table_rows(cmp)
    ncol = len(rows[0])
    clip = lambda s: s if len(s) <= max_width else s[: max_width - 1] + "…"  # noqa: E731
    rows = [[clip(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows if len(r) == ncol) for i in range(ncol)]
    lines = []
    if not cmp.differing_fields:
        lines.append("(the recipes are identical)")
    for r in rows:
        if len(r) != ncol:
            lines.append("  ".join("-" * w for w in widths))
            continue
        lines.append("  ".join([r[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(r[1:], widths[1:])]).rstrip())
    return "\n".join(lines)


__all__ = ["EvalPoint", "Curves", "RunMetrics", "Comparison", "compare_runs", "read_run", "differing_fields",
           "table_rows", "format_table", "knob_rows", "knob_cell"]

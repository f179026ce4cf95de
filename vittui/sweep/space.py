"""The search-space file of `vittui sweep --space SPACE.toml`: one table per recipe key.

    [optim.lr]                 low = 1e-4, high = 3e-3, log = true     # a float range (log-uniform)
    [schedule.warmup_epochs]   low = 0, high = 3                        # a float range
    [data.batch_size]          low = 16, high = 64, step = 16           # an int range
    [adapt.freeze_blocks]      choices = [0, 2, 4]                      # a categorical

Everything is checked before the first trial, so a sweep never dies at trial 7 on a value the recipe
refuses: unknown keys, bad ranges (low >= high, log with low <= 0, a step that is not > 0, empty
choices), values of the wrong type for the field, and every corner of the space (each range's low and
high times each choice, with the base recipe around them) through the recipe validator itself. Each
problem is one `SpaceError` line.
"""

from __future__ import annotations

import itertools
import math
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vittui.recipe import Recipe, RecipeError, SECTIONS, field_keys, field_type
from vittui.recipe.checks import coerce, unknown_key

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

SPEC_KEYS = ("low", "high", "log", "step", "choices")
MAX_CORNERS = 4096  # past this many corners each parameter's corners are checked with the others at the base


class SpaceError(ValueError):
    """A search space that cannot be swept; the message is one line naming the key and the file."""


@dataclass(frozen=True)
class Param:
    """One swept recipe key: a range (`low`..`high`, `log`, `step`) or a list of `choices`."""

    key: str
    kind: str  # float | int | categorical
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple = ()

    def suggest(self, trial) -> Any:
        """The value Optuna's sampler picks for this key in `trial` (an `optuna.Trial`)."""
        if self.kind == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        return trial.suggest_float(self.key, float(self.low), float(self.high), step=self.step, log=self.log)

    def corners(self) -> list:
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def grid(self) -> list:
        """Every value, for the grid sampler: the choices, or a range walked by its step."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None and self.kind == "float":
            raise SpaceError(f"{self.key}: the grid sampler needs choices or a step for a float range")
        step = self.step or 1
        n = int(math.floor((self.high - self.low) / step + 1e-9)) + 1
        values = [self.low + i * step for i in range(n)]
        return [int(v) for v in values] if self.kind == "int" else [round(v, 12) for v in values]


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]
    source: str = ""

    @property
    def keys(self) -> list[str]:
        return [p.key for p in self.params]

    def grid(self) -> dict[str, list]:
        return {p.key: p.grid() for p in self.params}


def load_space(path: str | Path, base: Recipe) -> Space:
    """Read and check `path` against the recipe `base`; SpaceError (one line) on the first problem."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpaceError(f"no space file {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpaceError(f"{path} is not valid TOML: {e}") from None
    return parse_space(data, base, source=str(path))


def parse_space(data: dict, base: Recipe, source: str = "") -> Space:
    where = f" [{source}]" if source else ""
    params: list[Param] = []
    known = field_keys()
    for section, table in data.items():
        if section not in SECTIONS:
            raise SpaceError(unknown_key(section, list(SECTIONS)).message + where)
        if not isinstance(table, dict) or not table:
            raise SpaceError(f"{section} must hold one table per key, e.g. [{section}.KEY] low = …, high = …{where}")
        for leaf, spec in table.items():
            key = f"{section}.{leaf}"
            if key not in known:
                leaves = [k.split(".", 1)[1] for k in known if k.startswith(section + ".")]
                raise SpaceError(unknown_key(key, leaves).message + where)
            params.append(_param(key, spec, where))
    if not params:
        raise SpaceError(f"the space is empty: add a table such as [optim.lr] low = 1e-4, high = 1e-2, log = true{where}")
    space = Space(tuple(params), source)
    check_corners(space, base, where)
    return space


def _param(key: str, spec: Any, where: str) -> Param:
    if not isinstance(spec, dict):
        raise SpaceError(f"{key} must be a table with low/high or choices (got {spec!r}){where}")
    extra = sorted(set(spec) - set(SPEC_KEYS))
    if extra:
        raise SpaceError(f"{key}: unknown entry {extra[0]!r} (known: {', '.join(SPEC_KEYS)}){where}")
    tp = field_type(key)
    base_tp = _plain_type(tp)
    try:
        if "choices" in spec:
            if set(spec) - {"choices"}:
                raise SpaceError(f"{key}: give either choices or low/high, not both{where}")
            choices = spec["choices"]
            if not isinstance(choices, list) or not choices:
                raise SpaceError(f"{key}: choices must be a non-empty list{where}")
            values = tuple(coerce(key, tp, v) for v in choices)
            if len(set(map(repr, values))) != len(values):
                raise SpaceError(f"{key}: choices repeat a value ({list(choices)}){where}")
            return Param(key, "categorical", choices=values)
        if base_tp not in (int, float):
            raise SpaceError(f"{key} is {_kind(tp)}: sweep it with choices = [...]{where}")
        if "low" not in spec or "high" not in spec:
            raise SpaceError(f"{key} needs low and high (or choices){where}")
        low, high = coerce(key + ".low", base_tp, spec["low"]), coerce(key + ".high", base_tp, spec["high"])
        log = spec.get("log", False)
        if not isinstance(log, bool):
            raise SpaceError(f"{key}.log must be true or false (got {log!r}){where}")
        step = coerce(key + ".step", base_tp, spec["step"]) if "step" in spec else None
    except RecipeError as e:
        raise SpaceError(f"{e.message}{where}") from None
    if low >= high:
        raise SpaceError(f"{key}: low must be < high (got low = {low!r}, high = {high!r}){where}")
    if log and low <= 0:
        raise SpaceError(f"{key}: a log range needs low > 0 (got {low!r}){where}")
    if step is not None and step <= 0:
        raise SpaceError(f"{key}: step must be > 0 (got {step!r}){where}")
    if log and step is not None and not (base_tp is int and step == 1):
        raise SpaceError(f"{key}: log and step cannot be combined (Optuna samples a log range continuously){where}")
    if step is not None and step > high - low:
        raise SpaceError(f"{key}: step {step!r} is larger than the range {low!r}..{high!r}{where}")
    return Param(key, "int" if base_tp is int else "float", low=low, high=high, log=log, step=step)


def _plain_type(tp: Any) -> Any:
    if typing.get_origin(tp) is not None and typing.get_origin(tp) is not tuple:
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return inner[0] if inner else tp
    return tp


def _kind(tp: Any) -> str:
    from vittui.recipe.checks import _type_name

    return _type_name(tp)


def check_corners(space: Space, base: Recipe, where: str = "") -> None:
    """Every corner of the space through the recipe validator: a value the recipe refuses, or two values
    that clash (a warmup longer than the run, a min_lr above the lowest lr), is found before any trial."""
    corners = [p.corners() for p in space.params]
    if math.prod(len(c) for c in corners) <= MAX_CORNERS:
        combos = itertools.product(*corners)
    else:  # too many to try all: each parameter's corners with the others at the base recipe's values
        combos = ([*(None,) * i, v, *(None,) * (len(corners) - i - 1)] for i, c in enumerate(corners) for v in c)
    for combo in combos:
        values = {k: v for k, v in zip(space.keys, combo) if v is not None}
        try:
            base.with_overrides(values, source="space")
        except RecipeError as e:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            raise SpaceError(f"the corner {shown} is refused by the recipe: {e.message}{where}") from None

"""The model catalogue as a table with filter-as-you-type. Facts come from the catalogue stored as data
(`vittui.models.catalog`), imported lazily; no torch. Enter on a row reports `Picked`.

The rows are an OptionList of one pre-formatted line each under a header line, not a DataTable: the
table is in the dashboard's first frame, and a DataTable renders every cell through Rich (~200 cells,
about a third of the time to that frame here); an option list renders one line per row."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from rich.text import Text
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

COLUMNS = ("name", "family", "src", "params", "res", "patch", "top1")


def load_models() -> tuple[list[Any], str]:
    """(models, note); never raises: a missing or broken catalogue gives an empty table and a note."""
    try:
        from vittui.models.catalog import load_catalog
    except Exception as e:
        return [], f"model catalogue not available ({e.__class__.__name__}); type a model name in the recipe"
    try:
        return list(load_catalog()), ""
    except Exception as e:
        return [], f"model catalogue failed to load: {e}"


def _fmt_params(n: Any) -> str:
    if n is None:
        return "?"
    n = float(n)
    return f"{n / 1e6:.1f}M" if n >= 1e5 else f"{n / 1e3:.0f}K" if n >= 1e3 else f"{n:.0f}"


def row_of(m: Any) -> tuple[str, ...]:
    top1 = getattr(m, "imagenet_top1", None)
    return (
        str(getattr(m, "key", "?")),
        str(getattr(m, "family", "") or ""),
        str(getattr(m, "source", "") or ""),
        _fmt_params(getattr(m, "params", None)),
        str(getattr(m, "resolution", "") or ""),
        str(getattr(m, "patch", "") or ""),
        f"{top1:.1f}" if isinstance(top1, (int, float)) else "-",
    )


def matches(m: Any, text: str) -> bool:
    if not text:
        return True
    hay = " ".join(str(getattr(m, a, "") or "") for a in ("key", "family", "source", "id")).lower()
    return all(word in hay for word in text.lower().split())


class ModelTable(Vertical):
    class Picked(Message):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.models: list[Any] = []
        self.note = ""
        self.shown: list[Any] = []
        self.rows: list[tuple[str, ...]] = []
        self.widths: list[int] = [len(c) for c in COLUMNS]

    def compose(self) -> ComposeResult:
        self.models, self.note = load_models()
        self.rows = [row_of(m) for m in self.models]
        # widths over the whole catalogue, so the columns stay put while filtering
        self.widths = [max([len(c)] + [len(r[i]) for r in self.rows]) for i, c in enumerate(COLUMNS)]
        yield Input(placeholder="filter models (e.g. deit, hf, small)", id="model-filter", compact=True)
        yield Static(Text(self._line(COLUMNS), no_wrap=True, overflow="ellipsis"), id="model-head")
        yield OptionList(*self._options(""), id="model-grid")
        yield Static(self.note, id="model-note")

    def on_mount(self) -> None:
        self.query_one("#model-note").display = bool(self.note)

    def _line(self, cells: tuple[str, ...]) -> str:
        return "  ".join(c.rjust(w) if i >= 3 else c.ljust(w)
                        for i, (c, w) in enumerate(zip(cells, self.widths)))

    def _options(self, text: str) -> list[Option]:
        keep = [i for i, m in enumerate(self.models) if matches(m, text)]
        self.shown = [self.models[i] for i in keep]
        return [Option(Text(self._line(self.rows[i]), no_wrap=True, overflow="ellipsis"), id=str(n))
                for n, i in enumerate(keep)]

    def apply_filter(self, text: str) -> None:
        grid = self.query_one("#model-grid", OptionList)
        grid.set_options(self._options(text))
        grid.highlighted = 0 if self.shown else None

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#model-grid", OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        idx = event.option_index
        if 0 <= idx < len(self.shown):
            self.post_message(self.Picked(self.shown[idx]))

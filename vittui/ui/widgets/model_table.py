"""The model catalogue as a table with filter-as-you-type. Facts come from the catalogue stored as data
(`vittui.models.catalog`), imported lazily; no torch. Enter on a row reports `Picked`."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

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

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter models (e.g. deit, hf, small)", id="model-filter", compact=True)
        table: DataTable = DataTable(id="model-grid", cursor_type="row", zebra_stripes=True)
        table.add_columns(*COLUMNS)
        yield table
        yield Static("", id="model-note")

    def on_mount(self) -> None:
        self.models, self.note = load_models()
        self.query_one("#model-note", Static).update(self.note)
        self.query_one("#model-note").display = bool(self.note)
        self.apply_filter("")

    def apply_filter(self, text: str) -> None:
        table = self.query_one("#model-grid", DataTable)
        table.clear()
        self.shown = [m for m in self.models if matches(m, text)]
        for i, m in enumerate(self.shown):
            table.add_row(*row_of(m), key=str(i))

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self.apply_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.query_one("#model-grid", DataTable).focus()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        idx = int(event.row_key.value) if event.row_key.value is not None else -1
        if 0 <= idx < len(self.shown):
            self.post_message(self.Picked(self.shown[idx]))

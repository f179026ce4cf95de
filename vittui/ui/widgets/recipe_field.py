"""One recipe setting: a label, an Input/Select/Switch chosen from the field's type, an inline error.

The field only parses what the person typed and reports it (`Edited`); the editor validates it against
the whole recipe and either accepts it or hands back an error and the old value."""

from __future__ import annotations

import typing
from typing import Any, cast

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Input, Label, Select, Static, Switch

from vittui import recipe as R


def _is_tuple(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin is tuple:
        return True
    if origin is typing.Union or str(origin) == "<class 'types.UnionType'>":
        return any(_is_tuple(a) for a in typing.get_args(tp))
    return False


def _base(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) is not tuple and args and type(None) in typing.get_args(tp):
        return args[0]
    return tp


def format_value(value: Any) -> str:
    """How a value appears in an Input: TOML-ish, so typing it back parses to the same value."""
    if value is None:
        return ""
    if isinstance(value, tuple):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def parse_text(key: str, text: str) -> Any:
    """Input text to a value for `set_value`; blank clears an optional field."""
    tp = R.field_type(key)
    text = text.strip()
    optional = type(None) in typing.get_args(tp)
    if text == "" and optional:
        return None
    base = _base(tp)
    if base is str:
        return text
    if _is_tuple(tp):
        inner = text.strip("[]()")
        if not inner.strip():
            return []
        return [R.parse_override(f"v={part.strip()}")[1] for part in inner.split(",")]
    return R.parse_override(f"v={text}")[1]


class RecipeField(Vertical):
    """A row for `section.key`."""

    class Edited(Message):
        def __init__(self, field: "RecipeField", key: str, value: Any) -> None:
            super().__init__()
            self.field = field
            self.key = key
            self.value = value

    def __init__(self, key: str, value: Any) -> None:
        super().__init__(id="f-" + key.replace(".", "-"), classes="recipe-field")
        self.key = key
        self.value = value
        tp = R.field_type(key)
        if key in R.CHOICES:
            self.kind = "select"
        elif _base(tp) is bool:
            self.kind = "switch"
        else:
            self.kind = "input"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="field-row"):
            yield Label(self.key.split(".", 1)[1], classes="field-label")
            if self.kind == "select":
                yield Select(
                    [(c, c) for c in R.CHOICES[self.key]], value=self.value, allow_blank=False, compact=True,
                    id="control",
                )
            elif self.kind == "switch":
                yield Switch(value=bool(self.value), id="control")
                yield Label("on" if self.value else "off", classes="switch-state")  # not colour alone
            else:
                yield Input(format_value(self.value), compact=True, id="control", select_on_focus=False)
        yield Static("", classes="field-error")

    # --- attributes down -------------------------------------------------------------------------
    @property
    def control(self) -> Input | Select | Switch:
        return cast("Input | Select | Switch", self.query_one("#control"))

    @property
    def error(self) -> str:
        return str(self.query_one(".field-error", Static).content)

    def show_value(self, value: Any) -> None:
        self.value = value
        control = self.control
        with control.prevent(Select.Changed, Switch.Changed, Input.Changed):
            if isinstance(control, Select):
                control.value = value
            elif isinstance(control, Switch):
                control.value = bool(value)
                self.query_one(".switch-state", Label).update("on" if value else "off")
            else:
                control.value = format_value(value)

    def show_error(self, message: str) -> None:
        err = self.query_one(".field-error", Static)
        err.update(f"! {message}" if message else "")
        self.set_class(bool(message), "-invalid")

    # --- messages up -----------------------------------------------------------------------------
    def _edited(self, value: Any) -> None:
        self.post_message(self.Edited(self, self.key, value))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._from_input(event.value)

    def on_input_blurred(self, event: Input.Blurred) -> None:
        event.stop()
        if event.value != format_value(self.value):
            self._from_input(event.value)

    def _from_input(self, text: str) -> None:
        try:
            value = parse_text(self.key, text)
        except R.RecipeError as e:
            self.show_error(e.message)
            self.show_value(self.value)
            return
        self._edited(value)

    def on_select_changed(self, event: Select.Changed) -> None:
        event.stop()
        if event.value != self.value and not isinstance(event.value, type(Select.NULL)):
            self._edited(event.value)

    def on_switch_changed(self, event: Switch.Changed) -> None:
        event.stop()
        self.query_one(".switch-state", Label).update("on" if event.value else "off")
        if event.value != bool(self.value):
            self._edited(event.value)

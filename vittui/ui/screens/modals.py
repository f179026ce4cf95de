"""Small modal screens: confirm, quit-with-a-live-run, save preset, help."""

from __future__ import annotations

from pathlib import Path

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static


class ConfirmModal(ModalScreen[bool]):
    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str, yes: str = "Yes", no: str = "No") -> None:
        super().__init__(classes="modal")
        self.question, self.yes, self.no = question, yes, no

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="question")
            with Horizontal(classes="buttons"):
                yield Button(f"{self.yes} (y)", id="yes", variant="error")
                yield Button(f"{self.no} (n)", id="no")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, value: bool) -> None:
        self.dismiss(value)


class QuitModal(ModalScreen[str | None]):
    """Quitting while a run is live: detach (the run goes on) or stop it; escape cancels."""

    BINDINGS = [
        Binding("d", "choose('detach')", "Detach"),
        Binding("s", "choose('stop')", "Stop run"),
        Binding("escape,c", "choose(None)", "Cancel"),
    ]

    def __init__(self, run_name: str) -> None:
        super().__init__(classes="modal")
        self.run_name = run_name

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"Run {self.run_name} is still going. Quit how?", classes="question")
            yield Static("detach: the run keeps training; `vittui attach` later.\nstop: checkpoint and end it.",
                         classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Detach (d)", id="detach", variant="primary")
                yield Button("Stop run (s)", id="stop", variant="error")
                yield Button("Cancel (esc)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(None if event.button.id == "cancel" else event.button.id)

    def action_choose(self, choice: str | None) -> None:
        self.dismiss(choice)


class SavePresetModal(ModalScreen[Path | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, default: Path) -> None:
        super().__init__(classes="modal")
        self.default = default

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Save the recipe as a preset (TOML):", classes="question")
            yield Input(str(self.default), id="preset-path")
            yield Static("", id="save-error", classes="field-error")
            with Horizontal(classes="buttons"):
                yield Button("Save (enter)", id="save", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self._done(event.value)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "save":
            self._done(self.query_one("#preset-path", Input).value)
        else:
            self.dismiss(None)

    def _done(self, text: str) -> None:
        text = text.strip()
        if not text:
            self.query_one("#save-error", Static).update("! type a path")
            return
        path = Path(text).expanduser()
        if path.suffix != ".toml":
            path = path.with_suffix(".toml")
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)


class HelpModal(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q,f1", "close", "Close")]

    def __init__(self, title: str, rows: list[tuple[str, str]], notes: str = "") -> None:
        super().__init__(classes="modal")
        self.title_text, self.rows, self.notes = title, rows, notes

    def compose(self) -> ComposeResult:
        width = max((len(k) for k, _ in self.rows), default=4) + 2
        body = "\n".join(f"{k:<{width}}{d}" for k, d in self.rows)
        with Vertical(classes="dialog help"):
            yield Label(self.title_text, classes="question")
            yield Static(body, markup=False)
            if self.notes:
                yield Static(self.notes, classes="hint", markup=False)
            yield Static("esc closes · ctrl+p lists the same actions", classes="hint")

    def action_close(self) -> None:
        self.dismiss(None)


KEY_NAMES = {"left_square_bracket": "[", "right_square_bracket": "]", "question_mark": "?", "space": "space",
             "less_than_sign": "<", "greater_than_sign": ">"}


def key_rows(screen) -> list[tuple[str, str]]:
    """(key, description) for a screen's BINDINGS, for the help modal."""
    rows: dict[str, list[str]] = {}
    for binding in screen.BINDINGS:
        keys = ",".join(KEY_NAMES.get(k, k) for k in binding.key.split(","))
        rows.setdefault(binding.description, []).append(keys)
    return [(" / ".join(dict.fromkeys(keys)), desc) for desc, keys in rows.items()]

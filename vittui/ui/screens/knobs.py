"""The live knobs form (`k` in the monitor): the lr multiplier, the eval interval and the probe interval a
live worker can change between steps, shown at their current values.

Enter checks every value with the control API's own rule (`vittui.runs.control.parse_knob`, the one
`vittui ctl RUN set` uses): a bad one leaves the form open with one line saying what is wrong, and nothing
is sent. Otherwise the form closes with only the knobs whose value changed; the monitor sends them as one
`set` command, and the worker's acknowledgement (old -> new, at its step) becomes a marker on the plots."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from vittui.runs.control import KNOBS, parse_knob

# knob -> (what the form calls it, what its value means)
KNOB_FIELDS = {
    "lr_multiplier": ("lr multiplier", "x the scheduled lr, from the next step"),
    "eval_every": ("eval interval", "steps between evaluations; 0: epoch ends only"),
    "probe_every": ("probe interval", "steps between attention probes; 0: off"),
}


def fmt_knob(value: float) -> str:
    return f"{value:g}"


class KnobsModal(ModalScreen[dict[str, float] | None]):
    """Dismissed with {knob: new value} for the knobs that changed ({} for none), None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, run_name: str, current: dict[str, float]) -> None:
        super().__init__(classes="modal")
        self.run_name = run_name
        self.current = {k: current[k] for k in KNOBS}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog knobs"):
            yield Label(f"Live knobs of {self.run_name}", classes="question")
            for knob in KNOBS:
                title, meaning = KNOB_FIELDS[knob]
                with Horizontal(classes="knob-row"):
                    yield Label(title, classes="knob-title")
                    yield Input(fmt_knob(self.current[knob]), id=f"knob-{knob}", classes="knob-input")
                    yield Static(f"now {fmt_knob(self.current[knob])}: {meaning}", classes="knob-hint")
            yield Static("", id="knobs-error")
            yield Static("The worker applies them at its next step boundary (also while paused).", classes="hint")
            with Horizontal(classes="buttons"):
                yield Button("Apply (enter)", id="apply", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.apply()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "apply":
            self.apply()
        else:
            self.dismiss(None)

    def apply(self) -> None:
        """Close with the changed knobs, or say what is wrong (the first bad value) and stay open."""
        changes = {}
        for knob in KNOBS:
            try:
                value = parse_knob(knob, self.query_one(f"#knob-{knob}", Input).value)
            except ValueError as e:
                error = self.query_one("#knobs-error", Static)
                error.update(f"! {e}; nothing sent")
                error.add_class("-shown")
                self.query_one(f"#knob-{knob}", Input).focus()
                return
            if value != self.current[knob]:
                changes[knob] = value
        self.dismiss(changes)

    def action_cancel(self) -> None:
        self.dismiss(None)

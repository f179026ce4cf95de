"""The monitor's attention and gradient panes as one widget: which probe, image, layer and head is shown,
the probe files it has loaded (read off the event loop), and the keys that move through them.

Attributes down: the screen sets `probes` (the run's AttentionProbe events) and `grad_flow` (the latest
GradFlow) as the history grows; everything else is this widget's own. Its keys are its BINDINGS, active
when the focus is in one of its panes; the screen forwards the same keys (`forwarded_bindings`) so they
work wherever the focus is."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import var

from vittui.runs.events import AttentionProbe, GradFlow
from vittui.ui.messages import ProbeLoaded
from vittui.ui.probeview import LoadedProbe, Selection
from vittui.ui.widgets.attention_pane import AttentionPane, AttentionView
from vittui.ui.widgets.grad_pane import GradPane

PROBE_CACHE = 6  # loaded probe files kept in memory (scrubbing back and forth)


class InsightPanes(Horizontal):
    BINDINGS = [
        Binding("l", "layer(1)", "Next layer", show=False),
        Binding("L", "layer(-1)", "Previous layer", show=False),
        Binding("h", "head(1)", "Next head", show=False),
        Binding("H", "head(-1)", "Previous head", show=False),
        Binding("o", "rollout", "Rollout on/off", show=False),
        Binding("i", "image(1)", "Next probe image", show=False),
        Binding("I", "image(-1)", "Previous probe image", show=False),
        Binding("less_than_sign", "probe_step(-1)", "Older probe", show=False),
        Binding("greater_than_sign", "probe_step(1)", "Newer probe", show=False),
    ]

    probes: var[tuple[AttentionProbe, ...]] = var(())
    """The run's attention probes, oldest first (set by the screen)."""
    grad_flow: var[GradFlow | None] = var(None)
    """The latest gradient-flow event (set by the screen)."""
    probe_off: var[str] = var("")
    """The run's log line saying why attention probing switched off, "" while it runs (set by the screen)."""
    probe_index: var[int | None] = var(None)
    """The probe shown; None follows the newest."""
    selection: var[Selection] = var(Selection)
    """Layer, head, image and rollout of the probe shown."""

    def __init__(self, run_path: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.run_path = run_path
        self.loaded: dict[str, LoadedProbe] = {}  # path -> probe, least recently loaded first
        self.errors: dict[str, str] = {}  # path -> why it could not be read
        self._loading: str | None = None

    @classmethod
    def forwarded_bindings(cls, action: str) -> list[Binding]:
        """This widget's keys for its screen, running `action('<the widget's action>')` there."""
        return [Binding(b.key, f"{action}({b.action!r})", b.description, show=b.show) for b in cls.BINDINGS]

    def compose(self) -> ComposeResult:
        yield AttentionPane(id="attention-pane")
        yield GradPane(id="grad-pane")

    def on_mount(self) -> None:
        self.show_attention()
        self.query_one(GradPane).show(self.grad_flow)

    # --- what is shown ----------------------------------------------------------------------------
    @property
    def shown_index(self) -> int:
        n = len(self.probes)
        return n - 1 if self.probe_index is None else min(self.probe_index, n - 1)

    @property
    def shown_probe(self) -> LoadedProbe | None:
        return self.loaded.get(self.probes[self.shown_index].path) if self.probes else None

    def watch_probes(self) -> None:
        self.show_attention()

    def watch_probe_off(self) -> None:
        self.show_attention()

    def watch_probe_index(self) -> None:
        self.show_attention()

    def watch_selection(self) -> None:
        self.show_attention()

    def watch_grad_flow(self, flow: GradFlow | None) -> None:
        if self.is_mounted:
            self.query_one(GradPane).show(flow)

    def show_attention(self) -> None:
        """Hand the attention pane what it draws; start loading the probe file shown if it is not here."""
        if not self.is_mounted:
            return
        probes = self.probes
        view = AttentionView(probes=len(probes), selection=self.selection, off=self.probe_off)
        if probes:
            index = self.shown_index
            event = probes[index]
            view.index, view.event, view.live = index, event, self.probe_index is None
            view.probe = self.loaded.get(event.path)
            view.error = self.errors.get(event.path, "")
            if view.probe is None and not view.error and self._loading != event.path:
                self._loading = event.path
                self.load_probe(event.path)
            if view.probe is not None:
                self.selection.clamp(view.probe)
        self.query_one(AttentionPane).show(view)

    # --- keys -------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("layer", "head", "rollout", "image", "probe_step"):
            return True if self.probes else None
        return True

    def action_layer(self, delta: int) -> None:
        if (p := self.shown_probe) is not None:
            self.selection = replace(self.selection, rollout=False, layer=(self.selection.layer + delta) % p.layers)

    def action_head(self, delta: int) -> None:
        if (p := self.shown_probe) is not None:
            self.selection = replace(self.selection, rollout=False, head=(self.selection.head + delta) % p.heads)

    def action_rollout(self) -> None:
        self.selection = replace(self.selection, rollout=not self.selection.rollout)

    def action_image(self, delta: int) -> None:
        if (p := self.shown_probe) is not None:
            self.selection = replace(self.selection, image=(self.selection.image + delta) % p.images_count)

    def action_probe_step(self, delta: int) -> None:
        if n := len(self.probes):
            index = self.shown_index + delta
            self.probe_index = None if index >= n - 1 else max(0, index)

    # --- loading probe files ----------------------------------------------------------------------
    @work(thread=True, exclusive=False, exit_on_error=False, group="probe", name="load-probe")
    def load_probe(self, rel_path: str) -> None:
        """Read one probe file and compute its rollout off the event loop. Not exclusive: each load is of
        another file, and every one that finishes goes into the cache that scrubbing back reads."""
        from vittui.ui import probeview

        try:
            probe = probeview.load(self.run_path, rel_path)
        except Exception as e:  # noqa: BLE001 - a bad file is a message on screen, not a dead pane
            self.post_message(ProbeLoaded(rel_path, None, f"{type(e).__name__}: {e}"))
            return
        self.post_message(ProbeLoaded(rel_path, probe))

    def on_probe_loaded(self, message: ProbeLoaded) -> None:
        message.stop()
        if self._loading == message.path:
            self._loading = None
        if message.probe is None:
            self.errors[message.path] = message.error
        else:
            self.loaded.pop(message.path, None)
            self.loaded[message.path] = message.probe
            while len(self.loaded) > PROBE_CACHE:
                self.loaded.pop(next(iter(self.loaded)))
        self.show_attention()

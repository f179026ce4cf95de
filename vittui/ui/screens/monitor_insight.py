"""The monitor's attention and gradient panes: which probe, image, layer and head is shown, loading
probe files off the event loop, and the keys that move through them. A mixin of `MonitorScreen`, apart
so the screen's own file holds the run (events, state, plots, commands) and this one the insight panes."""

from __future__ import annotations

from textual import work

from vittui.ui.messages import ProbeLoaded
from vittui.ui.probeview import LoadedProbe
from vittui.ui.widgets.attention_pane import AttentionPane, AttentionView
from vittui.ui.widgets.grad_pane import GradPane

PROBE_CACHE = 6  # loaded probe files kept in memory (scrubbing back and forth)


class InsightPanes:
    """Needs from the screen: `run`, `history`, `selection`, `probe_index`, `probes`, `probe_errors`,
    `_loading` (set in `MonitorScreen.__init__`)."""

    @property
    def shown_probe_index(self) -> int:
        n = len(self.history.probes)
        if self.probe_index is None:
            return n - 1
        return min(self.probe_index, n - 1)

    def show_insight(self) -> None:
        """Hand the attention and gradient panes what they draw; start loading a probe file if needed."""
        probes = self.history.probes
        view = AttentionView(probes=len(probes), selection=self.selection)
        if probes:
            index = self.shown_probe_index
            event = probes[index]
            view.index, view.event, view.live = index, event, self.probe_index is None
            view.probe = self.probes.get(event.path)
            view.error = self.probe_errors.get(event.path, "")
            if view.probe is None and not view.error and self._loading != event.path:
                self._loading = event.path
                self.load_probe(event.path)
            if view.probe is not None:
                self.selection.clamp(view.probe)
        self.query_one(AttentionPane).show(view)
        self.query_one(GradPane).show(self.history.grad_flow)

    def _loaded_probe(self) -> LoadedProbe | None:
        probes = self.history.probes
        if not probes:
            return None
        return self.probes.get(probes[self.shown_probe_index].path)

    def action_layer(self, delta: int) -> None:
        p = self._loaded_probe()
        if p is not None:
            self.selection.rollout = False
            self.selection.layer = (self.selection.layer + delta) % p.layers
        self.show_insight()

    def action_head(self, delta: int) -> None:
        p = self._loaded_probe()
        if p is not None:
            self.selection.rollout = False
            self.selection.head = (self.selection.head + delta) % p.heads
        self.show_insight()

    def action_rollout(self) -> None:
        self.selection.rollout = not self.selection.rollout
        self.show_insight()

    def action_image(self, delta: int) -> None:
        p = self._loaded_probe()
        if p is not None:
            self.selection.image = (self.selection.image + delta) % p.images_count
        self.show_insight()

    def action_probe_step(self, delta: int) -> None:
        n = len(self.history.probes)
        if not n:
            return
        index = self.shown_probe_index + delta
        self.probe_index = None if index >= n - 1 else max(0, index)
        self.show_insight()

    def action_toggle_insight(self) -> None:
        self.toggle_class("-insight" if self.has_class("-narrow") else "-no-insight")

    @work(thread=True, exclusive=False, exit_on_error=False, group="probe", name="load-probe")
    def load_probe(self, rel_path: str) -> None:
        """Read one probe file and compute its rollout off the event loop."""
        from vittui.ui import probeview

        try:
            probe = probeview.load(self.run.path, rel_path)
        except Exception as e:  # noqa: BLE001 - a bad file is a message on screen, not a dead pane
            self.post_message(ProbeLoaded(rel_path, None, f"{type(e).__name__}: {e}"))
            return
        self.post_message(ProbeLoaded(rel_path, probe))

    def on_probe_loaded(self, message: ProbeLoaded) -> None:
        if self._loading == message.path:
            self._loading = None
        if message.probe is None:
            self.probe_errors[message.path] = message.error
        else:
            self.probes.pop(message.path, None)
            self.probes[message.path] = message.probe  # type: ignore[assignment]
            while len(self.probes) > PROBE_CACHE:
                self.probes.pop(next(iter(self.probes)))
        self.show_insight()

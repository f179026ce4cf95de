"""The monitor: one run, live. A thread worker tails events.jsonl and posts batches; another samples
the GPU/host. Handlers fold events into a RunHistory; a timer pushes it down to the widgets at most
four times a second however fast events come. Attaching to a long run replays the whole file."""

from __future__ import annotations

import time

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from vittui.hardware import process_tree
from vittui.runs import control
from vittui.runs.events import ControlAck, EventTail, Status, replay_stride
from vittui.runs.history import RunHistory, smooth
from vittui.runs.registry import is_live, run_state
from vittui.runs.store import RunDir, RunStatus
from vittui.ui.messages import EventsArrived, HardwareSampled, RunStateChanged
from vittui.ui.probeview import LoadedProbe, Selection
from vittui.ui.screens.modals import ConfirmModal, HelpModal, QuitModal, key_rows
from vittui.ui.screens.monitor_insight import InsightPanes
from vittui.ui.widgets.attention_pane import AttentionPane
from vittui.ui.widgets.gpu_pane import GpuPane, GpuPaneData
from vittui.ui.widgets.grad_pane import GradPane
from vittui.ui.widgets.log_pane import LogPane
from vittui.ui.widgets.metric_plot import MetricPlot, Series
from vittui.ui.widgets.run_header import HeaderData, RunHeader

SMOOTHING_LEVELS = (0.0, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99)
POLL_S = 0.2
REDRAW_S = 0.25  # the header (step, state, ETA) at most four times a second
PLOT_S = 1.0  # the loss plot at most once a second: plotting is what costs the dashboard CPU
LR_PLOT_S = 5.0  # lr follows its schedule smoothly: a redraw every 5 s shows it as well
STATE_EVERY_S = 1.0
HARDWARE_EVERY_S = 1.0
INITIAL_CHUNK = 8 << 20  # bytes per batch while replaying history


class MonitorScreen(InsightPanes, Screen):
    # Most needed first: on a narrow terminal the footer shows the head of this list (? lists all).
    BINDINGS = [
        Binding("space", "pause", "Pause"),
        Binding("space", "resume", "Resume"),
        Binding("s", "stop", "Stop"),
        Binding("d", "detach", "Detach"),
        Binding("q", "quit_run", "Quit"),
        Binding("question_mark", "help", "Help"),
        Binding("c", "checkpoint", "Ckpt"),
        Binding("e", "eval", "Eval"),
        Binding("r", "app.runs", "Runs"),
        Binding("tab", "app.focus_next", "Pane"),
        Binding("shift+tab", "app.focus_previous", "Pane", show=False),
        Binding("v", "report", "Report"),
        Binding("a", "toggle_insight", "Attention", show=False),
        Binding("n", "app.setup", "New run", show=False),
        Binding("left_square_bracket", "smoothing(-1)", "Less smoothing", show=False),
        Binding("right_square_bracket", "smoothing(1)", "More smoothing", show=False),
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
    # (action, title, help) listed in the command palette when check_action allows them
    PALETTE = [
        ("pause", "Pause run", "Pause training after the current step"),
        ("resume", "Resume run", "Resume a paused run"),
        ("checkpoint", "Checkpoint now", "Save a checkpoint at the next step"),
        ("eval", "Evaluate now", "Run validation at the next step"),
        ("stop", "Stop run", "Checkpoint and end the run (asks first)"),
        ("detach", "Detach", "Leave the run going and quit the dashboard"),
        ("app.runs", "Runs", "Every run in the runs folder"),
        ("app.setup", "New run", "Back to the setup screen"),
        ("smoothing(1)", "More smoothing", "Increase the loss EMA smoothing"),
        ("smoothing(-1)", "Less smoothing", "Decrease the loss EMA smoothing"),
        ("toggle_insight", "Attention and gradients", "Show or hide the attention and gradient panes"),
        ("rollout", "Attention rollout on/off", "Rollout through all layers, or one layer and head"),
        ("report", "Evaluation report", "The report of a finished or stopped run (offers to evaluate)"),
        ("help", "Help", "Keys of this screen"),
    ]
    HELP_NOTES = ("[ and ] change the loss smoothing. Plots show train loss smoothed (braille) and val (markers).\n"
                  "Attention: l/L layer, h/H head, o rollout, i/I image, < and > older/newer probe; a shows or "
                  "hides the attention and gradient panes (on a narrow terminal they take the plots' place).")

    def __init__(self, run: RunDir) -> None:
        super().__init__(classes="monitor")
        self.run = run
        self.history = RunHistory()
        self.state: str = "starting"
        self.status: RunStatus | None = None
        self.pending = ""
        self.smoothing_index = 2
        self._dirty = True
        self._hw_dirty = False
        self._drawn: dict[str, object] = {}  # what each plot last drew (counts, smoothing, time)
        self._hw = GpuPaneData()
        self._pids: tuple[int, ...] = ()
        self.replayed = False  # the whole history has been read once
        self.selection = Selection()
        self.probe_index: int | None = None  # None: follow the newest probe
        self.probes: dict[str, LoadedProbe] = {}  # path -> loaded probe (a few, newest used last)
        self.probe_errors: dict[str, str] = {}
        self._loading: str | None = None

    # --- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        with Horizontal(id="plots"):
            yield MetricPlot("loss", id="plot-loss")
            yield MetricPlot("accuracy", empty="no eval yet", id="plot-acc")
            yield MetricPlot("lr", id="plot-lr")
        with Horizontal(id="insight"):
            yield AttentionPane(id="attention-pane")
            yield GradPane(id="grad-pane")
        with Horizontal(id="panes"):
            yield GpuPane(id="gpu-pane")
            yield LogPane(id="log-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.run.name
        self.status = self.run.read_status()
        if self.status:
            self.state = run_state(self.run)
            self._pids = (self.status.pid,) if self.status.pid else ()
        self.set_interval(REDRAW_S, self.flush)
        self.tail_events()
        self.sample_hardware()
        self._estimate()

    def _estimate(self) -> None:
        """The planner's memory estimate for this run's recipe (pure Python, no torch; a few ms)."""
        try:
            from vittui.planning.memory import estimate
            from vittui.recipe import load

            est = estimate(load(self.run.recipe_path))
        except Exception:  # noqa: BLE001 - an estimate is a courtesy; a recipe it cannot size shows none
            return
        self._hw.estimate_peak, self._hw.estimate_activations = est.peak, est.activations
        self._hw_dirty = True
        self.flush()

    @property
    def smoothing(self) -> float:
        return SMOOTHING_LEVELS[self.smoothing_index]

    @property
    def live(self) -> bool:
        return is_live(self.state)

    # --- workers ---------------------------------------------------------------------------------
    @work(thread=True, exclusive=True, exit_on_error=False, group="tail", name="tail-events")
    def tail_events(self) -> None:
        worker = get_current_worker()
        tail = EventTail(self.run.events_path)
        stride = replay_stride(tail)  # a long run's steps are sampled; everything else is read
        while not worker.is_cancelled:  # replay the history in bounded batches
            batch = tail.poll(max_bytes=INITIAL_CHUNK, step_stride=stride)
            if not batch:
                break
            self.post_message(EventsArrived(batch, initial=True))
        self.post_message(EventsArrived([], initial=True))  # marks the end of the replay
        last_state = 0.0
        while not worker.is_cancelled:
            batch = tail.poll()
            if batch:
                self.post_message(EventsArrived(batch))
            now = time.monotonic()
            # status.json and the lock are read when the stream says the state changed, and every
            # STATE_EVERY_S otherwise (a worker killed with -9 writes no event: that shows as "lost")
            if any(isinstance(e, Status) for e in batch) or now - last_state >= STATE_EVERY_S:
                last_state = now
                self.post_message(RunStateChanged(run_state(self.run), self.run.read_status()))
            time.sleep(POLL_S)

    @work(thread=True, exclusive=True, exit_on_error=False, group="hardware", name="sample-hardware")
    def sample_hardware(self) -> None:
        worker = get_current_worker()
        source = self.app.gpu_source  # type: ignore[attr-defined]
        while not worker.is_cancelled:
            pids = list(dict.fromkeys([*self._pids, *process_tree(self._pids)]))
            gpus = source.gpus(pids or None)
            host = source.host(pids)
            self.post_message(HardwareSampled(gpus, host, bool(source.available), str(source.reason)))
            for _ in range(int(HARDWARE_EVERY_S / 0.1)):
                if worker.is_cancelled:
                    return
                time.sleep(0.1)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.state == WorkerState.ERROR:
            err = event.worker.error
            self.query_one(LogPane).add("error", f"{event.worker.name} failed: {err!r}")
            self.notify(f"{event.worker.name} failed: {err}", severity="error")

    # --- messages from workers -------------------------------------------------------------------
    def on_events_arrived(self, message: EventsArrived) -> None:
        events = message.events
        self.history.feed(events)
        self.query_one(LogPane).add_events(events)
        for ev in events:
            if isinstance(ev, Status):
                self._set_state(ev.state)
            elif isinstance(ev, ControlAck) and ev.command in ("pause", "resume", "stop"):
                pass  # the Status event that follows settles the state
        self._dirty = True
        if message.initial and not events and not self.replayed:
            self.replayed = True
            if self.status is None and self.history.state:
                self._set_state(self.history.state)
            self.flush()  # the rebuilt history shows at once

    def on_run_state_changed(self, message: RunStateChanged) -> None:
        self.status = message.status
        if message.status and message.status.pid:
            self._pids = (message.status.pid,)
        self._set_state(message.state)

    def on_hardware_sampled(self, message: HardwareSampled) -> None:
        self._hw.sampled = True
        self._hw.available = message.available
        self._hw.reason = message.reason
        self._hw.gpus = message.gpus
        self._hw.host = message.host
        self._hw_dirty = True

    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if (self.pending.startswith("paus") and state == "paused") or (
            self.pending.startswith("resum") and state == "running"
        ) or (self.pending.startswith("stop") and state in ("stopping", "stopped")) or not is_live(state):
            self.pending = ""
        self._dirty = True
        self.refresh_bindings()
        self._draw_header()  # a state change (paused, running) shows at once, not at the next tick

    # --- drawing (capped rate) -------------------------------------------------------------------
    def _draw_header(self) -> None:
        if not self.is_mounted:
            return
        h = self.history
        last = h.last_step
        self.query_one(RunHeader).show(HeaderData(
            name=self.run.name,
            state=self.state,
            pending=self.pending,
            step=h.step or (self.status.step if self.status else 0),
            total=h.total_steps or (self.status.total_steps if self.status else 0),
            epoch=h.epoch,
            eta=h.eta_seconds() if is_live(self.state) else None,
            images_per_s=last.images_per_s if last else None,
            data_time=last.data_time if last else None,
            step_time=last.step_time if last else None,
            best_top1=h.best_top1,
            smoothing=self.smoothing,
        ))

    def flush(self) -> None:
        if self._hw_dirty:
            self._hw_dirty = False
            last = self.history.last_step
            self._hw.torch_allocated = last.torch_allocated if last else None
            self._hw.torch_reserved = last.torch_reserved if last else None
            self.query_one(GpuPane).show(self._hw)
        if not self._dirty:
            return
        self._dirty = False
        h = self.history
        last = h.last_step
        self._draw_header()
        # Each plot redraws only when what it shows changed: accuracy at an eval, the attention and
        # gradient panes at a probe, loss at most once a second and lr (a smooth schedule) every
        # LR_PLOT_S; a plot that is due later leaves the screen dirty so a later flush draws it.
        drawn, now = self._drawn, time.monotonic()
        version = h.series.version
        evals_changed = drawn.get("evals") != len(h.eval_steps)
        asked = drawn.get("smoothing") != self.smoothing  # a key press redraws at once
        loss_stale = drawn.get("loss_v") != version or asked or evals_changed
        lr_stale = drawn.get("lr_v") != version
        xs = None
        if loss_stale and (asked or evals_changed or now - drawn.get("loss_t", 0.0) >= PLOT_S):
            xs = h.steps
            plot = self.query_one("#plot-loss", MetricPlot)
            plot.set_series([
                Series(f"train (ema {self.smoothing:g})", xs, smooth(h.loss, self.smoothing)),
                Series("val", h.eval_steps, h.eval_loss, marker="o"),
            ])
            plot.redraw()
            drawn.update(loss_v=version, smoothing=self.smoothing, loss_t=now)
            loss_stale = False
        if lr_stale and (evals_changed or now - drawn.get("lr_t", 0.0) >= LR_PLOT_S):
            plot = self.query_one("#plot-lr", MetricPlot)
            plot.set_series([Series("lr", h.steps if xs is None else xs, h.lr)])
            plot.redraw()
            drawn.update(lr_v=version, lr_t=now)
            lr_stale = False
        if loss_stale or lr_stale:
            self._dirty = True
        if evals_changed:
            self.query_one("#plot-acc", MetricPlot).set_series([
                Series("top-1", h.eval_steps, h.top1, marker="*"),
                Series("top-5", h.eval_steps, h.top5, marker="+"),
            ])
            self.query_one("#plot-acc", MetricPlot).redraw()
            drawn["evals"] = len(h.eval_steps)
        insight = (len(h.probes), id(h.grad_flow))
        if drawn.get("insight") != insight:
            self.show_insight()
            drawn["insight"] = insight
        if self._hw.sampled and last is not None:
            self._hw.torch_allocated = last.torch_allocated
            self._hw.torch_reserved = last.torch_reserved
            self.query_one(GpuPane).show(self._hw)

    def action_report(self) -> None:
        from vittui.ui.screens.report import ReportScreen

        self.app.push_screen(ReportScreen(self.run))

    # --- keys ------------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        state = self.state
        if action == "pause":
            if state == "paused":
                return False  # space means resume now
            return True if state in ("running", "starting") and not self.pending else None
        if action == "resume":
            return state == "paused" and not self.pending.startswith("resum")
        if action in ("checkpoint", "eval"):
            return True if state in ("running", "paused") else None
        if action == "stop":
            return True if is_live(state) and state != "stopping" else None
        if action == "detach":
            return is_live(state)
        if action == "report":
            return not is_live(state)
        if action in ("layer", "head", "rollout", "image", "probe_step"):
            return True if self.history.probes else None
        return True

    def _send(self, command: str, pending: str = "", **args) -> None:
        try:
            cmd = control.send(self.run.path, command, **args)
        except OSError as e:
            self.notify(f"could not send {command}: {e}", severity="error")
            return
        self.query_one(LogPane).add("note", f"sent {command} (id {cmd.id})")
        if pending:
            self.pending = pending
            self._dirty = True
            self.refresh_bindings()
            self.flush()

    def action_pause(self) -> None:
        self._send("pause", "pausing…")

    def action_resume(self) -> None:
        self._send("resume", "resuming…")

    def action_checkpoint(self) -> None:
        self._send("checkpoint")
        self.notify("checkpoint requested")

    def action_eval(self) -> None:
        self._send("eval")
        self.notify("evaluation requested")

    def action_stop(self) -> None:
        def done(yes: bool | None) -> None:
            if yes:
                self._send("stop", "stopping…")

        self.app.push_screen(
            ConfirmModal(f"Stop run {self.run.name}? It saves a checkpoint and ends.", "Stop", "Keep running"),
            done,
        )

    def action_detach(self) -> None:
        self.app.exit(result="detached")

    def action_quit_run(self) -> None:
        if not self.live:
            self.app.exit(result="quit")
            return

        def done(choice: str | None) -> None:
            if choice == "detach":
                self.app.exit(result="detached")
            elif choice == "stop":
                self._send("stop", "stopping…")
                self.app.exit(result="stopped")

        self.app.push_screen(QuitModal(self.run.name), done)

    def action_smoothing(self, delta: int) -> None:
        self.smoothing_index = max(0, min(len(SMOOTHING_LEVELS) - 1, self.smoothing_index + delta))
        self._dirty = True
        self.flush()

    def action_help(self) -> None:
        self.app.push_screen(HelpModal(f"Monitor - {self.run.name}", key_rows(self), self.HELP_NOTES))


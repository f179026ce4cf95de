"""The monitor: one run, live. A thread worker tails events.jsonl and posts batches; another samples
the GPU/host; a third sizes the run's recipe with the planner. Handlers fold events into a RunHistory; a
timer pushes it down to the widgets at most four times a second however fast events come, and each plot
redraws at its own capped rate. Attaching to a long run replays the whole file.

`k` opens the live knobs form (screens/knobs.py) at the knobs' current values — the recipe's, with what
the history says the live worker was set to on top — and sends what changed as one `set`; the worker's
acknowledgement comes back as a marker (the fold's `markers`), drawn on the loss and accuracy plots and
listed in the log with pauses, faults and suspends."""

from __future__ import annotations

import time
from dataclasses import replace

from textual import work
from textual.actions import parse as parse_action
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.reactive import var
from textual.widgets import Footer
from textual.worker import get_current_worker

from vittui.hardware import process_tree
from vittui.runs import control
from vittui.runs.events import EventTail, Status, replay_stride
from vittui.runs.history import RunHistory, smooth
from vittui.ui.screens.knobs import KnobsModal
from vittui.runs.registry import is_live, run_state
from vittui.runs.store import RunDir, RunStatus
from vittui.ui.messages import EventsArrived, HardwareSampled, MemoryEstimated, RunStateChanged, WorkerFailed
from vittui.ui.screens.base import VittuiScreen
from vittui.ui.screens.modals import ConfirmModal, HelpModal, QuitModal, key_rows
from vittui.ui.widgets.gpu_pane import GpuPane, GpuPaneData
from vittui.ui.widgets.insight_panes import InsightPanes
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


class MonitorScreen(VittuiScreen):
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
        Binding("z", "suspend", "Suspend"),
        Binding("k", "knobs", "Knobs"),
        Binding("r", "app.runs", "Runs"),
        Binding("tab", "app.focus_next", "Pane"),
        Binding("shift+tab", "app.focus_previous", "Pane", show=False),
        Binding("v", "report", "Report"),
        Binding("a", "toggle_insight", "Attention", show=False),
        Binding("n", "app.setup", "New run", show=False),
        Binding("left_square_bracket", "smoothing(-1)", "Less smoothing", show=False),
        Binding("right_square_bracket", "smoothing(1)", "More smoothing", show=False),
        *InsightPanes.forwarded_bindings("insight"),  # l/L h/H o i/I < >, wherever the focus is
    ]
    # (action, title, help) listed in the command palette when check_action allows them
    PALETTE = [
        ("pause", "Pause run", "Pause training after the current step"),
        ("resume", "Resume run", "Resume a paused run"),
        ("checkpoint", "Checkpoint now", "Save a checkpoint at the next step"),
        ("eval", "Evaluate now", "Run validation at the next step"),
        ("stop", "Stop run", "Checkpoint and end the run (asks first)"),
        ("suspend", "Suspend run", "Checkpoint and let the worker exit, freeing its memory; resume from the runs screen"),
        ("knobs", "Live knobs", "Change the lr multiplier, eval interval or probe interval of the live run"),
        ("detach", "Detach", "Leave the run going and quit the dashboard"),
        ("app.runs", "Runs", "Every run in the runs folder"),
        ("app.setup", "New run", "Back to the setup screen"),
        ("smoothing(1)", "More smoothing", "Increase the loss EMA smoothing"),
        ("smoothing(-1)", "Less smoothing", "Decrease the loss EMA smoothing"),
        ("toggle_insight", "Attention and gradients", "Show or hide the attention and gradient panes"),
        ("insight('rollout')", "Attention rollout on/off", "Rollout through all layers, or one layer and head"),
        ("report", "Evaluation report", "The report of a finished or stopped run (offers to evaluate)"),
        ("help", "Help", "Keys of this screen"),
    ]
    HELP_NOTES = ("z suspends: a checkpoint at the next step, then the worker exits and frees its memory; "
                  "u on the runs screen resumes it.\n"
                  "k changes live knobs (lr multiplier, eval and probe intervals) from the next step; each change, "
                  "pause, fault and suspend is a marker on the loss and accuracy plots and a MARK line in the log.\n"
                  "[ and ] change the loss smoothing. Plots show train loss smoothed (braille) and val (markers).\n"
                  "Attention: l/L layer, h/H head, o rollout, i/I image, < and > older/newer probe; a shows or "
                  "hides the attention and gradient panes (on a narrow terminal they take the plots' place).")

    state: var[str] = var("starting", init=False, bindings=True)
    """The run's state as last seen (launcher.run_state, Status events); the keys follow it."""
    pending: var[str] = var("", init=False, bindings=True)
    """"pausing…" and the like between a command and its effect; that key is off meanwhile."""
    smoothing_index: var[int] = var(2, init=False)
    """Which of SMOOTHING_LEVELS the loss plot uses ([ and ])."""
    hardware: var[GpuPaneData] = var(GpuPaneData, init=False)
    """The latest GPU/host reading, with torch's numbers and the planner's estimate beside it."""
    # What each plot shows: setting one redraws that plot, the same value again draws nothing. `flush`
    # decides when a changed value is due.
    loss_shown: var[tuple[int, float, int, int]] = var((-1, -1.0, -1, -1), init=False)
    """(series version, smoothing, evaluations, markers) in the loss plot."""
    lr_shown: var[int] = var(-1, init=False)
    """Series version in the lr plot."""
    evals_shown: var[tuple[int, int]] = var((-1, -1), init=False)
    """(evaluations, markers) in the accuracy plot."""
    recipe_knobs: var[dict[str, float] | None] = var(None, init=False, bindings=True)
    """The knobs the run's recipe starts a worker with (read off the event loop); `k` waits for them."""

    def __init__(self, run: RunDir) -> None:
        super().__init__(classes="monitor")
        self.run = run
        self.history = RunHistory()
        self.status: RunStatus | None = None
        self._pids: tuple[int, ...] = ()
        self._loss_at = self._lr_at = float("-inf")  # when the loss and lr plots were drawn (time.monotonic)
        self.replayed = False  # the whole history has been read once

    # --- layout ----------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield RunHeader(id="run-header")
        with Horizontal(id="plots"):
            yield MetricPlot("loss", id="plot-loss")
            yield MetricPlot("accuracy", empty="no eval yet", id="plot-acc")
            yield MetricPlot("lr", id="plot-lr")
        yield InsightPanes(self.run.path, id="insight")
        with Horizontal(id="panes"):
            yield GpuPane(id="gpu-pane")
            yield LogPane(id="log-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = self.run.name
        self.status = self.run.read_status()
        if self.status:
            self.state = run_state(self.run, ask_slurm=False)  # no squeue here; the tail worker asks Slurm
            self._pids = (self.status.pid,) if self.status.pid else ()
        self.flush()  # the empty plots and panes say what they wait for until the history arrives
        self.set_interval(REDRAW_S, self.flush)
        self.tail_events()
        self.sample_hardware()
        self.estimate_memory(self.run.recipe_path)
        self.read_recipe_knobs()

    @property
    def insight(self) -> InsightPanes:
        return self.query_one(InsightPanes)

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

    @work(thread=True, exclusive=True, exit_on_error=False, group="recipe", name="read-recipe")
    def read_recipe_knobs(self) -> None:
        """The knobs a worker starts with, from the run's recipe.toml (read off the event loop)."""
        from vittui.recipe import load

        r = load(self.run.recipe_path)
        knobs = {"lr_multiplier": 1.0, "eval_every": r.run.eval_every, "probe_every": r.run.probe_every}
        self.app.call_from_thread(setattr, self, "recipe_knobs", knobs)

    @property
    def knobs(self) -> dict[str, float]:
        """The live worker's knobs now: the recipe's, with the acknowledged changes since it started."""
        return {**(self.recipe_knobs or {}), **self.history.knobs}

    @work(thread=True, exclusive=True, exit_on_error=False, group="hardware", name="sample-hardware")
    def sample_hardware(self) -> None:
        worker = get_current_worker()
        source = self.vittui_app.gpu_source
        while not worker.is_cancelled:
            pids = list(dict.fromkeys([*self._pids, *process_tree(self._pids)]))
            gpus = source.gpus(pids or None)
            host = source.host(pids)
            self.post_message(HardwareSampled(gpus, host, bool(source.available), str(source.reason)))
            for _ in range(int(HARDWARE_EVERY_S / 0.1)):
                if worker.is_cancelled:
                    return
                time.sleep(0.1)

    # --- messages from workers -------------------------------------------------------------------
    def on_worker_failed(self, message: WorkerFailed) -> None:
        self.query_one(LogPane).add("error", f"{message.where} failed: {message.error}")

    def on_events_arrived(self, message: EventsArrived) -> None:
        events = message.events
        self.history.feed(events)
        self.query_one(LogPane).add_events(events)
        for ev in events:
            if isinstance(ev, Status):
                self.state = ev.state
        if message.initial and not events and not self.replayed:
            self.replayed = True
            if self.status is None and self.history.state:
                self.state = self.history.state
            self.flush()  # the rebuilt history shows at once

    def on_run_state_changed(self, message: RunStateChanged) -> None:
        self.status = message.status
        if message.status and message.status.pid:
            self._pids = (message.status.pid,)
        self.state = message.state

    def on_hardware_sampled(self, message: HardwareSampled) -> None:
        self.hardware = replace(self.hardware, sampled=True, available=message.available, reason=message.reason,
                                gpus=message.gpus, host=message.host)

    def on_memory_estimated(self, message: MemoryEstimated) -> None:
        # an estimate is a courtesy: a recipe the planner cannot size shows none
        if (est := message.estimate) is not None:
            self.hardware = replace(self.hardware, estimate_peak=est.peak, estimate_activations=est.activations)

    # --- what changes redraws --------------------------------------------------------------------
    def watch_state(self, state: str) -> None:
        pending = self.pending
        if (pending.startswith("paus") and state == "paused") or (
            pending.startswith("resum") and state == "running"
        ) or (pending.startswith("stop") and state in ("stopping", "stopped")) or not is_live(state):
            self.pending = ""
        self._draw_header()  # a state change (paused, running) shows at once, not at the next tick

    def watch_pending(self) -> None:
        self._draw_header()

    def watch_smoothing_index(self) -> None:
        self.flush()  # a key press redraws at once

    def watch_hardware(self, data: GpuPaneData) -> None:
        self.query_one(GpuPane).data = data

    def watch_loss_shown(self) -> None:
        h = self.history
        self._plot("#plot-loss", [
            Series(f"train (ema {self.smoothing:g})", h.steps, smooth(h.loss, self.smoothing)),
            Series("val", h.eval_steps, h.eval_loss, marker="o"),
        ], h.markers)
        self._loss_at = time.monotonic()

    def watch_lr_shown(self) -> None:
        h = self.history
        self._plot("#plot-lr", [Series("lr", h.steps, h.lr)])
        self._lr_at = time.monotonic()

    def watch_evals_shown(self) -> None:
        h = self.history
        self._plot("#plot-acc", [
            Series("top-1", h.eval_steps, h.top1, marker="*"),
            Series("top-5", h.eval_steps, h.top5, marker="+"),
        ], h.markers)

    def _plot(self, selector: str, series: list[Series], markers=()) -> None:
        plot = self.query_one(selector, MetricPlot)
        plot.set_series(series)
        plot.set_markers(list(markers))
        plot.redraw()

    # --- drawing (capped rate) -------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the history down to the widgets (every REDRAW_S, and at once after a replay or a key).

        The header and the panes redraw when what they show changed. The accuracy plot redraws at an
        eval; the loss plot at most every PLOT_S and the lr plot (a smooth schedule) every LR_PLOT_S, both
        at once when an eval or the smoothing changed what they show."""
        h = self.history
        self._draw_header()
        last = h.last_step
        if last is not None:
            self.hardware = replace(self.hardware, torch_allocated=last.torch_allocated,
                                    torch_reserved=last.torch_reserved)
        now, version, evals, marks = time.monotonic(), h.series.version, len(h.eval_steps), len(h.markers)
        loss = (version, self.smoothing, evals, marks)
        if loss[1:] != self.loss_shown[1:] or now - self._loss_at >= PLOT_S:
            self.loss_shown = loss
        if evals != self.evals_shown[0] or now - self._lr_at >= LR_PLOT_S:
            self.lr_shown = version
        self.evals_shown = (evals, marks)
        insight = self.insight
        insight.probes = tuple(h.probes)
        insight.grad_flow = h.grad_flow
        insight.probe_off = h.probe_off

    def _draw_header(self) -> None:
        h = self.history
        last = h.last_step
        self.query_one(RunHeader).data = HeaderData(
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
        )

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
        if action == "knobs":  # a worker reads commands while it runs or is paused
            return True if state in ("running", "paused") and self.recipe_knobs is not None else None
        if action == "suspend":
            return True if is_live(state) and state != "stopping" and not self.pending else None
        if action == "detach":
            return is_live(state)
        if action == "report":
            return not is_live(state)
        if action == "insight":  # a key of the insight panes: they decide
            _, name, params = parse_action(str(parameters[0]) if parameters else "")
            return self.insight.check_action(name, params)
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

    def action_suspend(self) -> None:
        self._send("suspend", "suspending…")
        self.notify("suspending: the worker checkpoints and exits; resume it from the runs screen (u) "
                    f"or with `vittui ctl {self.run.name} resume`")

    def action_knobs(self) -> None:
        def done(changes: dict[str, float] | None) -> None:
            if changes:
                self._send("set", **changes)
            elif changes is not None:
                self.notify("no knob changed: nothing sent")

        self.app.push_screen(KnobsModal(self.run.name, self.knobs), done)

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

    async def action_insight(self, action: str) -> None:
        await self.insight.run_action(action)

    def action_toggle_insight(self) -> None:
        self.toggle_class("-insight" if self.has_class("-narrow") else "-no-insight")

    def action_help(self) -> None:
        self.app.push_screen(HelpModal(f"Monitor - {self.run.name}", key_rows(self), self.HELP_NOTES))


"""Monitor screen driven by a fake run directory: the test appends events and plays the worker."""

from __future__ import annotations

import time
from contextlib import asynccontextmanager

import pytest
from ui_helpers import SIZE, gpu_source, screen_text, wait_for

from vittui.hardware import NvmlSource
from vittui.runs.events import ControlAck, DataSkipped, Fault, Log
from vittui.ui.app import create_app
from vittui.ui.screens.modals import ConfirmModal, HelpModal, QuitModal
from vittui.ui.screens import monitor as monitor_mod
from vittui.ui.screens.monitor import MonitorScreen
from vittui.ui.widgets.gpu_pane import NO_GPU, GpuPane
from vittui.ui.widgets.log_pane import LogPane
from vittui.ui.widgets.metric_plot import MetricPlot
from vittui.ui.widgets.run_header import RunHeader

pytestmark = pytest.mark.anyio


def header(app) -> str:
    return app.screen.query_one(RunHeader).text


def footer_actions(app) -> dict[str, str]:
    """key -> action the footer shows as enabled."""
    return {k: b.binding.action for k, b in app.screen.active_bindings.items() if b.enabled and b.binding.show}


@asynccontextmanager
async def replayed_monitor(runs_root, fake_run, gpu):
    """The dashboard attached to `fake_run`, once the monitor has replayed its events: (app, pilot)."""
    app = create_app(runs_root, gpu_source=gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.replayed)
        yield app, pilot


async def test_step_counter_advances_as_events_are_appended(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.steps(5)
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, MonitorScreen)
        await wait_for(pilot, lambda: "step 5/100" in header(app), what="history replayed")
        assert "RUNNING" in header(app)
        fake_run.steps(7)
        await wait_for(pilot, lambda: "step 12/100" in header(app), what="live steps")
        assert "epoch 1.20" in header(app)
        assert "640 img/s" in header(app) and "data 4.0 ms" in header(app)
        lengths = app.screen.query_one("#plot-loss", MetricPlot).series_lengths()
        assert lengths == {"train (ema 0.6)": 12, "val": 1}


async def test_space_pauses_then_resumes(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.steps(3)
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "step 3/" in header(app))
        assert footer_actions(app)["space"] == "pause"
        await pilot.press("space")
        assert [c["command"] for c in fake_run.commands()] == ["pause"]
        assert "pausing" in header(app)
        # the worker acknowledges and reports the new state
        fake_run.emit(ControlAck(command="pause", id=fake_run.commands()[0]["id"], step=3))
        fake_run.set_state("paused")
        await wait_for(pilot, lambda: "PAUSED" in header(app), what="paused state")
        assert "pausing" not in header(app)
        assert footer_actions(app)["space"] == "resume"
        await wait_for(pilot, lambda: "space Resume" in screen_text(app).splitlines()[-1], what="footer")
        await pilot.press("space")
        assert [c["command"] for c in fake_run.commands()] == ["pause", "resume"]
        fake_run.set_state("running")
        await wait_for(pilot, lambda: "RUNNING" in header(app), what="running again")
        assert footer_actions(app)["space"] == "pause"
        log = app.screen.query_one(LogPane).lines_text
        assert any("pause done" in line for line in log)


async def test_checkpoint_and_eval_keys_write_commands(runs_root, fake_run, no_gpu):
    fake_run.started()
    async with replayed_monitor(runs_root, fake_run, no_gpu) as (app, pilot):
        await pilot.press("c", "e")
        assert [c["command"] for c in fake_run.commands()] == ["checkpoint", "eval"]


async def test_stop_asks_first(runs_root, fake_run, no_gpu):
    fake_run.started()
    async with replayed_monitor(runs_root, fake_run, no_gpu) as (app, pilot):
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        assert isinstance(app.screen, MonitorScreen)
        assert fake_run.commands() == []
        await pilot.press("s")
        await pilot.press("y")
        assert [c["command"] for c in fake_run.commands()] == ["stop"]
        assert "stopping" in header(app)


async def test_detach_quits_and_leaves_the_run(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.steps(2)
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "step 2/" in header(app))
        await pilot.press("d")
        await wait_for(pilot, lambda: not app.is_running, what="app exit")
    assert app.return_value == "detached"
    assert fake_run.commands() == []
    assert fake_run.run.read_status().state == "running"


async def test_quit_with_a_live_run_asks_detach_or_stop(runs_root, fake_run, no_gpu):
    fake_run.started()
    async with replayed_monitor(runs_root, fake_run, no_gpu) as (app, pilot):
        await pilot.press("q")
        assert isinstance(app.screen, QuitModal)
        await pilot.press("escape")
        assert isinstance(app.screen, MonitorScreen)
        await pilot.press("q")
        await pilot.press("s")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.return_value == "stopped"
    assert [c["command"] for c in fake_run.commands()] == ["stop"]


async def test_finished_run_disables_control_keys_and_q_quits(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.steps(10)
    fake_run.set_state("finished")
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "FINISHED" in header(app))
        assert "ETA --:--" in header(app)
        shown = footer_actions(app)
        assert not {"space", "c", "e", "s", "d"} & set(shown)
        await pilot.press("space", "c", "s", "d")
        assert fake_run.commands() == []
        await pilot.press("q")
        await wait_for(pilot, lambda: not app.is_running)
    assert app.return_value == "quit"


async def test_lost_worker_shows_lost(runs_root, no_gpu):
    from fakerun import FakeRun

    fr = FakeRun(runs_root, name="orphan", pid=999_999_999)
    fr.started()
    app = create_app(runs_root, gpu_source=no_gpu, attach="orphan")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "LOST" in header(app))
    fr.close()


async def test_log_pane_shows_warnings_faults_skips_and_acks(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.emit(
        Log(level="warning", message="val set has 3 classes with < 5 images", step=1),
        Fault(fault="nan", step=4, message="loss became NaN", quantity="loss", suggestion="lower optim.lr"),
        DataSkipped(count=2, examples=["a.jpg", "b.png"]),
        ControlAck(command="eval", id="x", step=5),
    )
    async with replayed_monitor(runs_root, fake_run, no_gpu) as (app, pilot):
        lines = app.screen.query_one(LogPane).lines_text
        assert any(l.startswith("WARN") and "3 classes" in l for l in lines)
        assert any(l.startswith("ERROR") and "NaN" in l and "lower optim.lr" in l for l in lines)
        assert any(l.startswith("WARN") and "skipped 2" in l for l in lines)
        assert any("eval done" in l for l in lines)


async def test_gpu_pane_shows_fed_numbers(runs_root, fake_run):
    fake_run.started()
    fake_run.steps(1, allocated=1 << 30, reserved=3 << 29)
    app = create_app(runs_root, gpu_source=gpu_source(fake_run.pid), attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.screen.query_one(GpuPane)
        await wait_for(pilot, lambda: "GPU 0" in pane.text and "torch allocated 1.0" in pane.text)
        text = pane.text
        assert "Fake H100" in text
        assert "mem 3.0 GiB / 80.0 GiB (4%)" in text
        assert "util 87%" in text and "temp 61 C" in text and "power 312/700 W" in text
        assert f"run pid {fake_run.pid}: 2.0 GiB" in text
        assert "run pid 1:" not in text  # other processes on the GPU are not this run's
        assert "torch reserved  1.5 GiB" in text
        assert NO_GPU not in text


async def test_gpu_pane_without_nvml_shows_cpu_and_ram(runs_root, fake_run):
    class Missing(Exception):
        pass

    class NVMLError_LibraryNotFound(Missing):
        pass

    class FakeNvml:
        @staticmethod
        def nvmlInit():
            raise NVMLError_LibraryNotFound()

    fake_run.started()
    app = create_app(runs_root, gpu_source=NvmlSource(FakeNvml()), attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.screen.query_one(GpuPane)
        await wait_for(pilot, lambda: NO_GPU in pane.text)
        assert "libnvidia-ml" in pane.text
        assert "CPU " in pane.text and "RAM " in pane.text
        assert "worker RSS" in pane.text  # the worker pid is this test process, alive


async def test_gpu_pane_shows_real_nvml_source_over_a_fake_pynvml(runs_root, fake_run):
    """The real NvmlSource, driven by a stand-in pynvml module with two GPUs, drawn in the pane: bytes
    names decoded, mW shown as W, the run's processes only, a failing reading shown as N/A."""
    from types import SimpleNamespace

    from test_hardware import fake_nvml

    nvml = fake_nvml(broken={"temp"})
    nvml.nvmlDeviceGetComputeRunningProcesses = lambda h: [
        SimpleNamespace(pid=fake_run.pid, usedGpuMemory=3 * 2**29), SimpleNamespace(pid=1, usedGpuMemory=2**30)]
    fake_run.started()
    source = NvmlSource(nvml)
    app = create_app(runs_root, gpu_source=source, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.screen.query_one(GpuPane)
        await wait_for(pilot, lambda: "GPU 1" in pane.text, what="both GPUs shown")
        lines = pane.text.splitlines()
        assert lines[0] == "GPU 0 NVIDIA H100 80GB HBM3" and "GPU 1 NVIDIA A10" in lines
        assert lines[1:4] == [" mem 3.0 GiB / 80.0 GiB (4%)", " util 87%  temp N/A  power 312/700 W",
                              f" run pid {fake_run.pid}: 1.5 GiB"]
        assert "run pid 1:" not in pane.text and NO_GPU not in pane.text
        assert "worker RSS" in pane.text


async def test_smoothing_keys(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.steps(20)
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "step 20/" in header(app))
        plot = app.screen.query_one("#plot-loss", MetricPlot)
        raw = list(fake_run_losses(fake_run))
        await pilot.press("right_square_bracket")
        assert "smooth 0.80" in header(app)
        assert plot.series[0].label == "train (ema 0.8)"
        for _ in range(8):
            await pilot.press("left_square_bracket")
        assert "smooth 0.00" in header(app)
        assert list(plot.series[0].ys) == pytest.approx(raw)


def fake_run_losses(fr):
    from vittui.runs.events import Step, read_all

    return [e.loss for e in read_all(fr.run.events_path) if isinstance(e, Step)]


async def test_help_and_palette_list_the_actions(runs_root, fake_run, no_gpu):
    fake_run.started()
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.replayed and app.screen.state == "running")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Pause run", "Checkpoint now", "Evaluate now", "Stop run", "Detach", "Runs"} <= set(titles)
        assert "Resume run" not in titles
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpModal)
        assert "Detach" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, MonitorScreen)
        # the palette's command runs the same action as the key
        monitor = app.screen
        cmd = next(c for c in app.get_system_commands(monitor) if c.title == "Checkpoint now")
        await cmd.callback()
        assert [c["command"] for c in fake_run.commands()] == ["checkpoint"]


async def test_tab_moves_between_panes(runs_root, fake_run, no_gpu):
    fake_run.started()
    async with replayed_monitor(runs_root, fake_run, no_gpu) as (app, pilot):
        seen = []
        for _ in range(7):
            seen.append(app.focused.id if app.focused else None)
            await pilot.press("tab")
        assert seen == ["plot-loss", "plot-acc", "plot-lr", "attention-pane", "grad-pane", "gpu-pane", "log-pane"]
        await pilot.press("shift+tab")
        assert app.focused.id == "log-pane"


async def test_narrow_terminal_still_shows_the_essentials(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.steps(15)
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.screen.query_one(GpuPane)
        await wait_for(pilot, lambda: "step 15/100" in header(app) and NO_GPU in pane.text)
        # the pane's text is set before the next frame paints it: wait for the screen itself
        await wait_for(pilot, lambda: "no NVIDIA GPU" in screen_text(app) and "worker RSS" in screen_text(app))
        text = screen_text(app)
        assert "RUNNING" in text and "step 15/100" in text and "ETA" in text
        assert "loss" in text and "accuracy" in text
        assert "no NVIDIA GPU" in text and "worker RSS" in text
        # the footer recomposes its keys a frame after the bindings settle: wait for it on screen too
        await wait_for(pilot, lambda: "Pause" in screen_text(app).rstrip().splitlines()[-1], what="footer")
        footer = screen_text(app).rstrip().splitlines()[-1]
        assert "Pause" in footer and "Detach" in footer and "Help" in footer


class FrozenClock:
    """The monitor module's `time`: `monotonic()` only moves when the test says so; sleeps are real."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


async def test_long_history_is_downsampled_and_redraws_are_capped(runs_root, no_gpu, monkeypatch):
    """A burst of events redraws neither the loss nor the lr plot until their intervals have passed on the
    monitor's clock; each then redraws exactly once and shows the last step. The clock is the test's, so
    this counts redraws instead of timing them."""
    from fakerun import FakeRun

    clock = FrozenClock()
    monkeypatch.setattr(monitor_mod, "time", clock)
    fr = FakeRun(runs_root, name="long", total_steps=20_000, steps_per_epoch=500)
    fr.started()
    fr.steps(6000)
    app = create_app(runs_root, gpu_source=no_gpu, attach="long")
    async with app.run_test(size=SIZE) as pilot:
        history = app.screen.history
        loss = app.screen.query_one("#plot-loss", MetricPlot)
        lr = app.screen.query_one("#plot-lr", MetricPlot)

        def shows_last(plot: MetricPlot, step: int) -> bool:
            return bool(plot.series) and len(plot.series[0].xs) > 0 and plot.series[0].xs[-1] == history.steps[-1] >= step

        # the replay ends with the eval at step 6000: a new eval redraws both plots whatever the clock says
        await wait_for(pilot, lambda: app.screen.replayed and "step 6000/20000" in header(app), what="replayed")
        await wait_for(pilot, lambda: shows_last(loss, 5990) and shows_last(lr, 5990), what="history drawn")
        # the whole history, in bounded buckets (exact per step up to 2 × 1024 steps, then means)
        assert history.series.points == 6000 and history.steps[-1] > 5990
        lengths = loss.series_lengths()
        assert lengths["val"] == 12 and 1024 <= lengths["train (ema 0.6)"] < 2048
        assert loss.plotted["train (ema 0.6)"] <= 2 * loss.size.width  # drawn from a downsampled copy

        before, lr_before = loss.draws, lr.draws
        for _ in range(40):  # a burst of events (no eval among them), far faster than the redraw rate
            fr.steps(10)
            await pilot.pause()
        await wait_for(pilot, lambda: "step 6400/" in header(app) and history.steps[-1] > 6390, what="burst read")
        # the header follows every event; no plot interval has passed on the monitor's clock: no redraw
        assert (loss.draws, lr.draws) == (before, lr_before)
        assert loss.series[0].xs[-1] < 6001 and lr.series[0].xs[-1] < 6001
        clock.now += monitor_mod.PLOT_S  # the loss plot is due, the lr plot not yet
        await wait_for(pilot, lambda: shows_last(loss, 6390), what="loss caught up")
        assert loss.draws == before + 1 and lr.draws == lr_before and lr.series[0].xs[-1] < 6001
        clock.now += monitor_mod.LR_PLOT_S  # and the lr plot catches up with no further events
        await wait_for(pilot, lambda: shows_last(lr, 6390), what="lr caught up")
        assert (loss.draws, lr.draws) == (before + 1, lr_before + 1)
    fr.close()


async def test_no_color_keeps_meaning_in_words(runs_root, fake_run, no_gpu, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    fake_run.started()
    fake_run.emit(Log(level="warning", message="careful", step=1))
    fake_run.set_state("paused")
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        assert app.no_color
        await wait_for(pilot, lambda: "PAUSED" in header(app) and NO_GPU in screen_text(app))
        assert any(line.startswith("WARN") for line in app.screen.query_one(LogPane).lines_text)
        await wait_for(pilot, lambda: "space Resume" in screen_text(app).splitlines()[-1], what="footer")


# The demo-digits ViT (img 32, patch 4, width 96, depth 4, MLP 384, 10 classes), counted by hand:
# patch embed 3*4*4*96 + 96 = 4,704; cls token 96; position 65*96 = 6,240; per block: 2 norms 2*192,
# qkv 96*288 + 288 = 27,936, proj 96*96 + 96 = 9,312, fc1 96*384 + 384 = 37,248, fc2 384*96 + 96 = 36,960
# -> 111,840, times 4 = 447,360; final norm 192; head 96*10 + 10 = 970.
DEMO_PARAMS = 4_704 + 96 + 6_240 + 4 * 111_840 + 192 + 970  # 459,562
MIB = 2**20


def pane_estimate(text: str) -> tuple[float, float]:
    """(peak, activations) in MiB from the pane's "estimate: peak X MiB (activations Y GiB)" line."""
    import re

    m = re.search(r"estimate: peak ([\d.]+) ([KMG]i)?B \(activations ([\d.]+) ([KMG]i)?B\)", text)
    assert m, text
    scale = {None: 2**-20, "Ki": 2**-10, "Mi": 1, "Gi": 2**10}
    return float(m.group(1)) * scale[m.group(2)], float(m.group(3)) * scale[m.group(4)]


async def test_gpu_pane_shows_the_planners_estimate_beside_the_measured_numbers(runs_root, no_gpu):
    """The pane shows the estimate for the attached run's own recipe. Checked by hand, not by calling the
    estimator: fp32 AdamW keeps weights, gradients and two moments (16 bytes a parameter) whatever the batch,
    and everything else (activations, workspace) grows linearly with it; so doubling data.batch_size
    doubles the activations and peak - 16 * params."""
    from fakerun import FakeRun

    from vittui import recipe as R

    shown = {}
    for batch in (64, 128):
        fr = FakeRun(runs_root, name=f"b{batch}")
        R.save(R.load(fr.run.recipe_path).with_overrides({"data.batch_size": batch}), fr.run.recipe_path)
        fr.started()
        app = create_app(runs_root, gpu_source=no_gpu, attach=fr.run.name)
        async with app.run_test(size=SIZE) as pilot:
            pane = app.screen.query_one(GpuPane)
            await wait_for(pilot, lambda: "estimate: peak" in pane.text)
            assert "torch allocated/reserved" in pane.text
            shown[batch] = pane_estimate(pane.text)
        fr.close()
    (peak64, act64), (peak128, act128) = shown[64], shown[128]
    static = 16 * DEMO_PARAMS / MIB  # 7.0 MiB
    assert act64 > 0 and peak64 > act64 + static  # the peak holds the activations and the optimizer's state
    assert act128 == pytest.approx(2 * act64, abs=0.15, rel=1e-3)  # the pane rounds to 0.1 MiB
    assert peak128 - static == pytest.approx(2 * (peak64 - static), abs=0.25, rel=1e-3)


async def test_a_failing_worker_is_shown_on_screen_and_the_monitor_goes_on(runs_root, fake_run):
    """A thread worker that raises ends in a WorkerFailed message: an ERROR line in the log pane and a
    notification, while the other workers keep the screen current."""
    from vittui.hardware import FakeSource
    from ui_helpers import HOST

    class Broken(FakeSource):
        def gpus(self, pids=None):
            raise RuntimeError("the GPU reading exploded")

    fake_run.started()
    fake_run.steps(2)
    app = create_app(runs_root, gpu_source=Broken([], HOST), attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        log = app.screen.query_one(LogPane)
        await wait_for(pilot, lambda: any("sample-hardware failed: RuntimeError: the GPU reading exploded" in line
                                          for line in log.lines_text), what="the failure in the log")
        assert any(l.startswith("ERROR") and "sample-hardware failed" in l for l in log.lines_text)
        assert any("sample-hardware failed" in n.message for n in app._notifications)
        fake_run.steps(3)
        await wait_for(pilot, lambda: "step 5/100" in header(app), what="events still read")


async def test_the_estimate_runs_in_a_worker_thread(runs_root, fake_run, no_gpu, monkeypatch):
    """The planner's estimate reaches the pane from a thread worker (a message), not from the event loop."""
    import threading

    import vittui.planning.memory as memory

    threads = []
    real = memory.estimate

    def recording(*args, **kwargs):
        threads.append(threading.current_thread())
        return real(*args, **kwargs)

    monkeypatch.setattr(memory, "estimate", recording)
    fake_run.started()
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.screen.query_one(GpuPane)
        await wait_for(pilot, lambda: "estimate: peak" in pane.text, what="estimate shown")
        assert threads and all(t is not threading.main_thread() for t in threads)


async def test_an_idle_monitor_redraws_nothing(runs_root, fake_run, no_gpu, monkeypatch):
    """With no new events and the same hardware readings, the timer's flushes hand the widgets what they
    already show: the header is not repainted, the hardware pane not rebuilt and no plot redrawn."""
    import functools

    counts = {"header": 0, "gpu": 0, "flush": 0}

    def counting(name, method):
        @functools.wraps(method)  # Textual passes a watcher as many values as its signature takes
        def wrapper(self, *args):
            counts[name] += 1
            return method(self, *args)
        return wrapper

    monkeypatch.setattr(RunHeader, "render", counting("header", RunHeader.render))
    monkeypatch.setattr(GpuPane, "watch_data", counting("gpu", GpuPane.watch_data))
    monkeypatch.setattr(MonitorScreen, "flush", counting("flush", MonitorScreen.flush))
    fake_run.started()
    fake_run.steps(10)  # ends with an eval: every plot draws the replayed history at once
    fake_run.set_state("finished")
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        screen = app.screen
        pane = screen.query_one(GpuPane)
        plots = list(screen.query(MetricPlot))
        await wait_for(pilot, lambda: screen.replayed and screen.state == "finished" and "estimate: peak" in pane.text
                       and "worker RSS" in pane.text and all(p.series and p.series[0].xs[-1] == 10 for p in plots),
                       what="settled")
        await wait_for(pilot, lambda: "FINISHED" in screen_text(app), what="painted")
        before = (dict(counts), [p.draws for p in plots])
        await wait_for(pilot, lambda: counts["flush"] >= before[0]["flush"] + 6, what="six more flushes")
        assert (counts["header"], counts["gpu"]) == (before[0]["header"], before[0]["gpu"])
        assert [p.draws for p in plots] == before[1]
        fake_run.steps(1)
        await wait_for(pilot, lambda: counts["header"] > before[0]["header"], what="a new step repaints the header")


async def test_z_suspends_a_live_run_and_is_off_once_it_is_suspended(runs_root, fake_run, no_gpu):
    fake_run.started()
    fake_run.steps(4)
    async with replayed_monitor(runs_root, fake_run, no_gpu) as (app, pilot):
        await wait_for(pilot, lambda: app.screen.state == "running")
        assert footer_actions(app)["z"] == "suspend"
        await pilot.press("z")
        assert [c["command"] for c in fake_run.commands()] == ["suspend"]
        assert "suspending" in header(app)
        await pilot.press("z")  # off while it is pending: one command, not two
        assert [c["command"] for c in fake_run.commands()] == ["suspend"]
        fake_run.emit(ControlAck(command="suspend", id=fake_run.commands()[0]["id"], step=4))
        fake_run.set_state("suspended", "suspended by user: checkpoint at step 4, worker exited")
        await wait_for(pilot, lambda: "SUSPENDED" in header(app), what="suspended state")
        assert "suspending" not in header(app)
        assert not {"z", "space", "s", "c", "e"} & set(footer_actions(app))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Suspend run" not in titles

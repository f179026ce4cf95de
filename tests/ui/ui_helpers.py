"""What the UI tests share (imported by module name: a `conftest` import resolves to whichever
conftest.py was imported first when several test folders run together)."""

from __future__ import annotations

import io
import time
from typing import Callable

from rich.console import Console

from vittui.hardware import FakeSource, GpuProcess, GpuSnapshot, HostSnapshot

SIZE = (120, 40)
HOST = HostSnapshot(cpu_percent=12.0, cpu_count=2, ram_used=2 << 30, ram_total=8 << 30, worker_rss=300 << 20,
                    worker_cpu_percent=95.0)


def gpu_source(pid: int) -> FakeSource:
    snap = GpuSnapshot(
        index=0, name="Fake H100", memory_used=3 * 2**30, memory_total=80 * 2**30, utilization=87,
        temperature=61, power=312.5, power_limit=700.0,
        processes=(GpuProcess(pid, 2 * 2**30), GpuProcess(1, 5 * 2**30)),
    )
    return FakeSource([snap], HOST)


async def wait_for(pilot, cond: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
    """Let the app run until `cond()` holds (workers poll every 0.2 s; redraws are capped at 4/s).

    It returns as soon as the condition holds, so the generous default costs nothing when green; it is
    there for a busy 2-core box where other tests train beside this one."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or cond}")
        await pilot.pause(0.05)


def screen_text(app) -> str:
    """The current screen as plain text (no colour), the way a person reads it."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, color_system=None,
                      legacy_windows=False, force_terminal=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return "\n".join(line.rstrip() for line in console.export_text().splitlines())


def attention_pane(app):
    """The monitor's attention pane."""
    from vittui.ui.widgets.attention_pane import AttentionPane

    return app.screen.query_one(AttentionPane)


def shown_map(app) -> list[str]:
    """The heatmap as it is on screen: columns 18..34 of the 8 map lines inside the attention pane's border."""
    lines = screen_text(app).splitlines()
    region = attention_pane(app).content_region
    return [lines[region.y + r][region.x + 18: region.x + 34] for r in range(8)]


async def runs_screen_from(app, pilot, runs: int):
    """From the monitor `app` opened on: r, then the runs screen's table once it lists `runs` runs."""
    from vittui.ui.screens.runs import RunsScreen
    from vittui.ui.widgets.runs_table import RunsTable

    await wait_for(pilot, lambda: app.screen.replayed)
    await pilot.press("r")
    assert isinstance(app.screen, RunsScreen)
    table = app.screen.query_one(RunsTable)
    await wait_for(pilot, lambda: len(table.rows_data) == runs, what="runs listed")
    return table


def footer_enabled(app) -> set[str]:
    """The descriptions of the footer's keys that are enabled now (a disabled key is drawn dim, which plain
    text does not show): what the footer tells a person they can press."""
    from textual.widgets._footer import FooterKey

    return {k.description for k in app.screen.query(FooterKey) if not k.has_class("-disabled")}


async def start_from_setup(app, pilot):
    """ctrl+s on the setup screen (the app made with a recipe): the monitor of the worker it started."""
    from vittui.ui.screens.monitor import MonitorScreen

    await pilot.press("ctrl+s")
    await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), what="monitor")
    return app.screen


def notifications(app) -> list[str]:
    """Every message `app.notify` is given from now on, in order (a toast itself expires after a few seconds,
    so `app._notifications` can be empty again by the time a slow box gets to look)."""
    said: list[str] = []
    original = app.notify

    def notify(message, *args, **kwargs):
        said.append(str(message))
        return original(message, *args, **kwargs)

    app.notify = notify
    return said


def was_said(said: list[str], text: str) -> bool:
    return any(text in m for m in said)

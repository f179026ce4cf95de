"""GPU readings per device (NVML used beside torch allocated/reserved: different numbers), or, with no
NVIDIA GPU, a plain statement of that and the CPU and RAM the worker uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.text import Text
from textual.reactive import var
from textual.widgets import Static

from vittui.hardware import GpuSnapshot, HostSnapshot, fmt_bytes, na

NO_GPU = "no NVIDIA GPU — showing CPU and RAM"


@dataclass
class GpuPaneData:
    sampled: bool = False
    available: bool = False
    reason: str = ""
    gpus: list[GpuSnapshot] = field(default_factory=list)
    host: HostSnapshot | None = None
    torch_allocated: int | None = None
    torch_reserved: int | None = None
    estimate_peak: int | None = None  # the planner's peak for this run's recipe, beside what is measured
    estimate_activations: int | None = None


def _pct(used: int | None, total: int | None) -> str:
    if used is None or not total:
        return ""
    return f" ({100 * used / total:.0f}%)"


class GpuPane(Static):
    can_focus = True

    data: var[GpuPaneData] = var(GpuPaneData, init=False)
    """What the pane shows (set by the screen). Equal data draws nothing."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self.border_title = "hardware"

    def on_mount(self) -> None:
        self.update(self.build(), layout=False)

    def watch_data(self) -> None:
        # Never re-layout (the pane's size comes from the stylesheet, not its content): a layout pass of
        # the whole monitor was most of the dashboard's CPU per step.
        self.update(self.build(), layout=False)

    @property
    def text(self) -> str:
        return self.build().plain

    def build(self) -> Text:
        d = self.data
        t = Text()
        if not d.sampled:
            t.append("reading hardware…", style="dim")
            return t
        if d.available and d.gpus:
            for g in d.gpus:
                t.append(f"GPU {g.index} ", style="bold")
                t.append(f"{g.name}\n")
                t.append(f" mem {fmt_bytes(g.memory_used)} / {fmt_bytes(g.memory_total)}{_pct(g.memory_used, g.memory_total)}\n")
                t.append(f" util {na(g.utilization, '{}%')}  temp {na(g.temperature, '{} C')}")
                t.append(f"  power {na(g.power, '{:.0f}')}/{na(g.power_limit, '{:.0f} W')}\n")
                if g.processes:
                    for p in g.processes:
                        t.append(f" run pid {p.pid}: {fmt_bytes(p.used_memory)}\n")
                else:
                    t.append(" run procs: none on this GPU\n", style="dim")
        else:
            t.append(NO_GPU + "\n", style="bold")
            if d.reason:
                t.append(f" ({d.reason})\n", style="dim")
        h = d.host
        if h is not None:
            cores = f" of {h.cpu_count} cores" if h.cpu_count else ""
            t.append(f"CPU {na(h.cpu_percent, '{:.0f}%')}{cores}\n")
            t.append(f"RAM {fmt_bytes(h.ram_used)} / {fmt_bytes(h.ram_total)}{_pct(h.ram_used, h.ram_total)}\n")
            if h.worker_rss is not None:
                t.append(f"worker RSS {fmt_bytes(h.worker_rss)}  CPU {na(h.worker_cpu_percent, '{:.0f}%')}\n")
            else:
                t.append("worker: not running here\n", style="dim")
        if d.torch_allocated or d.torch_reserved:  # CUDA only; NVML "used" above is a different number
            t.append(f"torch allocated {fmt_bytes(d.torch_allocated)}\n")
            t.append(f"torch reserved  {fmt_bytes(d.torch_reserved)}")
        else:
            t.append("torch allocated/reserved: N/A (CPU)", style="dim")
        if d.estimate_peak is not None:
            t.append(f"\nestimate: peak {fmt_bytes(d.estimate_peak)}"
                     f" (activations {fmt_bytes(d.estimate_activations)})")
        return t

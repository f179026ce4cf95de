"""hardware.py: NVML wrapper never raises, maps readings, filters processes; psutil host readings."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from types import SimpleNamespace

import pytest

from vittui.hardware import GpuSnapshot, NvmlSource, fmt_bytes, host_snapshot, na


class NVMLError(Exception):
    pass


class NVMLError_LibraryNotFound(NVMLError):
    pass


def fake_nvml(*, init_error: Exception | None = None, count: int = 2, broken: set[str] = frozenset()):
    """A stand-in for the pynvml module: two GPUs, some calls failing with NVMLError."""

    def guard(name, fn):
        def call(*a):
            if name in broken:
                raise NVMLError(name)
            return fn(*a)
        return call

    m = types.ModuleType("pynvml")
    m.NVMLError = NVMLError
    m.NVML_TEMPERATURE_GPU = 0
    m.shutdowns = 0

    def init():
        if init_error:
            raise init_error

    m.nvmlInit = init
    m.nvmlShutdown = lambda: setattr(m, "shutdowns", m.shutdowns + 1)
    m.nvmlDeviceGetCount = guard("count", lambda: count)
    m.nvmlDeviceGetHandleByIndex = guard("handle", lambda i: f"h{i}")
    m.nvmlDeviceGetName = guard("name", lambda h: b"NVIDIA H100 80GB HBM3" if h == "h0" else "NVIDIA A10")
    m.nvmlDeviceGetMemoryInfo = guard("mem", lambda h: SimpleNamespace(used=3 * 2**30, total=80 * 2**30))
    m.nvmlDeviceGetUtilizationRates = guard("util", lambda h: SimpleNamespace(gpu=87, memory=40))
    m.nvmlDeviceGetTemperature = guard("temp", lambda h, s: 61)
    m.nvmlDeviceGetPowerUsage = guard("power", lambda h: 312_500)
    m.nvmlDeviceGetEnforcedPowerLimit = guard("limit", lambda h: 700_000)
    m.nvmlDeviceGetComputeRunningProcesses = guard(
        "procs",
        lambda h: [SimpleNamespace(pid=100, usedGpuMemory=2**30), SimpleNamespace(pid=200, usedGpuMemory=None)],
    )
    m.nvmlDeviceGetGraphicsRunningProcesses = guard("gprocs", lambda h: [])
    return m


def test_nvml_maps_readings_and_units():
    src = NvmlSource(fake_nvml())
    gpus = src.gpus()
    assert src.available and src.reason == ""
    assert len(gpus) == 2
    g = gpus[0]
    assert g.name == "NVIDIA H100 80GB HBM3"  # bytes decoded
    assert (g.memory_used, g.memory_total) == (3 * 2**30, 80 * 2**30)
    assert (g.utilization, g.temperature) == (87, 61)
    assert g.power == pytest.approx(312.5) and g.power_limit == pytest.approx(700.0)
    assert [p.pid for p in g.processes] == [100, 200]
    assert g.processes[1].used_memory is None


def test_nvml_filters_processes_to_run_pids():
    g = NvmlSource(fake_nvml()).gpus(pids=[200, 999])[0]
    assert [p.pid for p in g.processes] == [200]


def test_every_nvml_error_becomes_none():
    src = NvmlSource(fake_nvml(broken={"name", "mem", "util", "temp", "power", "limit", "procs"}))
    g = src.gpus()[0]
    assert g.name == "N/A"
    assert g.memory_used is None and g.utilization is None and g.temperature is None
    assert g.power is None and g.power_limit is None and g.processes == ()
    assert na(g.temperature, "{} C") == "N/A"


def test_library_missing_gives_reason_not_exception():
    src = NvmlSource(fake_nvml(init_error=NVMLError_LibraryNotFound()))
    assert src.gpus() == []
    assert not src.available
    assert "not found" in src.reason
    assert src.gpus() == []  # init is tried once and remembered


def test_no_devices():
    src = NvmlSource(fake_nvml(count=0))
    assert src.gpus() == [] and not src.available and "no NVIDIA GPU" in src.reason


def test_real_nvml_never_raises_here():
    """On a machine without a driver (FACTS: nvmlInit raises LibraryNotFound) this is the no-GPU state;
    on a GPU machine it returns snapshots. Either way, no exception."""
    src = NvmlSource()
    gpus = src.gpus(pids=[os.getpid()])
    assert isinstance(gpus, list)
    if not src.available:
        assert gpus == [] and src.reason
    else:
        assert all(isinstance(g, GpuSnapshot) for g in gpus)
    src.close()


def test_close_shuts_down_once_initialised():
    m = fake_nvml()
    src = NvmlSource(m)
    src.gpus()
    src.close()
    assert m.shutdowns == 1 and not src.available


def test_host_snapshot_reads_this_process():
    h = host_snapshot([os.getpid()])
    assert h.ram_total and h.ram_used and 0 < h.ram_used <= h.ram_total
    assert h.worker_rss and h.worker_rss > 1_000_000
    assert os.getpid() in h.pids
    assert host_snapshot([999_999_999]).worker_rss is None  # dead pid: no RSS, no exception
    assert host_snapshot().worker_rss is None


# NvmlSource over this fake pynvml, drawn in the monitor's hardware pane:
# tests/ui/test_ui_monitor.py::test_gpu_pane_shows_real_nvml_source_over_a_fake_pynvml


def test_fmt_bytes():
    assert fmt_bytes(None) == "N/A"
    assert fmt_bytes(512) == "512 B"
    assert fmt_bytes(3 * 2**30) == "3.0 GiB"


def test_hardware_imports_neither_torch_nor_textual():
    code = "import sys, vittui.hardware; print('torch' in sys.modules, 'textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]

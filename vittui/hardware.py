"""GPU and host readings for the dashboard: NVML through nvidia-ml-py, CPU and RAM through psutil.

Like nvitop: NVML is initialised lazily on first use, every NVML call goes through one wrapper that
turns any NVML error into None (shown as "N/A"), and nothing here ever raises to a caller. With no
driver (`nvmlInit` raises `NVMLError_LibraryNotFound`) the source says so through `available` and
`reason`, and the dashboard shows CPU and RAM instead. No torch, no Textual.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Protocol, Sequence, runtime_checkable

__all__ = [
    "GpuProcess", "GpuSnapshot", "HostSnapshot", "GpuSource", "NvmlSource", "FakeSource",
    "host_snapshot", "process_tree", "fmt_bytes", "na",
]


@dataclass(frozen=True)
class GpuProcess:
    pid: int
    used_memory: int | None  # bytes; None when NVML cannot tell (e.g. inside a container)


@dataclass(frozen=True)
class GpuSnapshot:
    index: int
    name: str
    memory_used: int | None  # bytes
    memory_total: int | None
    utilization: int | None  # percent
    temperature: int | None  # degrees C
    power: float | None  # watts
    power_limit: float | None  # watts
    processes: tuple[GpuProcess, ...] = ()


@dataclass(frozen=True)
class HostSnapshot:
    cpu_percent: float | None
    cpu_count: int | None
    ram_used: int | None  # bytes
    ram_total: int | None
    worker_rss: int | None = None  # bytes, summed over the given pids; None when none given/alive
    worker_cpu_percent: float | None = None
    pids: tuple[int, ...] = ()


@runtime_checkable
class GpuSource(Protocol):
    """Where the dashboard's hardware readings come from; injectable so tests never touch NVML."""

    available: bool
    reason: str

    def gpus(self, pids: Sequence[int] | None = None) -> list[GpuSnapshot]: ...

    def host(self, pids: Sequence[int] | None = None) -> HostSnapshot: ...


def na(value: Any, fmt: str = "{}") -> str:
    """A reading as text, "N/A" when it could not be read."""
    return "N/A" if value is None else fmt.format(value)


def fmt_bytes(n: int | float | None) -> str:
    if n is None:
        return "N/A"
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit in ("B", "KiB") else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


# --- host (psutil) ---------------------------------------------------------------------------------

_proc_cache: dict[int, Any] = {}
_proc_lock = threading.Lock()


def process_tree(pids: Iterable[int]) -> list[int]:
    """The given pids plus their live children (data-loader workers, accelerate ranks)."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return list(pids)
    out: list[int] = []
    for pid in pids:
        if pid <= 0:
            continue
        try:
            p = psutil.Process(pid)
            out.append(pid)
            out.extend(c.pid for c in p.children(recursive=True))
        except Exception:
            continue
    return list(dict.fromkeys(out))


def host_snapshot(pids: Sequence[int] | None = None) -> HostSnapshot:
    """CPU %, RAM and the summed RSS of `pids` (and their children); never raises."""
    try:
        import psutil
    except ImportError:  # pragma: no cover
        return HostSnapshot(None, None, None, None)
    try:
        cpu = psutil.cpu_percent(interval=None)
    except Exception:
        cpu = None
    try:
        vm = psutil.virtual_memory()
        ram_used, ram_total = int(vm.total - vm.available), int(vm.total)
    except Exception:
        ram_used = ram_total = None
    try:
        count = psutil.cpu_count()
    except Exception:
        count = None
    rss = wcpu = None
    tree = process_tree(pids or ())
    if tree:
        rss_total, cpu_total, seen = 0, 0.0, 0
        with _proc_lock:
            for pid in tree:
                try:
                    p = _proc_cache.get(pid)
                    if p is None or not p.is_running():
                        p = _proc_cache[pid] = psutil.Process(pid)
                    rss_total += p.memory_info().rss
                    cpu_total += p.cpu_percent(interval=None)
                    seen += 1
                except Exception:
                    _proc_cache.pop(pid, None)
        if seen:
            rss, wcpu = rss_total, cpu_total
    return HostSnapshot(cpu, count, ram_used, ram_total, rss, wcpu, tuple(tree))


# --- NVML ------------------------------------------------------------------------------------------


class NvmlSource:
    """Readings from the NVIDIA driver via nvidia-ml-py (module `pynvml`).

    `available` is False, with a `reason` a person can read, when the package or the driver library is
    missing or no device is present; `gpus()` then returns []."""

    def __init__(self, nvml: Any = None):
        self._nvml = nvml  # injectable module for tests
        self._lock = threading.Lock()
        self._initialised = False
        self._tried = False
        self.available = False
        self.reason = "NVML not initialised yet"
        self._count = 0

    def _call(self, fn: Callable[..., Any], *args: Any, default: Any = None) -> Any:
        """The one wrapper: any NVML error (or anything else) becomes `default`."""
        try:
            return fn(*args)
        except Exception:
            return default

    def _init(self) -> bool:
        with self._lock:
            if self._tried:
                return self._initialised
            self._tried = True
            nv = self._nvml
            if nv is None:
                try:
                    import pynvml as nv  # type: ignore[import-not-found]
                except Exception as e:  # ImportError, or a broken install
                    self.reason = f"nvidia-ml-py is not installed ({e.__class__.__name__})"
                    return False
                self._nvml = nv
            try:
                nv.nvmlInit()
            except Exception as e:
                name = type(e).__name__
                if "LibraryNotFound" in name:
                    self.reason = "NVIDIA driver library (libnvidia-ml) not found"
                elif "DriverNotLoaded" in name:
                    self.reason = "NVIDIA driver not loaded"
                elif "NoPermission" in name:
                    self.reason = "no permission to query the NVIDIA driver"
                else:
                    self.reason = f"NVML unavailable: {e or name}"
                return False
            count = self._call(nv.nvmlDeviceGetCount, default=0) or 0
            if count <= 0:
                self.reason = "NVML found no NVIDIA GPU"
                return False
            self._count = int(count)
            self._initialised = True
            self.available = True
            self.reason = ""
            return True

    @property
    def count(self) -> int:
        self._init()
        return self._count

    def gpus(self, pids: Sequence[int] | None = None) -> list[GpuSnapshot]:
        try:
            if not self._init():
                return []
            return [self._one(i, pids) for i in range(self._count)]
        except Exception:  # belt and braces: never raise to the dashboard
            return []

    def host(self, pids: Sequence[int] | None = None) -> HostSnapshot:
        return host_snapshot(pids)

    def _one(self, index: int, pids: Sequence[int] | None) -> GpuSnapshot:
        nv, call = self._nvml, self._call
        h = call(nv.nvmlDeviceGetHandleByIndex, index)
        if h is None:
            return GpuSnapshot(index, "N/A", None, None, None, None, None, None)
        name = call(nv.nvmlDeviceGetName, h, default="N/A")
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        mem = call(nv.nvmlDeviceGetMemoryInfo, h)
        used = getattr(mem, "used", None) if mem is not None else None
        total = getattr(mem, "total", None) if mem is not None else None
        util = call(nv.nvmlDeviceGetUtilizationRates, h)
        util = getattr(util, "gpu", None) if util is not None else None
        temp = call(nv.nvmlDeviceGetTemperature, h, getattr(nv, "NVML_TEMPERATURE_GPU", 0))
        power = call(nv.nvmlDeviceGetPowerUsage, h)
        limit = call(nv.nvmlDeviceGetEnforcedPowerLimit, h)
        procs: dict[int, int | None] = {}
        for getter in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            fn = getattr(nv, getter, None)
            for p in (call(fn, h, default=[]) if fn else []) or []:
                pid = getattr(p, "pid", None)
                if pid is None:
                    continue
                mem_used = getattr(p, "usedGpuMemory", None)
                if not isinstance(mem_used, int) or mem_used < 0 or mem_used >= 2**63:
                    mem_used = None  # NVML_VALUE_NOT_AVAILABLE
                if pid not in procs or procs[pid] is None:
                    procs[pid] = mem_used
        wanted = set(pids) if pids is not None else None
        processes = tuple(
            GpuProcess(pid, m) for pid, m in sorted(procs.items()) if wanted is None or pid in wanted
        )
        return GpuSnapshot(
            index=index,
            name=str(name),
            memory_used=used,
            memory_total=total,
            utilization=util,
            temperature=temp,
            power=power / 1000.0 if isinstance(power, (int, float)) else None,
            power_limit=limit / 1000.0 if isinstance(limit, (int, float)) else None,
            processes=processes,
        )

    def close(self) -> None:
        with self._lock:
            if self._initialised:
                self._call(self._nvml.nvmlShutdown)
            self._initialised = False
            self._tried = False
            self.available = False


class FakeSource:
    """Fixed readings for tests and snapshots. `snapshots` empty (or `available=False`) is the
    no-GPU state; `host` fixes the CPU/RAM line so snapshots hold still."""

    def __init__(
        self,
        snapshots: Sequence[GpuSnapshot] = (),
        host: HostSnapshot | None = None,
        *,
        available: bool | None = None,
        reason: str = "",
    ):
        self.snapshots = list(snapshots)
        self._host = host
        self.available = bool(self.snapshots) if available is None else available
        self.reason = reason or ("" if self.available else "no NVIDIA GPU (fake source)")
        self.calls = 0

    def gpus(self, pids: Sequence[int] | None = None) -> list[GpuSnapshot]:
        self.calls += 1
        if not self.available:
            return []
        if pids is None:
            return list(self.snapshots)
        wanted = set(pids)
        return [
            GpuSnapshot(**{**s.__dict__, "processes": tuple(p for p in s.processes if p.pid in wanted)})
            for s in self.snapshots
        ]

    def host(self, pids: Sequence[int] | None = None) -> HostSnapshot:
        if self._host is not None:
            return self._host
        return host_snapshot(pids)

"""NVML against the real device while a tiny worker trains on it: `NvmlSource` names the GPU torch sees,
lists the worker's process with the memory it uses, and the dashboard's hardware pane shows that beside
torch's allocated/reserved (which the worker's Step events carry; `_cuda_memory` in vittui/train/loop.py).

NVML reports process ids of the PID namespace the driver runs in. Inside a container without the host's
PID namespace it lists ids this process cannot see (or none): the per-process checks then skip, saying so,
after every device-level check has run.
"""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest
import torch
from gpu_helpers import CUDA_PROCESS, steps_of, wait_for_steps
from tiny import kill_if_alive, status, tiny_toml, vittui_cmd

from vittui.hardware import NvmlSource

pytestmark = pytest.mark.gpu

NAMESPACE_SKIP = ("NVML lists no process of this PID namespace (it lists {listed}; this process is {me}): "
                  "a container without the host's PID namespace — per-process readings cannot be matched here")


@pytest.fixture(scope="module")
def cuda_worker(tmp_path_factory):
    """A detached tiny worker on the device (`vittui train --detach`), killed when the module is done."""
    root = tmp_path_factory.mktemp("nvml")
    toml = tiny_toml(root / "tiny.toml", CUDA_PROCESS)
    env = {**os.environ, "VITTUI_RUNS": str(root / "runs")}
    p = subprocess.run(vittui_cmd() + ["train", str(toml), "--detach", "--name", "nv"], cwd=root, env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    run = root / "runs" / "nv"
    try:
        wait_for_steps(run, 3)
        yield run, status(run)["pid"]
    finally:
        kill_if_alive(status(run).get("pid"))


def _find(src: NvmlSource, pid: int, timeout: float = 60.0):
    """(gpu, process) for `pid` once NVML lists it (its process table can lag a context by a moment)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for g in src.gpus():
            for p in g.processes:
                if p.pid == pid:
                    return g, p
        time.sleep(0.2)
    return None


def _listed(src: NvmlSource) -> set[int]:
    return {p.pid for g in src.gpus() for p in g.processes}


def test_nvml_source_reports_the_device_and_the_worker(cuda_worker):
    run, pid = cuda_worker
    mine = torch.ones(1, device="cuda")  # this process holds a context too: tells a foreign PID namespace apart
    before = steps_of(run)[-1]  # read before NVML: reserved only grows, so NVML's later reading is >= it
    src = NvmlSource()
    gpus = src.gpus()
    assert src.available and gpus, src.reason

    name = torch.cuda.get_device_name(0)
    g0 = next((g for g in gpus if g.name == name), None)
    assert g0 is not None, f"torch's device {name!r} not among NVML's {[g.name for g in gpus]}"
    total = torch.cuda.get_device_properties(0).total_memory
    assert g0.memory_total == pytest.approx(total, rel=0.05)  # NVML counts a little reserved memory too
    assert 0 < g0.memory_used <= g0.memory_total
    # the worker holds memory: NVML's device-wide used is at least what torch reserved for it
    assert 0 < before.torch_allocated <= before.torch_reserved
    assert g0.memory_used >= before.torch_reserved
    # readings some virtualised boards leave N/A (shown as "N/A"); when given they must be sane
    assert g0.utilization is None or 0 <= g0.utilization <= 100
    assert g0.temperature is None or 0 < g0.temperature < 120
    assert g0.power is None or g0.power > 0

    every = steps_of(run)
    assert all(0 < s.torch_allocated <= s.torch_reserved for s in every)  # reserved >= allocated, always

    found = _find(src, pid)
    if found is None:
        listed = _listed(src)
        if os.getpid() not in listed:
            pytest.skip(NAMESPACE_SKIP.format(listed=sorted(listed) or "none", me=os.getpid()))
        pytest.fail(f"worker pid {pid} not in NVML's processes {sorted(listed)}, though this test's pid is")
    g, proc = found
    assert g.name == name
    assert proc.used_memory is not None and proc.used_memory > 0
    assert proc.used_memory >= before.torch_reserved  # NVML adds the CUDA context to what torch reserved
    assert g.memory_used >= proc.used_memory
    only = src.gpus(pids=[pid])
    assert [p.pid for s in only for p in s.processes] == [pid]  # the run's processes only
    del mine


@pytest.mark.anyio
async def test_gpu_pane_shows_the_device_beside_torch_numbers(cuda_worker):
    from vittui.ui.app import create_app
    from vittui.ui.widgets.gpu_pane import NO_GPU, GpuPane

    run, pid = cuda_worker
    mine = torch.ones(1, device="cuda")  # a context of this process, to tell a foreign PID namespace apart
    name = torch.cuda.get_device_name(0)
    src = NvmlSource()
    app = create_app(run.parent, gpu_source=src, attach=run.name)
    async with app.run_test(size=(120, 40)) as pilot:
        pane = app.screen.query_one(GpuPane)

        async def until(cond, what, timeout=60.0):
            end = time.monotonic() + timeout
            while not cond():
                if time.monotonic() > end:
                    raise AssertionError(f"timed out waiting for {what}; pane:\n{pane.text}")
                await pilot.pause(0.05)

        await until(lambda: name in pane.text and "torch reserved" in pane.text, "the GPU and torch's numbers")
        text = pane.text
        assert NO_GPU not in text
        assert re.search(rf"^GPU \d+ {re.escape(name)}$", text, re.M), text
        assert re.search(r"^ mem \d+(\.\d)? [KMG]iB / \d+(\.\d)? GiB \(\d+%\)$", text, re.M), text
        assert re.search(r"^torch allocated \d+(\.\d)? [KMG]iB$", text, re.M), text
        probe = NvmlSource()  # its own handle: the app's sampling thread uses `src`
        if _find(probe, pid) is None:
            listed = _listed(probe)
            if os.getpid() not in listed:
                pytest.skip(NAMESPACE_SKIP.format(listed=sorted(listed) or "none", me=os.getpid()))
            pytest.fail(f"worker pid {pid} not in NVML's processes {sorted(listed)}, though this test's pid is")
        await until(lambda: f"run pid {pid}:" in pane.text, f"the worker's pid {pid} in the pane")
        line = next(ln for ln in pane.text.splitlines() if f"run pid {pid}:" in ln)
        assert re.search(r": \d+(\.\d)? [KMG]iB$", line), line  # a number, not N/A
    del mine

"""The worker keeps large blocks on the heap: a training step that frees and re-allocates the same
buffers must not page-fault them in again (glibc only; left alone when the user chose an allocator)."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                                reason="glibc malloc settings")

FAULTS = """
import resource, sys
from vittui.train.allocator import tune_malloc
applied = tune_malloc() if sys.argv[1] == "tuned" else False
bufs = []
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # a 40 MiB buffer, written and freed, again and again (over glibc's 32 MiB cap
    b = bytearray(40 << 20)  # on its self-raising mmap threshold, so by default always a fresh mmap)
    b[::4096] = b"x" * len(b[::4096])
    del b
print(applied, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0)
"""


def _faults(mode: str, env: dict | None = None) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True,
                         env=env).stdout.split()
    return out[0], int(out[1])


def test_tuned_process_does_not_fault_its_buffers_in_again():
    applied, tuned = _faults("tuned")
    _, plain = _faults("plain")
    assert applied == "True"
    assert plain >= 20 * 10_000  # every buffer is a fresh mmap: 10240 page faults each
    assert tuned < plain / 10  # the buffer comes back from the heap, already mapped


def test_a_users_own_allocator_settings_are_left_alone():
    import os

    applied, _ = _faults("tuned", env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"})
    assert applied == "False"

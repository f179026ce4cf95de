"""glibc malloc settings for a training process on the CPU.

A training step allocates and frees the same large activation buffers every step. glibc serves
blocks over its mmap threshold (128 KiB, raised dynamically) with fresh mmaps and gives freed heap
tops back to the kernel, so every step page-faults its buffers in again: 400–3000 minor faults per
demo step here, varying from process to process, and the slow processes were the faulting ones.
Keeping large blocks on the heap (the same settings as `MALLOC_MMAP_THRESHOLD_` /
`MALLOC_TRIM_THRESHOLD_`) brings that to ~0. Intel's PyTorch CPU guide gets the same from jemalloc or
tcmalloc; a user who preloads one of those, or sets the glibc variables, is left alone.
"""

from __future__ import annotations

import ctypes
import os
import platform

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 256 << 20
TRIM_THRESHOLD = 1 << 30


def tune_malloc() -> bool:
    """Apply the settings in this process; True when applied. Never raises."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    preload = os.environ.get("LD_PRELOAD", "")
    if any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")) or \
            "jemalloc" in preload or "tcmalloc" in preload:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(libc.mallopt(M_TRIM_THRESHOLD,
                                                                                        TRIM_THRESHOLD))
    except (OSError, AttributeError):
        return False

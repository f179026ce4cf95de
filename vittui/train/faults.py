"""Faults: recognising an out-of-memory error, and injecting a NaN loss, a loss spike or an out-of-memory
error at a chosen optimizer step for tests.

The injection wraps the loss function, so the training step itself carries no test hooks. In-process
tests pass `train(..., faults=Faults(nan_at=4))`; the worker installs `Faults.from_env()`, so the
end-to-end tests, which start real worker processes, set the two environment variables below.
Torch-free at import: the worker reads the variables before it loads torch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

NAN_ENV = "VITTUI_TEST_NAN_AT_STEP"  # poison the loss once at this optimizer step (1-based)
OOM_ENV = "VITTUI_TEST_OOM_AT_STEP"  # raise CUDA out-of-memory at this optimizer step
NAN_TIMES_ENV = "VITTUI_TEST_NAN_TIMES"  # how many times the NaN step is poisoned (a rewind redoes it)
SPIKE_ENV = "VITTUI_TEST_SPIKE"  # "STEP:COUNT:SCALE": multiply the loss of COUNT steps from STEP by SCALE, once
TRACE_ENV = "VITTUI_TEST_RNG_TRACE"  # a folder: each rank appends "STEP TORCH NUMPY" (its RNG states' digests)
# at every loss to rank<RANK>.txt there (read, never drawn from: the run trains as it would without it)


def is_out_of_memory(e: BaseException) -> bool:
    return "OutOfMemoryError" in type(e).__name__ or "out of memory" in str(e).lower()


@dataclass
class Faults:
    nan_at: int = 0
    oom_at: int = 0
    nan_times: int = 1  # the NaN step is poisoned this many times (each rewind redoes it)
    spike_at: int = 0  # steps spike_at .. spike_at + spike_steps - 1 have their loss scaled, the first time
    spike_steps: int = 0
    spike_scale: float = 10.0
    rng_trace: str = ""  # a folder (TRACE_ENV)

    @classmethod
    def from_env(cls) -> "Faults | None":
        nan_at, oom_at = (int(os.environ.get(k, "0") or 0) for k in (NAN_ENV, OOM_ENV))
        nan_times = int(os.environ.get(NAN_TIMES_ENV, "1") or 1)
        spike = [float(x) for x in os.environ.get(SPIKE_ENV, "").split(":") if x]
        spike_at, spike_steps, spike_scale = (int(spike[0]), int(spike[1]), spike[2]) if len(spike) == 3 else (0, 0, 1.0)
        rng_trace = os.environ.get(TRACE_ENV, "")
        if nan_at or oom_at or spike_at or rng_trace:
            return cls(nan_at, oom_at, nan_times, spike_at, spike_steps, spike_scale, rng_trace)
        return None

    def wrap(self, criterion: Callable, step: Callable[[], int]) -> Callable:
        """`criterion` with the faults; `step()` is the optimizer step being computed (1-based). The NaN
        poisons one micro-batch's loss once; the loop then skips that update and pauses."""
        nan_left = self.nan_times if self.nan_at else 0
        spiked: set[int] = set()

        def faulty(logits, target):
            nonlocal nan_left
            s = step()
            if self.oom_at and s == self.oom_at:
                import torch

                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected by {OOM_ENV})")
            loss = criterion(logits, target)
            if nan_left and s == self.nan_at:
                nan_left -= 1
                loss = loss * float("nan")
            if self.spike_at <= s < self.spike_at + self.spike_steps and s not in spiked:
                spiked.add(s)  # a redone step (after a rewind) is not spiked again
                loss = loss * self.spike_scale
            if self.rng_trace:
                _trace_rng(self.rng_trace, s)
            return loss

        return faulty


def _trace_rng(folder: str, step: int) -> None:
    """Where this process's RNGs stand at this step's loss (after drop-path and mixup drew): digests only."""
    import hashlib
    from pathlib import Path

    import numpy as np
    import torch

    np_state = np.random.get_state()
    digest = [hashlib.blake2b(b, digest_size=6).hexdigest()
              for b in (torch.get_rng_state().numpy().tobytes(), np_state[1].tobytes() + bytes(str(np_state[2]), "ascii"))]
    with open(Path(folder) / f"rank{os.environ.get('RANK', '0')}.txt", "a") as f:
        f.write(f"{step} {digest[0]} {digest[1]}\n")

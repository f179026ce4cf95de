"""Faults: recognising an out-of-memory error, and injecting a NaN loss or an out-of-memory error at
a chosen optimizer step for tests.

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


def is_out_of_memory(e: BaseException) -> bool:
    return "OutOfMemoryError" in type(e).__name__ or "out of memory" in str(e).lower()


@dataclass
class Faults:
    nan_at: int = 0
    oom_at: int = 0

    @classmethod
    def from_env(cls) -> "Faults | None":
        nan_at, oom_at = (int(os.environ.get(k, "0") or 0) for k in (NAN_ENV, OOM_ENV))
        return cls(nan_at, oom_at) if nan_at or oom_at else None

    def wrap(self, criterion: Callable, step: Callable[[], int]) -> Callable:
        """`criterion` with the faults; `step()` is the optimizer step being computed (1-based). The NaN
        poisons one micro-batch's loss once; the loop then skips that update and pauses."""
        nan_at = self.nan_at

        def faulty(logits, target):
            nonlocal nan_at
            if self.oom_at and step() == self.oom_at:
                import torch

                raise torch.cuda.OutOfMemoryError(f"CUDA out of memory (injected by {OOM_ENV})")
            loss = criterion(logits, target)
            if nan_at and step() == nan_at:
                nan_at = 0
                loss = loss * float("nan")
            return loss

        return faulty

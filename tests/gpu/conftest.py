"""Every test here needs a CUDA device: each is marked `gpu`, which tests/conftest.py skips (with the
reason) when `torch.cuda.is_available()` is false. Run them with `bash benchmarks/gpu_check.sh`, or
`python -m pytest -q tests/gpu -m gpu` (pass `-m gpu`: the default addopts deselect only `slow`).
"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import pytest

# cuBLAS is deterministic on one stream only with a fixed workspace; the exact-resume test turns on
# torch's deterministic mode, which warns without this. Read when the first cuBLAS handle is made, so it
# is set here, before any test touches the device.
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")

HERE = Path(__file__).parent


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    # belt and braces: every module also sets `pytestmark = pytest.mark.gpu`, which is what `-m gpu`
    # selects on and what tests/conftest.py skips on; this catches a module that forgets it
    for item in items:
        if Path(str(item.fspath)).parent == HERE:
            item.add_marker(pytest.mark.gpu)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def release_cuda_memory():
    """Each test starts from an empty caching allocator, so peak readings are its own."""
    yield
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
    except Exception:  # noqa: BLE001 - cleanup must never turn a result into an error
        pass

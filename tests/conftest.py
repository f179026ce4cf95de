import os

import pytest

# Tests never reach a hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="run the full-count slow trials")


def pytest_collection_modifyitems(config, items):
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        pass
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)


@pytest.fixture
def runslow(request) -> bool:
    return request.config.getoption("--runslow")


def vittui_cmd() -> list[str]:
    """The installed `vittui` command (the module when the script is not on PATH)."""
    import shutil
    import sys

    exe = shutil.which("vittui")
    return [exe] if exe else [sys.executable, "-m", "vittui.cli"]


@pytest.fixture
def cli(tmp_path):
    """Run the installed `vittui` command in tmp_path with its own runs folder."""
    import subprocess

    env = {**os.environ, "VITTUI_RUNS": str(tmp_path / "runs")}

    def run(*args, check=True, timeout=120, extra_env=None):
        p = subprocess.run(vittui_cmd() + list(args), cwd=tmp_path, env={**env, **(extra_env or {})},
                           capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"vittui {' '.join(args)} -> {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p

    run.root = tmp_path / "runs"
    return run

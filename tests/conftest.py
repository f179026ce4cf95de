import os

import pytest

# Tests never reach a hub: fail fast instead of waiting on the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    if not any("gpu" in item.keywords for item in items):
        return
    cuda = False
    try:
        import torch

        cuda = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        pass
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords and not cuda:
            item.add_marker(skip_gpu)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI a skip is a failure (CI installs every extra and starts every service it tests), except
    the GPU tests on a machine without CUDA."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("CI") and "gpu" not in item.keywords and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may skip: {reason}"


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


# ---- tiny finished runs shared by every folder that reads them (tests/trained.py) --------------------------
@pytest.fixture(scope="session")
def trained_root(tmp_path_factory):
    return tmp_path_factory.mktemp("trained-runs")


@pytest.fixture(scope="session")
def run_a(trained_root):
    from trained import train_tiny

    return train_tiny(trained_root, "a", [])


@pytest.fixture(scope="session")
def run_b(trained_root):
    from trained import B_CHANGES, train_tiny

    return train_tiny(trained_root, "b", [f"{k}={v}" for k, v in B_CHANGES.items()])

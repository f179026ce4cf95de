from pathlib import Path

import pytest
from tiny import TINY_PROCESS
from tiny import tiny_toml as write_tiny_toml


@pytest.fixture
def tiny_toml(tmp_path) -> Path:
    return write_tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS)

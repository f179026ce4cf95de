"""Every test here runs with the Hub switched off and an empty cache."""

from __future__ import annotations

import pytest



@pytest.fixture(autouse=True)
def no_hub(tmp_path, monkeypatch):
    """No network: HF_HUB_OFFLINE=1 and an empty HF_HOME, read by vittui at call time."""
    home = tmp_path / "hf_home"
    home.mkdir()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    return home

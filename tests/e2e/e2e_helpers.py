"""Helpers for end-to-end tests that drive the real `vittui` command (shared ones live in tests/tiny.py)."""

from tiny import status, vittui_cmd, wait_for  # noqa: F401 (re-exported)

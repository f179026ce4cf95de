"""Driving the installed `vittui` in a real terminal: a tmux server on a socket of its own.

Each `Tmux` owns one server (`tmux -L <unique name>`); `kill()` ends that server and nothing else. Keys go
in with `send-keys`, the screen comes out with `capture-pane -p`; tests wait on what the screen shows
(`wait_screen`) instead of sleeping.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid

from tiny import wait_for

# Keys are handed over one at a time with a short gap: a burst of keys arriving in one read can reach the
# app before the focus change the previous key asked for has happened (a pacing gap, not a wait for state).
KEY_GAP = 0.15


def have_tmux() -> bool:
    return shutil.which("tmux") is not None


class Tmux:
    def __init__(self, width: int = 120, height: int = 40):
        self.socket = f"vittui-test-{uuid.uuid4().hex[:10]}"
        self.width, self.height = width, height
        self.started = False

    def _tmux(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30,
                              check=check)

    def start(self, window: str, argv: list[str], env: dict[str, str], cwd: str) -> None:
        """A new window running `argv` (then a shell-free hold, so its last screen stays readable)."""
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        cmd = f"cd {shlex.quote(cwd)} && env {exports} {shlex.join(argv)}; echo \"[exit $?]\"; sleep 3600"
        if not self.started:
            self._tmux("-f", "/dev/null", "new-session", "-d", "-s", "t", "-n", window,
                       "-x", str(self.width), "-y", str(self.height), "bash", "-c", cmd)
            self.started = True
        else:
            self._tmux("new-window", "-d", "-t", "t", "-n", window, "bash", "-c", cmd)

    def screen(self, window: str) -> str:
        p = self._tmux("capture-pane", "-p", "-t", f"t:{window}", check=False)
        return p.stdout if p.returncode == 0 else ""

    def keys(self, window: str, *keys: str) -> None:
        """Named keys (Tab, Enter, End, C-s, BSpace, Space, ...), one at a time."""
        for k in keys:
            self._tmux("send-keys", "-t", f"t:{window}", k)
            time.sleep(KEY_GAP)

    def type(self, window: str, text: str) -> None:
        """Literal text."""
        for ch in text:
            self._tmux("send-keys", "-t", f"t:{window}", "-l", ch)
            time.sleep(KEY_GAP)

    def wait_screen(self, window: str, pattern: str, timeout: float = 90.0, what: str | None = None) -> re.Match:
        """Poll the window until `pattern` (a regex) is on screen; fail with the last screen."""
        found: list[re.Match] = []

        def check():
            m = re.search(pattern, self.screen(window), re.MULTILINE)
            if m:
                found.append(m)
            return m

        try:
            wait_for(check, timeout=timeout, interval=0.2, what=what or f"{pattern!r} on screen")
        except AssertionError as e:
            raise AssertionError(f"{e}\n--- last screen of {window} ---\n{self.screen(window)}") from None
        return found[-1]

    def socket_path(self) -> str:
        p = self._tmux("display-message", "-p", "#{socket_path}", check=False)
        return p.stdout.strip()

    def kill(self) -> None:
        """End this server (its own socket only) and remove the socket file it leaves."""
        if self.started:
            path = self.socket_path()
            self._tmux("kill-server", check=False)
            self.started = False
            if path and os.path.basename(path) == self.socket:
                with contextlib.suppress(OSError):
                    os.unlink(path)

"""The dashboard as a person uses it: the installed `vittui` in a real terminal (tmux), driven with keys.

Open the dashboard on a tiny preset, edit a recipe field (run.name) with the keyboard, Ctrl+S, watch it run,
space to pause, `d` to detach (the app exits, the worker goes on), then `vittui attach RUN --tui` in a
new window shows the history, and space there resumes the run.
"""

from __future__ import annotations

import dataclasses

import pytest
from tiny import TINY_PROCESS, events, kill_if_alive, status, tiny_toml, vittui_cmd, wait_for
from tmux_helpers import Tmux, have_tmux

from vittui import recipe as R
from vittui.runs import events as ev
from vittui.runs.lock import pid_alive

pytestmark = pytest.mark.skipif(not have_tmux(), reason="needs tmux (apt-get install tmux)")


def evals(run) -> list[int]:
    return [e.step for e in events(run) if isinstance(e, ev.Eval)]


def test_edit_start_pause_detach_and_reattach_in_a_real_terminal(tmp_path):
    preset = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS)
    runs = tmp_path / "runs"
    env = {"VITTUI_RUNS": str(runs), "NO_COLOR": "1"}
    run = runs / "edited-run"
    tm = Tmux(120, 40)
    try:
        tm.start("app", vittui_cmd() + ["--preset", str(preset)], env, str(tmp_path))
        tm.wait_screen("app", r"\[model\]", what="the setup screen with the recipe editor")

        # the keyboard path a person takes: tab past the model filter and table to the section list,
        # End for the last section (run), Enter into its first field (run.name)
        tm.keys("app", "Tab", "Tab", "End")
        tm.wait_screen("app", r"\[run\]", what="the run section in the editor")
        tm.keys("app", "Enter")
        tm.type("app", "edited-run")
        tm.wait_screen("app", r"name\s+edited-run\b")
        tm.keys("app", "Enter")

        tm.keys("app", "C-s")
        tm.wait_screen("app", r"edited-run\s+RUNNING", what="RUNNING in the monitor's header")
        pid = wait_for(lambda: status(run).get("pid"), what="the worker's pid in status.json")
        wait_for(lambda: evals(run), what="the first eval (epoch end: 256 images / batch 32 = step 8)")

        tm.keys("app", "Space")
        tm.wait_screen("app", r"edited-run\s+PAUSED", what="PAUSED after space")
        wait_for(lambda: status(run).get("state") == "paused", what="state paused in status.json")
        paused_at = status(run)["step"]

        tm.keys("app", "d")
        tm.wait_screen("app", r"detached: the run keeps going", what="the app exiting on d")
        tm.wait_screen("app", r"\[exit 0\]")
        assert pid_alive(pid), "detaching the dashboard ended the worker"
        assert status(run)["state"] == "paused"

        # the edited value reached the run: recipe.toml is the preset with the edit, nothing else
        expected = R.load(preset)
        assert expected.run.name == ""
        expected = dataclasses.replace(expected, run=dataclasses.replace(expected.run, name="edited-run"))
        assert R.load(run / "recipe.toml") == expected
        assert evals(run)[0] == 8

        # a new dashboard on the same run: the header, the step count and the plots come from the history
        tm.start("attach", vittui_cmd() + ["attach", "edited-run", "--tui"], env, str(tmp_path))
        m = tm.wait_screen("attach", r"edited-run\s+PAUSED\s+epoch [\d.]+\s+step (\d+)/(\d+)",
                           what="the re-attached header")
        assert int(m.group(1)) == paused_at
        assert int(m.group(2)) == 400 * 8  # schedule.epochs x steps per epoch (256 images / batch 32)
        screen = tm.wait_screen("attach", r"top-1", what="the accuracy plot drawn from the history").string
        assert "no eval yet" not in screen and "waiting for data" not in screen, screen

        # and it controls the run: space resumes it
        tm.keys("attach", "Space")
        tm.wait_screen("attach", r"edited-run\s+RUNNING", what="RUNNING after space in the re-attached app")
        wait_for(lambda: status(run).get("step", 0) > paused_at, what="steps after the resume")
    finally:
        tm.kill()
        kill_if_alive(status(run).get("pid"))

"""Suspend frees the machine (the worker checkpoints and exits) and `vittui ctl RUN resume` continues the
run exactly: the installed command, a detached worker on the tiny recipe."""

import math

import pytest
from tiny import TINY_PROCESS, all_gone, events, kill_if_alive, run_processes, status, step_numbers, tiny_toml, wait_for

from vittui.runs import events as ev
from vittui.runs.lock import pid_alive

STEPS = 40
RECIPE = TINY_PROCESS + [f"schedule.max_steps={STEPS}", "run.checkpoint_every=1000"]


def losses(run) -> dict[int, float]:
    return {e.step: e.loss for e in events(run) if isinstance(e, ev.Step)}


@pytest.mark.slow  # ~24 s: a straight run, a worker suspended and resumed; the default tier stays under 10 minutes on 2 cores
def test_suspend_exits_the_worker_and_resume_continues_exactly(cli, tmp_path):
    toml = tiny_toml(tmp_path / "tiny.toml", RECIPE)
    cli("train", str(toml), "--name", "straight", timeout=300)  # the uninterrupted run, in the foreground
    straight = losses(cli.root / "straight")
    assert sorted(straight) == list(range(1, STEPS + 1))

    cli("train", str(toml), "--detach", "--name", "s")
    run = cli.root / "s"
    pids = [status(run).get("pid")]
    try:
        wait_for(lambda: len(step_numbers(events(run))) >= 5, what="five steps")
        # paused first, so the step it suspends at is well before the end whatever the machine's speed
        cli("ctl", "s", "pause", "--wait", "60")
        wait_for(lambda: status(run).get("state") == "paused", what="paused")
        pid = status(run)["pid"]
        procs = run_processes(pid)
        assert procs, "the worker's processes"
        out = cli("ctl", "s", "suspend", "--wait", "60").stdout
        assert "suspend took effect at step" in out
        wait_for(lambda: status(run).get("state") == "suspended", what="suspended")
        wait_for(lambda: not pid_alive(pid), what="the suspended worker to exit")
        wait_for(lambda: all_gone(procs), what="every process of the run to exit")
        at = status(run)["step"]
        assert 5 <= at < STEPS
        assert status(run)["last_checkpoint_step"] == at  # checkpointed at the step it suspended at
        assert step_numbers(events(run)) == list(range(1, at + 1))
        said = [e for e in events(run) if isinstance(e, ev.Status)][-1]
        assert said.state == "suspended" and "suspended" in said.reason
        assert not [e for e in events(run) if isinstance(e, ev.Finished)]
        listed = cli("runs").stdout
        assert any(line.split()[:1] == ["s"] and "suspended" in line for line in listed.splitlines()), listed

        out = cli("ctl", "s", "resume").stdout
        assert "resuming s" in out
        pids.append(status(run).get("pid"))
        wait_for(lambda: status(run).get("state") == "finished", timeout=180, what="the resumed run to finish")
        pids.append(status(run).get("pid"))
        assert step_numbers(events(run)) == list(range(1, STEPS + 1))  # no gap, nothing done twice
        resumed = losses(run)
        for step in range(1, STEPS + 1):
            assert math.isclose(resumed[step], straight[step], rel_tol=1e-6), (step, resumed[step], straight[step])
    finally:
        for pid in pids:
            kill_if_alive(pid)


def test_suspend_and_resume_refuse_what_they_cannot_do(cli, tmp_path):
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS + ["schedule.max_steps=3"])
    cli("train", str(toml), "--name", "done", timeout=300)
    for command in ("suspend", "resume"):
        p = cli("ctl", "done", command, check=False)
        assert p.returncode == 2, (p.stdout, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1 and "finished" in p.stderr, p.stderr

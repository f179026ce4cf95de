"""The run queue end to end with the installed `vittui`: `train --queue` starts a detached scheduler that runs
tiny runs one at a time; a `kill -9` of the scheduler loses nothing and starts nothing twice once the next
`vittui` command restarts it; `vittui queue` lists, moves and removes; resume goes through the queue."""

from __future__ import annotations

import json
import math
import os
import signal

import pytest
from tiny import TINY, TINY_PROCESS, events, kill_if_alive, status, step_numbers, tiny_toml, wait_for

from vittui.runs import control
from vittui.runs import events as ev
from vittui.runs.lock import pid_alive, read_lock

SHORT = TINY + ["schedule.epochs=1"]  # 8 steps of batch 16 on 128 digits: a run of a few seconds


def scheduler_pid(root) -> int | None:
    info = read_lock(root / ".queue" / "scheduler.lock")
    pid = int(info["pid"]) if info else 0
    return pid if pid and pid_alive(pid, info.get("start_time")) else None


def started_events(run) -> list[ev.RunStarted]:
    return [e for e in events(run) if isinstance(e, ev.RunStarted)]


def interval(run) -> tuple[float, float]:
    """From the worker's RunStarted to its Finished event."""
    evs = events(run)
    start = [e.t for e in evs if isinstance(e, ev.RunStarted)]
    end = [e.t for e in evs if isinstance(e, ev.Finished)]
    assert len(start) == 1 and len(end) == 1, (run.name, start, end)
    return start[0], end[0]


def cleanup(root, runs=()) -> None:
    """Kill the scheduler and every worker a test's runs name (by pid, never by name)."""
    kill_if_alive(scheduler_pid(root))
    for name in runs:
        kill_if_alive(status(root / name).get("pid"))


@pytest.mark.slow  # three tiny trainings in turn, a scheduler killed between them (~75 s on the shared 2 cores)
def test_three_queued_runs_run_one_after_another_and_survive_a_killed_scheduler(cli, tmp_path):
    toml = tiny_toml(tmp_path / "short.toml", SHORT)
    names = ["q1", "q2", "q3"]
    try:
        for name in names:
            out = cli("train", str(toml), "--queue", "--name", name).stdout
            assert out.startswith(f"queued {name} at position") and len(out.splitlines()) == 1, out
        # q2 will pause as it starts (a command waits in commands.jsonl until a worker reads it): midway, the
        # first run has finished and q2 is live and holds the slot when the restarted scheduler looks
        control.send(cli.root / "q2", "pause")
        first = wait_for(lambda: scheduler_pid(cli.root), what="a scheduler")
        wait_for(lambda: status(cli.root / "q2").get("state") == "paused", timeout=240, what="q2 to start, paused")
        assert status(cli.root / "q1").get("state") == "finished"
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: not pid_alive(first), what="the scheduler to die")
        assert status(cli.root / "q3").get("state") == "queued"

        listed = cli("queue").stdout  # any vittui command restarts a dead scheduler when runs wait
        assert "q3" in listed, listed
        second = wait_for(lambda: scheduler_pid(cli.root), what="a restarted scheduler")
        assert second != first
        log = cli.root / ".queue" / "scheduler.log"
        wait_for(lambda: "q3: waits for a CPU slot (1 of 1 taken by q2)"
                 in log.read_text().split(f"scheduler {second} for")[-1], what="the new scheduler to hold q3 back")
        assert status(cli.root / "q3").get("state") == "queued"
        cli("ctl", "q2", "resume")
        for name in names:
            wait_for(lambda: status(cli.root / name).get("state") == "finished", timeout=240,
                     what=f"{name} to finish")
        wait_for(lambda: scheduler_pid(cli.root) is None, timeout=60, what="the scheduler to exit with the queue empty")

        for name in names:  # each trained once, from step 1, every step once
            started = started_events(cli.root / name)
            assert [e.resumed_from_step for e in started] == [0], (name, started)
            steps = step_numbers(events(cli.root / name))
            assert steps == list(range(1, len(steps) + 1)) and len(steps) == 8, (name, steps)
        spans = sorted(interval(cli.root / n) for n in names)
        assert [n for _, n in sorted((interval(cli.root / n)[0], n) for n in names)] == names  # first in, first out
        for (s1, e1), (s2, e2) in zip(spans, spans[1:]):
            assert e1 <= s2, f"runs overlap: {spans}"
        assert "nothing queued or live" in cli("queue").stdout
    finally:
        cleanup(cli.root, names)


def test_queue_json_top_rm_and_bad_input(cli, tmp_path):
    hold = tiny_toml(tmp_path / "hold.toml", TINY_PROCESS)  # never ends: keeps the one CPU slot
    short = tiny_toml(tmp_path / "short.toml", SHORT)
    try:
        cli("train", str(hold), "--detach", "--name", "hold")
        wait_for(lambda: status(cli.root / "hold").get("state") == "running", timeout=120, what="hold running")
        for name in ("a", "b", "c"):
            cli("train", str(short), "--queue", "--name", name)
        wait_for(lambda: scheduler_pid(cli.root), what="a scheduler")

        listed = json.loads(cli("queue", "--json").stdout)
        assert listed["scheduler_alive"] is True
        assert [(r["position"], r["name"], r["state"]) for r in listed["runs"]] == [
            (1, "a", "queued"), (2, "b", "queued"), (3, "c", "queued"), (None, "hold", "running")]
        assert all(r["estimate_bytes"] > 0 for r in listed["runs"][:3])

        moved = json.loads(cli("queue", "top", "c", "--json").stdout)
        assert moved == {"name": "c", "action": "top", "state": "queued", "position": 1}
        gone = json.loads(cli("queue", "rm", "a", "--json").stdout)
        assert gone == {"name": "a", "action": "rm", "state": "stopped", "position": None}
        assert [r["name"] for r in json.loads(cli("queue", "--json").stdout)["runs"]] == ["c", "b", "hold"]
        runs = {r["name"]: r for r in json.loads(cli("runs", "--json").stdout)}
        assert (runs["c"]["queue_position"], runs["b"]["queue_position"], runs["a"]["state"]) == (1, 2, "stopped")
        assert "queued:1" in cli("runs").stdout

        bad = [
            (("queue", "rm", "hold"), "hold is running, not queued"),
            (("queue", "top", "a"), "a is stopped, not queued"),
            (("queue", "rm", "nope"), "no run named 'nope'"),
            (("queue", "rm"), "needs a RUN"),
            (("ctl", "b", "resume"), "already queued"),
            (("ctl", "b", "stop"), "b is queued; nothing is listening for commands (take it out of the queue with `vittui queue rm b`)"),
            (("train", str(short), "--queue", "--detach"), "--queue"),
            (("train", str(short), "--queue", "--max-per-gpu", "0"), "--max-per-gpu must be >= 1"),
            (("train", str(short), "--max-cpu-runs", "2"), "--max-cpu-runs needs --queue"),
            (("train", str(short), "--queue", "--set", "optim.lr=-1"), "optim.lr"),
            (("train", "--resume", "a", "--queue"), "no checkpoint"),
        ]
        for args, said in bad:
            p = cli(*args, check=False)
            assert p.returncode == 2, (args, p.stdout, p.stderr)
            assert len(p.stderr.strip().splitlines()) == 1 and said in p.stderr, (args, p.stderr)
            assert "Traceback" not in p.stderr
        assert sorted(p.name for p in cli.root.iterdir() if not p.name.startswith(".")) == ["a", "b", "c", "hold"]

        cli("queue", "rm", "b")
        cli("queue", "rm", "c")
        wait_for(lambda: scheduler_pid(cli.root) is None, timeout=60, what="the scheduler to exit with nothing queued")
    finally:
        cleanup(cli.root, ["hold", "a", "b", "c"])


STEPS = 40
EXACT = TINY_PROCESS + [f"schedule.max_steps={STEPS}", "run.checkpoint_every=1000"]


@pytest.mark.slow  # three tiny trainings one after another (~2 min on the shared 2 cores)
def test_resume_goes_through_the_queue_and_continues_exactly(cli, tmp_path):
    toml = tiny_toml(tmp_path / "tiny.toml", EXACT)
    short = tiny_toml(tmp_path / "short.toml", SHORT)
    cli("train", str(toml), "--name", "straight", timeout=300)
    straight = {e.step: e.loss for e in events(cli.root / "straight") if isinstance(e, ev.Step)}
    run = cli.root / "s"
    try:
        cli("train", str(toml), "--detach", "--name", "s")
        wait_for(lambda: len(step_numbers(events(run))) >= 5, timeout=120, what="five steps")
        cli("ctl", "s", "pause", "--wait", "60")
        cli("ctl", "s", "suspend", "--wait", "60")
        wait_for(lambda: status(run).get("state") == "suspended", what="suspended")
        at = status(run)["step"]
        cli("train", str(short), "--queue", "--name", "other")  # takes the free slot at once
        wait_for(lambda: status(cli.root / "other").get("state") in ("starting", "running", "finished"),
                 what="the other run to start")

        out = cli("ctl", "s", "resume").stdout
        assert out.startswith("queued s (suspended) to resume"), out
        wait_for(lambda: status(run).get("state") == "finished", timeout=240, what="s to finish through the queue")
        other_end = [e.t for e in events(cli.root / "other") if isinstance(e, ev.Finished)][0]
        resumed = started_events(run)[-1]
        assert resumed.resumed_from_step == at and resumed.t >= other_end  # it waited its turn
        assert step_numbers(events(run)) == list(range(1, STEPS + 1))
        losses = {e.step: e.loss for e in events(run) if isinstance(e, ev.Step)}
        for step in range(1, STEPS + 1):
            assert math.isclose(losses[step], straight[step], rel_tol=1e-6), (step, losses[step], straight[step])
    finally:
        cleanup(cli.root, ["s", "other"])


@pytest.mark.slow  # two tiny trainings, one held paused past the threshold (~45 s)
def test_a_run_paused_too_long_is_suspended_for_the_queue_and_says_why(cli, tmp_path):
    short = tiny_toml(tmp_path / "short.toml", SHORT)
    names = ["idle", "next"]
    try:
        # 0.05 min = 3 s; `idle` pauses as it starts (its pause command waits in commands.jsonl)
        cli("train", str(short), "--queue", "--name", "idle", "--suspend-paused-after", "0.05")
        control.send(cli.root / "idle", "pause")
        cli("train", str(short), "--queue", "--name", "next")
        wait_for(lambda: status(cli.root / "idle").get("state") == "suspended", timeout=240,
                 what="the paused run to be suspended")
        said = [e for e in events(cli.root / "idle") if isinstance(e, ev.Status)][-1]
        assert said.state == "suspended" and said.reason.startswith("suspended by the queue: paused"), said
        assert "1 queued run(s) wait for its slot" in said.reason
        wait_for(lambda: status(cli.root / "next").get("state") == "finished", timeout=240, what="next to finish")
        assert status(cli.root / "idle").get("state") == "suspended"  # not requeued by itself
        wait_for(lambda: scheduler_pid(cli.root) is None, timeout=60, what="the scheduler to exit")
    finally:
        cleanup(cli.root, names)

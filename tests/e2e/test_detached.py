"""The run as a process of its own, driven from the shell with the real `vittui` command."""

import json
import os
import re
import signal
import subprocess
import time

import pytest
from e2e_helpers import status, vittui_cmd, wait_for

from vittui.runs import control
from vittui.runs import events as ev
from vittui.runs.lock import pid_alive


def steps(run):
    return [e.step for e in ev.read_all(run / "events.jsonl") if isinstance(e, ev.Step)]


def ack_of(run, cmd_id):
    return wait_for(lambda: next((e for e in ev.read_all(run / "events.jsonl")
                                  if isinstance(e, ev.ControlAck) and e.id == cmd_id), None))


def kill_worker(run):
    pid = status(run).get("pid")
    if pid and pid_alive(pid):
        os.kill(pid, signal.SIGKILL)


def test_detached_run_is_controlled_from_the_shell(cli, tiny_toml, tmp_path):
    # the launching shell exits at once; the worker goes on in its own session
    p = subprocess.run(["bash", "-c", " ".join(vittui_cmd() + ["train", str(tiny_toml), "--detach", "--name", "r"])],
                       cwd=tmp_path, env={**os.environ, "VITTUI_RUNS": str(cli.root)}, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    run = cli.root / "r"
    try:
        wait_for(lambda: len(steps(run)) >= 5)
        pid = status(run)["pid"]
        assert os.getsid(pid) != os.getsid(0)  # a session of its own: no SIGHUP from our terminal
        os.kill(pid, signal.SIGHUP)  # and it ignores one sent directly
        n = len(steps(run))
        wait_for(lambda: len(steps(run)) > n + 3)
        assert "running" in cli("runs").stdout

        # pause: takes effect within one step of the command being written. The worker polls commands
        # after each Step event, so the first step whose event is stamped after the command was on disk
        # (t_written) has seen it; and no step finished before the command existed (sent.t) can.
        sent = control.send(run, "pause")
        t_written = time.time()
        ack = ack_of(run, sent.id)
        done = [e for e in ev.read_all(run / "events.jsonl") if isinstance(e, ev.Step)]
        before = max((e.step for e in done if e.t < sent.t), default=0)
        by_write = max((e.step for e in done if e.t <= t_written), default=0)
        assert before <= ack.step <= by_write + 1, (before, by_write, ack.step)
        wait_for(lambda: status(run).get("state") == "paused")
        cli("ctl", "r", "resume", "--wait", "30")
        wait_for(lambda: status(run).get("state") == "running")
        assert "pause took effect at step" in cli("ctl", "r", "pause", "--wait", "30").stdout
        wait_for(lambda: status(run).get("state") == "paused")
        # and holds: the paused worker answers a checkpoint command at the step it paused at, no step between
        paused_at = [e for e in ev.read_all(run / "events.jsonl") if isinstance(e, ev.ControlAck)][-1]
        assert paused_at.command == "pause"
        ck = ack_of(run, control.send(run, "checkpoint").id)
        evs = ev.read_all(run / "events.jsonl")
        between = evs[evs.index(paused_at):evs.index(ck)]
        assert not [e for e in between if isinstance(e, ev.Step)], "stepped while paused"
        held = steps(run)[-1]
        assert ck.step == paused_at.step == held
        assert "paused" in cli("runs").stdout
        cli("ctl", "r", "resume", "--wait", "30")
        wait_for(lambda: steps(run)[-1] > held + 2)
        seen = steps(run)  # read once: the run goes on stepping between two reads (CI, 2026-12-02: 39 vs 40)
        assert seen == list(range(1, len(seen) + 1))  # same sequence, nothing skipped

        # kill -9, then resume from the last checkpoint with the history intact
        wait_for(lambda: status(run).get("last_checkpoint_step"))
        pid = status(run)["pid"]
        kill_worker(run)
        wait_for(lambda: not pid_alive(pid), what="the killed worker to exit")
        assert cli("runs").stdout.count("lost") == 1  # status.json says running, but nobody is behind it
        before = ev.read_all(run / "events.jsonl")
        # the checkpoint on disk: a kill between writing it and its CheckpointSaved event leaves it newer
        # than the last event says, and the resume rightly takes it
        last_ckpt = json.loads((run / "checkpoints" / "last.json").read_text())["step"]
        assert last_ckpt >= max(e.step for e in before if isinstance(e, ev.CheckpointSaved))
        cli("train", "--resume", "r", "--detach")
        wait_for(lambda: any(isinstance(e, ev.RunStarted) and e.resumed_from_step for e in ev.read_all(run / "events.jsonl")))
        after = ev.read_all(run / "events.jsonl")
        resumed = [e for e in after if isinstance(e, ev.RunStarted)][-1]
        assert resumed.resumed_from_step == last_ckpt
        assert [e.to_json() for e in after[:len(before)]] == [e.to_json() for e in before]  # history intact
        def new_steps():
            return [e.step for e in ev.read_all(run / "events.jsonl")[len(before):] if isinstance(e, ev.Step)]

        wait_for(lambda: len(new_steps()) > 2)
        assert new_steps()[:3] == [last_ckpt + 1, last_ckpt + 2, last_ckpt + 3]

        # stop: checkpoint, then a clean end
        cli("ctl", "r", "stop", "--wait", "60")
        wait_for(lambda: status(run).get("state") == "stopped")
        final = status(run)
        assert final["last_checkpoint_step"] == final["step"]
        assert (run / "checkpoints" / f"step-{final['step']:08d}" / "model.safetensors").exists()
        wait_for(lambda: not pid_alive(final["pid"]))
        assert not (run / "worker.lock").exists()
    finally:
        kill_worker(run)


def test_nan_injection_pauses_and_sigterm_checkpoints(cli, tiny_toml):
    cli("train", str(tiny_toml), "--detach", "--name", "n", extra_env={"VITTUI_TEST_NAN_AT_STEP": "6"})
    run = cli.root / "n"
    try:
        wait_for(lambda: status(run).get("state") == "paused")
        fault = [e for e in ev.read_all(run / "events.jsonl") if isinstance(e, ev.Fault)][0]
        assert (fault.fault, fault.step, fault.quantity) == ("nan", 6, "loss")
        assert steps(run)[-1] == 5
        cli("ctl", "n", "resume", "--lr-scale", "0.5", "--wait", "30")
        wait_for(lambda: len(steps(run)) > 8)
        os.kill(status(run)["pid"], signal.SIGTERM)
        wait_for(lambda: status(run).get("state") == "stopped")
        final = status(run)
        assert final["last_checkpoint_step"] == final["step"]
    finally:
        kill_worker(run)


def test_a_second_worker_on_the_same_run_is_refused(cli, tiny_toml):
    cli("train", str(tiny_toml), "--detach", "--name", "l")
    run = cli.root / "l"
    try:
        wait_for(lambda: len(steps(run)) >= 1)
        p = cli("train", "--resume", "l", check=False)
        assert p.returncode == 2 and "still live" in p.stderr
        from vittui.train.worker import run_worker

        assert run_worker(run) == 2  # the lock itself refuses, even past the CLI's check
    finally:
        kill_worker(run)


def test_out_of_memory_fails_with_advice_and_a_last_checkpoint(cli, tiny_toml):
    p = cli("train", str(tiny_toml), "--name", "o", "--set", "run.checkpoint_every=0", check=False,
            extra_env={"VITTUI_TEST_OOM_AT_STEP": "4"})
    run = cli.root / "o"
    assert p.returncode == 1
    s = status(run)
    assert s["state"] == "failed" and "out of memory at batch size 32" in s["message"]
    fault = [e for e in ev.read_all(run / "events.jsonl") if isinstance(e, ev.Fault)][-1]
    assert fault.fault == "oom" and "accumulation" in fault.suggestion and "bf16" in fault.suggestion
    assert s["last_checkpoint_step"] == 3  # the weights after the last completed step


def test_foreground_ctrl_c_checkpoints_then_a_second_stops_now(cli, tiny_toml, tmp_path):
    env = {**os.environ, "VITTUI_RUNS": str(cli.root)}
    proc = subprocess.Popen(vittui_cmd() + ["train", str(tiny_toml), "--name", "fg"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = cli.root / "fg"
    try:
        wait_for(lambda: len(steps(run)) >= 3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "checkpointing and stopping" in err
        s = status(run)
        assert s["state"] == "stopped" and s["last_checkpoint_step"] == s["step"]
        assert "fg: stopped at step" in out
    finally:
        if proc.poll() is None:  # the foreground command is the worker itself
            proc.kill()
            proc.wait(timeout=30)


def test_headless_attach_prints_history_then_follows_to_the_end(cli, tiny_toml):
    cli("train", str(tiny_toml), "--detach", "--name", "a", "--set", "schedule.max_steps=40",
        "--set", "run.eval_every=10")
    run = cli.root / "a"
    try:
        wait_for(lambda: len(steps(run)) >= 12)
        p = cli("attach", "a", timeout=180)  # stdin is not a terminal: follow until the run ends
        out = p.stdout
        assert out.startswith("run a: running, step")
        assert "eval  step     10" in out  # the history before attaching
        assert "eval  step     40" in out  # and what came after
        assert "run a is finished" in out
    finally:
        kill_worker(run)


@pytest.mark.slow  # ~17 s: two detached workers; the default tier stays under 10 minutes on 2 cores
def test_resume_before_the_first_checkpoint_starts_over_with_the_same_losses(cli, tmp_path):
    from tiny import TINY_PROCESS, tiny_toml

    # an epoch of ~26 steps, 20 steps in all: no checkpoint until the run's end
    toml = tiny_toml(tmp_path / "early.toml", TINY_PROCESS + [
        "data.batch_size=8", "schedule.max_steps=20", "run.checkpoint_every=1000", "run.eval_every=3"])
    cli("train", str(toml), "--detach", "--name", "k", extra_env={"VITTUI_TEST_NAN_AT_STEP": "9"})
    run = cli.root / "k"
    try:
        wait_for(lambda: status(run).get("state") == "paused")  # held at step 8, evaluated at 3 and 6
        pid = status(run)["pid"]
        kill_worker(run)
        wait_for(lambda: not pid_alive(pid), what="the killed worker to exit")
    finally:
        kill_worker(run)
    before = ev.read_all(run / "events.jsonl")
    assert steps(run) == list(range(1, 9))
    assert not any(isinstance(e, ev.CheckpointSaved) for e in before)
    assert [e.step for e in before if isinstance(e, ev.Eval)] == [3, 6]

    p = cli("train", "--resume", "k", timeout=180)  # foreground: to the end
    assert "no checkpoint yet: starting over from step 0" in p.stdout
    after = ev.read_all(run / "events.jsonl")
    assert [e.to_json() for e in after[:len(before)]] == [e.to_json() for e in before]  # history kept
    new = after[len(before):]
    assert isinstance(new[0], ev.Log) and new[0].message == "no checkpoint yet: starting over from step 0"
    assert isinstance(new[1], ev.RunStarted) and new[1].resumed_from_step == 0
    assert status(run)["state"] == "finished"

    cli("train", str(toml), "--name", "u", timeout=180)  # the same recipe, never interrupted
    straight = ev.read_all(cli.root / "u" / "events.jsonl")

    def losses(evs):
        return [(e.step, e.loss) for e in evs if isinstance(e, ev.Step)]

    assert [s for s, _ in losses(new)] == list(range(1, 21))
    for (s, a), (t, b) in zip(losses(new), losses(straight), strict=True):
        assert s == t and abs(a - b) <= 1e-5 * abs(b), (s, a, b)

    from vittui.runs.history import RunHistory

    h = RunHistory(max_buckets=None)
    h.feed(after)  # the fold rewinds the first attempt: what the run became is the second
    assert h.steps == list(range(1, 21)) and h.eval_steps == [3, 6, 9, 12, 15, 18, 20] and h.resumes == [0]
    assert h.finished is not None
    rows = (run / "summary.csv").read_text().splitlines()
    assert [r.split(",")[6] for r in rows[1:]] == ["3", "6", "9", "12", "15", "18", "20"]  # no row of the first attempt
    assert rows == (cli.root / "u" / "summary.csv").read_text().splitlines()


@pytest.mark.slow  # ~12 s: a tiny run, three resumes; the default tier stays under 10 minutes on 2 cores
def test_a_broken_recipe_at_resume_is_one_line_and_loses_nothing(cli, tmp_path):
    """A run's recipe.toml edited by hand between a stop and `--resume`: a TOML typo, then a value the
    validator refuses. Each is one line naming the file (exit 2, no traceback); no worker starts and the
    run's history, status and checkpoints are as they were; with the recipe mended, `--resume` answers again."""
    from tiny import TINY_PROCESS, tiny_toml

    toml = tiny_toml(tmp_path / "r.toml", TINY_PROCESS + ["schedule.max_steps=3", "run.checkpoint_every=3"])
    cli("train", str(toml), "--name", "r", timeout=180)
    run = cli.root / "r"
    good = (run / "recipe.toml").read_text()
    kept = {name: (run / name).read_bytes() for name in ("events.jsonl", "status.json")}
    checkpoints = sorted(p.name for p in (run / "checkpoints").iterdir())
    for broken, says in ((good + "this is [not toml\n", "TOML syntax error"),
                         (re.sub(r"(?m)^lr = .*$", "lr = -1.0", good, count=1), "optim.lr must be > 0 (got -1.0)")):
        (run / "recipe.toml").write_text(broken)
        p = cli("train", "--resume", "r", check=False, timeout=120)
        assert p.returncode == 2, p.stdout + p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and says in lines[0] and str(run / "recipe.toml") in lines[0], lines
        assert {name: (run / name).read_bytes() for name in kept} == kept
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == checkpoints
    (run / "recipe.toml").write_text(good)
    cli("train", "--resume", "r", timeout=180)
    assert status(run)["state"] == "finished"

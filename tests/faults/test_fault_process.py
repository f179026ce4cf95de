"""Process faults against the real `vittui` command and detached workers.

kill -9 at random steps, then `vittui train --resume`
    The worker is SIGKILLed at a step drawn by a seeded RNG (and a random few milliseconds later, so
    kills land inside steps, event writes and checkpoint saves). After each kill the run resumes from
    the checkpoint that `checkpoints/last.json` names (C). Expected Step sequence in events.jsonl, for
    a kill after step K had been written:

        1 .. K  (before the kill)   then   C+1, C+2, ...  (after the resume)

    so the steps C+1..K appear twice (re-done, since their updates were lost with the process) and
    nothing is missing: 0 <= K - C <= run.checkpoint_every. The re-done steps give the same losses as
    the first time (exact resume). One trial chains 10 kills on one run (slow tier only); every
    other trial also simulates a line torn by the kill, and events.jsonl still parses: the torn
    fragment stays alone on its line and every whole event decodes.

SIGTERM of the worker (ending the same run): a checkpoint at the current step, then state `stopped`,
the lock released, and that checkpoint loads.

Two controllers at once: two processes each append 50 pause/resume commands at the same moment (each
signals it is ready before either starts, and their writes are shown to overlap and interleave);
commands.jsonl holds 100 whole lines and the worker acknowledges each command id exactly once.

Disk full while writing a checkpoint: `checkpoint.save` into a small tmpfs until it fails; the previous
checkpoint is intact and loadable and no `.tmp-*` folder is left.
"""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fault_helpers import events, status, step_numbers, wait_for

from vittui.runs import control
from vittui.runs import events as ev
from vittui.runs.lock import pid_alive

CHECKPOINT_EVERY = 10
SEED = 20261125
TRIALS = 10  # kills chained on one run (a slow trial: `pytest -m slow`)


def _last_pointer(run: Path) -> int:
    return json.loads((run / "checkpoints" / "last.json").read_text())["step"]


def _wait_dead(pid: int, timeout: float = 30) -> None:
    wait_for(lambda: not pid_alive(pid), timeout=timeout, what=f"pid {pid} to exit")


def _worker_pid(run: Path, not_pid: int | None = None) -> int:
    return wait_for(lambda: (p := status(run).get("pid")) and p != not_pid and pid_alive(p) and p,
                    what="a live worker pid")


def _tear(run: Path) -> str:
    """What a SIGKILL inside write() leaves: the first half of an event, no newline."""
    line = ev.Step(step=999_999, epoch=0.0, loss=1.0, lr=1.0, grad_norm=1.0, images_per_s=1.0,
                   data_time=0.0, step_time=0.0).to_json()
    torn = line[: len(line) // 2]
    with open(run / "events.jsonl", "a") as f:
        f.write(torn)
    return torn


@pytest.mark.slow
def test_kill_9_at_random_steps_then_resume_then_sigterm(cli, tiny_process_toml, reap):
    trials = TRIALS
    rng = random.Random(SEED)
    cli("train", str(tiny_process_toml), "--detach", "--name", "k")
    run = cli.root / "k"
    pid = _worker_pid(run)
    reap.append(pid)
    losses: dict[int, float] = {}  # step -> loss the first time it was seen
    segments = []
    resumed_from = 0
    torn_lines: list[str] = []
    for trial in range(trials):
        # kill somewhere after the resume point: at least past the first checkpoint
        target = max(resumed_from + rng.randint(2, 2 * CHECKPOINT_EVERY), CHECKPOINT_EVERY + 1)
        delay = rng.uniform(0, 0.03)
        wait_for(lambda: (s := step_numbers(events(run))) and s[-1] >= target, what=f"step {target}")
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
        _wait_dead(pid)
        before = events(run)
        raw_before = (run / "events.jsonl").read_bytes()
        kill_step = step_numbers(before)[-1]
        if trial % 2 == 0:
            torn_lines.append(_tear(run))
        ckpt = _last_pointer(run)
        assert (run / "checkpoints" / f"step-{ckpt:08d}" / "state.pt").exists()
        assert 0 <= kill_step - ckpt <= CHECKPOINT_EVERY, (kill_step, ckpt)
        if trial == 0:
            assert "lost" in cli("runs").stdout  # status.json says running, but nobody is behind it

        cli("train", "--resume", "k", "--detach")
        pid = _worker_pid(run, not_pid=pid)
        reap.append(pid)
        started = wait_for(lambda: [e for e in events(run)[len(before):] if isinstance(e, ev.RunStarted)],
                           what="the resumed RunStarted")[0]
        assert started.resumed_from_step == ckpt
        after = wait_for(lambda: (s := step_numbers(events(run)[len(before):])) and len(s) >= 2 and s,
                         what="steps after the resume")
        assert after[:2] == [ckpt + 1, ckpt + 2], "the resumed run must start at the step after the checkpoint"
        assert (run / "events.jsonl").read_bytes().startswith(raw_before)  # history kept byte for byte
        segments.append((ckpt, kill_step))
        resumed_from = ckpt

    # end the last segment with SIGTERM (what a scheduler sends): checkpoint, then stopped
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: status(run).get("state") == "stopped", what="stopped after SIGTERM")
    _wait_dead(pid)
    _assert_stopped_with_checkpoint(run)
    assert "stopped" in cli("runs").stdout

    # events.jsonl parses fully: every line is a whole event except the torn fragments we injected
    lines = (run / "events.jsonl").read_text().split("\n")
    assert lines[-1] == ""
    bad = [ln for ln in lines[:-1] if ev.decode(ln) is None]
    assert bad == torn_lines, "only the torn fragments may fail to decode, each alone on its line"
    history = events(run)
    assert len(history) == len(lines) - 1 - len(torn_lines)

    # the Step sequence is the documented one: 1..K1, C1+1..K2, C2+1..K3, ..., Cn+1..end
    got = step_numbers(history)
    expected, pos = [], 0
    for ckpt, kill_step in segments:
        expected += list(range(pos + 1, kill_step + 1))
        pos = ckpt
    end = got[-1]
    expected += list(range(pos + 1, end + 1))
    assert got == expected
    extra = len(got) - len(set(got))  # lines of steps done more than once
    assert extra <= trials * CHECKPOINT_EVERY
    assert sorted(set(got)) == list(range(1, max(got) + 1))  # nothing missing

    # re-done steps repeat the first attempt exactly (weights, optimizer, RNG, data order restored)
    for e in (e for e in history if isinstance(e, ev.Step)):
        if e.step in losses:
            assert e.loss == pytest.approx(losses[e.step], rel=1e-5, abs=1e-6), e.step
        else:
            losses[e.step] = e.loss
    assert status(run)["step"] == end


def test_a_line_torn_by_a_kill_costs_no_other_event(tmp_path):
    """A tail that polled while the fragment was the last thing on disk, and a resumed writer that
    starts on a fresh line: every whole event is read once, the fragment never."""
    path = tmp_path / "events.jsonl"
    w = ev.EventWriter(path)
    for i in range(1, 4):
        w.write(ev.Log(level="info", message=f"before {i}"))
    w.close()
    live = ev.EventTail(path)
    assert len(live.poll()) == 3
    torn = ev.Log(level="info", message="torn " * 20).to_json()
    with open(path, "a") as f:
        f.write(torn[: len(torn) // 2])  # the kill
    assert live.poll() == []
    w = ev.EventWriter(path)  # the resumed worker
    w.write(ev.Log(level="info", message="after"))
    w.close()
    assert [e.message for e in live.poll()] == ["after"]
    assert [e.message for e in ev.read_all(path)] == ["before 1", "before 2", "before 3", "after"]


def _assert_stopped_with_checkpoint(run: Path) -> None:
    from vittui.train.checkpoint import find, load_state

    final = status(run)
    history = events(run)
    step = final["step"]
    assert final["state"] == "stopped"
    assert final["last_checkpoint_step"] == step == step_numbers(history)[-1]
    assert [e for e in history if isinstance(e, ev.CheckpointSaved)][-1].step == step
    assert [e for e in history if isinstance(e, ev.Status)][-1].state == "stopped"
    assert isinstance(history[-1], ev.Status)
    assert not (run / "worker.lock").exists()
    found = find(run / "checkpoints", "last")
    assert found.name == f"step-{step:08d}"
    assert load_state(found).position.step == step


_SENDER = """
import json, sys, time
from pathlib import Path
from vittui.runs import control
run, go, n, me = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4])
(me.parent / (me.name + ".ready")).touch()  # imports done: waiting on the go file
while not go.exists():
    pass
times = []
for i in range(n):
    t0 = time.time()
    control.send(run, "pause" if i % 2 == 0 else "resume")
    times.append((t0, time.time()))
    time.sleep(0.002)  # a window of ~0.1 s, so the other sender's writes land among ours
me.write_text(json.dumps(times))
"""


def test_two_controllers_at_once(cli, tiny_process_toml, tmp_path, reap):
    cli("train", str(tiny_process_toml), "--detach", "--name", "c")
    run = cli.root / "c"
    pid = _worker_pid(run)
    reap.append(pid)
    wait_for(lambda: step_numbers(events(run)), what="a first step")
    go = tmp_path / "go"
    out = [tmp_path / f"sender{k}" for k in range(2)]
    senders = [subprocess.Popen([sys.executable, "-c", _SENDER, str(run), str(go), "50", str(o)]) for o in out]
    try:
        wait_for(lambda: all(o.with_name(o.name + ".ready").exists() for o in out), timeout=120,
                 what="both senders ready")
        go.touch()
        for p in senders:
            assert p.wait(timeout=120) == 0
    finally:
        for p in senders:
            if p.poll() is None:
                p.kill()
    # the two bursts really overlapped: each began before the other ended ...
    spans = [json.loads(o.read_text()) for o in out]
    assert max(t[0][0] for t in spans) < min(t[-1][1] for t in spans), "the senders did not write at the same time"

    lines = (run / "commands.jsonl").read_text().split("\n")
    assert lines[-1] == "" and len(lines) == 101
    sent = [json.loads(ln) for ln in lines[:-1]]  # every line whole: no interleaving
    assert {c["command"] for c in sent} == {"pause", "resume"}
    assert len({c["sender"] for c in sent}) == 2
    # ... and their lines interleave in the file (sender A, then B, then A again, ...)
    switches = sum(a["sender"] != b["sender"] for a, b in zip(sent, sent[1:]))
    assert switches >= 3, f"the two senders' lines barely interleave ({switches} switches)"
    ids = [c["id"] for c in sent]
    assert len(set(ids)) == 100

    def acks():
        return [e for e in events(run) if isinstance(e, ev.ControlAck)]

    wait_for(lambda: len(acks()) >= 100, timeout=60, what="100 acknowledgements")
    stop = control.send(run, "stop")
    wait_for(lambda: status(run).get("state") == "stopped", what="stopped")
    _wait_dead(pid)
    got = acks()
    assert sorted(a.id for a in got) == sorted(ids + [stop.id])  # each exactly once
    in_order = [a for a in got if a.id != stop.id]
    assert [a.id for a in in_order] == ids  # acknowledged in the order they were written
    assert [a.command for a in in_order] == [c["command"] for c in sent]


# ------------------------------------------------------------------------------------------- disk full


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    try:
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mnt)],
                           capture_output=True, text=True, timeout=20)
    except (FileNotFoundError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"cannot mount a small filesystem: {e}")
    if p.returncode != 0:
        pytest.skip(f"cannot mount a small filesystem here: {p.stderr.strip() or p.returncode}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=20)


def _fill_with_checkpoints(ckdir: Path):
    """Save checkpoints of a small model into `ckdir` until a save fails; returns what was saved."""
    import torch
    from torch import nn

    from vittui.train import checkpoint as ckpt

    torch.manual_seed(0)
    model = nn.Linear(128, 128)  # 66 KB of weights; with the optimizer state about 200 KB a checkpoint
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 128)).sum().backward()
    opt.step()
    saved: dict[int, dict] = {}
    for step in range(1, 100):
        with torch.no_grad():
            model.weight.add_(1.0)
        state = ckpt.TrainState(optimizer=opt.state_dict(), position=ckpt.Position(step, 0, step), rng=ckpt.rng_state())
        try:
            ckpt.save(ckdir, step, model=model, state=state, keep_last=1000)
        except Exception as e:  # noqa: BLE001 - safetensors, torch.save and os each word it differently
            return model, state, saved, e
        saved[step] = {k: v.clone() for k, v in model.state_dict().items()}
    raise AssertionError("the filesystem never filled")


def test_disk_full_while_writing_a_checkpoint_keeps_the_previous_one(small_fs):
    import shutil

    import torch
    from torch import nn

    from vittui.train import checkpoint as ckpt

    ckdir = small_fs / "checkpoints"
    model, state, saved, failure = _fill_with_checkpoints(ckdir)
    assert saved, f"not even one checkpoint fit: {failure!r}"
    assert shutil.disk_usage(small_fs).free < 300_000, f"failed with room left: {failure!r}"
    assert not list(ckdir.glob(".tmp-*")), "a half-written checkpoint folder was left behind"

    prev = max(saved)
    found = ckpt.find(ckdir, "last")
    assert found is not None and found.name == f"step-{prev:08d}"
    assert ckpt.load_state(found).position.step == prev
    fresh = nn.Linear(128, 128)
    ckpt.load_weights(fresh, found)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, saved[prev][k])
    # once there is room again, saving works
    for p in sorted(ckdir.glob("step-*"))[:-1]:
        shutil.rmtree(p)
    ckpt.save(ckdir, prev + 1, model=model, state=state, keep_last=2)
    assert ckpt.find(ckdir, "last").name == f"step-{prev + 1:08d}"


def test_disk_full_while_writing_a_checkpoint_says_so(small_fs):
    from vittui.train import checkpoint as ckpt

    _, _, _, failure = _fill_with_checkpoints(small_fs / "checkpoints")
    text = str(failure)
    assert isinstance(failure, (ckpt.CheckpointError, OSError)), repr(failure)
    assert getattr(failure, "errno", None) == errno.ENOSPC or "space" in text.lower(), text

"""Two processes through `accelerate launch` on the CPU (gloo): one event stream, both ranks train,
pause and resume reach every rank, and a pause holds (the paused run answers a command and takes no step)."""

import pytest
from e2e_helpers import status, wait_for
from tiny import kill_processes, run_processes

from vittui.runs import control
from vittui.runs import events as ev


@pytest.mark.slow  # ~11 s: two processes under accelerate launch; the default tier stays under 10 minutes
def test_two_cpu_processes_train_one_run(cli, tiny_toml, tmp_path):
    # `--gpus 2` is `accelerate launch --multi_gpu --num_processes 2`; with compute.device = "cpu" every
    # process trains on the CPU and they talk through gloo
    cli("train", str(tiny_toml), "--gpus", "2", "--name", "mp", "--set", "schedule.max_steps=30",
        "--set", "run.checkpoint_every=0", "--set", "compute.device=cpu")
    run = cli.root / "mp"
    procs: list = []  # the launcher and both ranks, SIGKILLed at the end if the test left them running

    def history():
        return ev.read_all(run / "events.jsonl")

    def steps():
        return [e.step for e in history() if isinstance(e, ev.Step)]

    def ack_of(cmd):
        return wait_for(lambda: next((e for e in history() if isinstance(e, ev.ControlAck) and e.id == cmd.id), None),
                        timeout=120, what=f"the acknowledgement of {cmd.command}")

    try:
        wait_for(lambda: len(steps()) >= 3, timeout=180)
        procs += run_processes(status(run)["pid"])
        cmd = control.send(run, "pause")
        paused_at = ack_of(cmd)
        wait_for(lambda: status(run).get("state") == "paused", timeout=60)
        # the pause holds: a command sent now is answered by the paused run (every rank handled it: the
        # checkpoint is a step boundary all of them agree on), and no step came in between
        ck = ack_of(control.send(run, "checkpoint"))
        evs = history()
        between = evs[evs.index(paused_at):evs.index(ck)]
        assert [e for e in between if isinstance(e, ev.Step)] == [], "a step was taken while paused"
        assert ck.step == paused_at.step == steps()[-1]
        assert status(run).get("state") == "paused"
        # the checkpoint asked for while paused is saved at the paused step (an epoch end before the pause
        # may have saved one of its own: the pause can land after it on a busy machine)
        saved = [e for e in evs[evs.index(paused_at):] if isinstance(e, ev.CheckpointSaved)]
        assert [e.step for e in saved] == [paused_at.step]

        control.send(run, "resume")
        wait_for(lambda: status(run).get("state") in ("finished", "failed"), timeout=240)
        assert status(run)["state"] == "finished", (run / "worker.log").read_text()

        def both_ranks_done():  # rank 0 writes the status; rank 1 may print its line a moment later
            log = (run / "worker.log").read_text()
            return "rank 0/2: finished at step 30" in log and "rank 1/2: finished at step 30" in log

        wait_for(both_ranks_done, timeout=60)
        assert steps() == list(range(1, 31))  # one stream: rank 0 alone writes
        started = [e for e in history() if isinstance(e, ev.RunStarted)]
        assert len(started) == 1
        acks = [e for e in history() if isinstance(e, ev.ControlAck)]
        assert [a.command for a in acks] == ["pause", "checkpoint", "resume"] and acks[0].id == cmd.id
    finally:
        kill_processes(procs)

"""Two processes through `accelerate launch` on the CPU (gloo): one event stream, both ranks train,
pause and resume reach every rank."""

from e2e_helpers import status, wait_for

from vittui.runs import control
from vittui.runs import events as ev


def test_two_cpu_processes_train_one_run(cli, tiny_toml, tmp_path):
    # `--gpus 2` is `accelerate launch --multi_gpu --num_processes 2`; with compute.device = "cpu" every
    # process trains on the CPU and they talk through gloo
    cli("train", str(tiny_toml), "--gpus", "2", "--name", "mp", "--set", "schedule.max_steps=30",
        "--set", "run.checkpoint_every=0", "--set", "compute.device=cpu")
    run = cli.root / "mp"

    def steps():
        return [e.step for e in ev.read_all(run / "events.jsonl") if isinstance(e, ev.Step)]

    wait_for(lambda: len(steps()) >= 3, timeout=180)
    cmd = control.send(run, "pause")
    wait_for(lambda: status(run).get("state") == "paused", timeout=60)
    held = steps()[-1]
    wait_for(lambda: status(run).get("state") == "paused" and steps()[-1] == held, timeout=5)
    control.send(run, "resume")
    wait_for(lambda: status(run).get("state") in ("finished", "failed"), timeout=240)
    assert status(run)["state"] == "finished", (run / "worker.log").read_text()

    def both_ranks_done():  # rank 0 writes the status; rank 1 may print its line a moment later
        log = (run / "worker.log").read_text()
        return "rank 0/2: finished at step 30" in log and "rank 1/2: finished at step 30" in log

    wait_for(both_ranks_done, timeout=60)
    assert steps() == list(range(1, 31))  # one stream: rank 0 alone writes
    started = [e for e in ev.read_all(run / "events.jsonl") if isinstance(e, ev.RunStarted)]
    assert len(started) == 1
    acks = [e for e in ev.read_all(run / "events.jsonl") if isinstance(e, ev.ControlAck)]
    assert [a.command for a in acks] == ["pause", "resume"] and acks[0].id == cmd.id

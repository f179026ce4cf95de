"""kill -9 and exact resume under the harder settings, through the installed `vittui` command.

Each case starts a detached run (`vittui train PRESET --detach`, or `--gpus 2` for two CPU processes
under `accelerate launch`), lets it pass a checkpoint, kills the whole run with SIGKILL (its process
group: the worker, its DataLoader workers, or accelerate's launcher and both ranks) and resumes it with
`vittui train --resume RUN --detach`. Expected, for a kill after step K was written and the last
checkpoint C (`checkpoints/last.json`), C < K:

    Step events   1 .. K   then   C+1, C+2, ...      (continuous after the resume, nothing skipped)
    losses        steps C+1 .. K the second time equal the first time (rel 1e-5): weights, optimizer,
                  RNG and the data position inside the epoch were all restored

Where the kill lands: the test pauses the run at a step P past the checkpoint (retrying until P > C and
the next checkpoint is at least KILL_ROOM steps away), then sends `resume` and kills a few milliseconds later, so
the kill usually lands inside step P+1 (for `compute.accumulation = 2`, between its micro-batches) and can
never land after the next checkpoint. The epochs are long (32 batches) and C lies past the first one,
so the resumed run starts in the middle of its second epoch or later.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path

import pytest
from tiny import (TINY_PROCESS, all_gone, events, kill_processes, run_processes, status, step_numbers, tiny_recipe,
                  tiny_toml, wait_for)

from vittui.runs import control
from vittui.runs import events as ev
from vittui.runs.lock import pid_alive

CKPT = 12  # run.checkpoint_every
# the pause is taken where the next checkpoint is at least this many steps on: the kill lands "a moment" after the
# resume, and on a loaded box the tiny worker still got 4 steps done first (CI, 2026-12-01: p=38, kill at 42)
KILL_ROOM = 8
SEED = 20261201
# long epochs: 1024 training digits in batches of 32 (one epoch = 32 micro-batches)
HARD_BASE = TINY_PROCESS + [f"run.checkpoint_every={CKPT}", "data.limit=1024", "run.keep_last=3"]


def _pointer(run: Path) -> int:
    return json.loads((run / "checkpoints" / "last.json").read_text())["step"]


def _ack(run: Path, cmd_id: str, timeout: float = 120) -> ev.ControlAck:
    return wait_for(lambda: next((e for e in events(run) if isinstance(e, ev.ControlAck) and e.id == cmd_id), None),
                    timeout=timeout, what=f"the acknowledgement of {cmd_id}")


def _next_checkpoint(p: int, steps_per_epoch: int) -> int:
    """The first step after p at which the loop saves (every CKPT steps, and at every epoch end)."""
    return min((p // CKPT + 1) * CKPT, (p // steps_per_epoch + 1) * steps_per_epoch)


def _kill_resume_stop(cli, tmp_path: Path, name: str, extra: list[str], *, gpus: int = 0) -> None:
    launch = ["--gpus", str(gpus)] if gpus else ["--detach"]
    toml = tiny_toml(tmp_path / f"{name}.toml", HARD_BASE + extra)
    cli("train", str(toml), *launch, "--name", name)
    run = cli.root / name
    procs: list = []  # every process the test saw, SIGKILLed at the end whatever happens
    rng = random.Random(SEED)
    slow = 2.0 if gpus else 1.0

    def worker(not_pid: int | None = None) -> int:
        pid = wait_for(lambda: (q := status(run).get("pid")) and q != not_pid and pid_alive(q) and q,
                       timeout=120 * slow, what="a live worker pid")
        return pid

    try:
        pid = worker()
        started = wait_for(lambda: [e for e in events(run) if isinstance(e, ev.RunStarted)], timeout=180 * slow,
                           what="RunStarted")[0]
        spe = started.steps_per_epoch
        assert spe >= 2 * CKPT, f"epochs of {spe} steps: checkpoints at epoch ends would crowd the kill"
        # past the first epoch, so the resume must also get the epoch's order right (not only its position)
        wait_for(lambda: any(isinstance(e, ev.CheckpointSaved) and e.step > spe for e in events(run)),
                 timeout=180 * slow, what=f"a checkpoint in the second epoch (after step {spe})")

        # pause at a step P past the checkpoint, with the next checkpoint at least KILL_ROOM steps away
        for _ in range(40):
            p = _ack(run, control.send(run, "pause").id).step
            wait_for(lambda: status(run).get("state") == "paused", timeout=60, what="paused")
            c = _pointer(run)
            if p > c and _next_checkpoint(p, spe) >= p + KILL_ROOM:
                break
            _ack(run, control.send(run, "resume").id)
        else:
            pytest.fail("never paused at a step past a checkpoint")
        # resume and kill -9 every process of the run a moment later: usually inside step P+1
        job = run_processes(status(run)["pid"])
        procs += job
        assert os.getpid() not in [q.pid for q in job]
        control.send(run, "resume")
        time.sleep(rng.uniform(0.0, 0.03))
        kill_processes(job)
        wait_for(lambda: all_gone(job), timeout=60, what="every process of the killed run to exit")

        before = events(run)
        raw_before = (run / "events.jsonl").read_bytes()
        first = step_numbers(before)
        kill_step, ckpt = first[-1], _pointer(run)
        assert first == list(range(1, kill_step + 1))
        assert p <= kill_step and ckpt == c < kill_step, (p, c, ckpt, kill_step)
        assert (run / "checkpoints" / f"step-{ckpt:08d}" / "state.pt").exists()

        cli("train", "--resume", name, *launch)
        pid = worker(not_pid=pid)
        procs += run_processes(pid)
        resumed = wait_for(lambda: [e for e in events(run)[len(before):] if isinstance(e, ev.RunStarted)],
                           timeout=180 * slow, what="the resumed RunStarted")[0]
        assert resumed.resumed_from_step == ckpt
        wait_for(lambda: (s := step_numbers(events(run)[len(before):])) and s[-1] >= kill_step + 2,
                 timeout=180 * slow, what=f"step {kill_step + 2} after the resume")
        stop = control.send(run, "stop")
        _ack(run, stop.id)
        wait_for(lambda: status(run).get("state") == "stopped", timeout=120, what="stopped")
        procs += run_processes(pid)
        wait_for(lambda: all_gone(procs), timeout=120, what="the resumed run to exit")
        assert (run / "events.jsonl").read_bytes().startswith(raw_before)  # the history kept byte for byte

        history = events(run)
        again = [e for e in history[len(before):] if isinstance(e, ev.Step)]
        assert [e.step for e in again] == list(range(ckpt + 1, ckpt + 1 + len(again))), \
            "the resumed run must continue at the step after the checkpoint, every step once"
        first_time = {e.step: e for e in before if isinstance(e, ev.Step)}
        redone = [e for e in again if e.step <= kill_step]
        assert [e.step for e in redone] == list(range(ckpt + 1, kill_step + 1))
        for e in redone:  # exact resume: the re-done steps repeat the first attempt
            was = first_time[e.step]
            assert e.loss == pytest.approx(was.loss, rel=1e-5, abs=1e-7), \
                f"step {e.step}: loss {e.loss!r} after the resume, {was.loss!r} the first time"
            assert e.lr == pytest.approx(was.lr, rel=1e-6), f"step {e.step}: lr"
            assert e.grad_norm == pytest.approx(was.grad_norm, rel=1e-4, abs=1e-6), f"step {e.step}: grad norm"
    finally:
        if pid_alive(last := status(run).get("pid") or 0):
            procs += run_processes(last)
        kill_processes(procs)


@pytest.mark.slow  # ~17 s, like the other hard resumes; the default tier stays under 10 minutes on 2 cores
def test_resume_exactly_with_gradient_accumulation(cli, tmp_path):
    """compute.accumulation = 2: a checkpoint at an optimizer step, the kill between micro-batches."""
    # batches of 16: two micro-batches a step keep 32 optimizer steps an epoch, room for KILL_ROOM
    _kill_resume_stop(cli, tmp_path, "accum", ["compute.accumulation=2", "data.batch_size=16"])


@pytest.mark.parametrize("workers", [2, 0])
def test_per_image_seeds_repeat_an_epoch_from_any_batch(workers):
    """The crops drawn for an image depend only on (seed, epoch, position) once the loader is seeded per
    image: a fresh loader that starts epoch 1 at batch 3 (what a resumed run builds) gives the same
    tensors as batches 3.. of a loader that went through epoch 0 first (the run before the kill).
    workers=2: DataLoader workers (make_loader seeds them); workers=0 with `seed_per_image`: what the
    loop does under several processes, where accelerate reads a batch ahead of the checkpoint. Random
    erasing is on, so the collate's per-batch draws are covered too."""
    import torch

    from vittui.data.samplers import iterate_from, seed_per_image
    from vittui.data.sources import build_data

    recipe = tiny_recipe(f"data.num_workers={workers}", "data.limit=96", "data.batch_size=16", "augment.re_prob=0.5")

    def loader():
        train_loader = build_data(recipe).train_loader
        seed_per_image(train_loader)  # make_loader already did when workers > 0
        return train_loader

    first = loader()
    rng = torch.get_rng_state()
    epoch0 = [(x, y) for x, y, _ in iterate_from(first, 0, 0)]
    if workers == 0:  # in the main process the training RNG (the one checkpoints save) is left alone
        assert torch.equal(torch.get_rng_state(), rng), "loading a batch moved the training RNG"
    epoch1 = [(x, y) for x, y, _ in iterate_from(first, 1, 0)]
    resumed = [(x, y) for x, y, _ in iterate_from(loader(), 1, 3)]
    assert len(epoch0) == len(epoch1) == 6 and len(resumed) == 3
    for k, ((x, y), (rx, ry)) in enumerate(zip(epoch1[3:], resumed), start=3):
        assert torch.equal(y, ry), f"batch {k}: other images"
        assert torch.equal(x, rx), f"batch {k}: other crops after the restart"
    # the crops are random (so the check above is not trivially true): the same image crops differently
    # in epochs 0 and 1
    assert not torch.equal(torch.cat([x for x, _ in epoch0]).sum(0), torch.cat([x for x, _ in epoch1]).sum(0))


@pytest.mark.slow
def test_resume_exactly_with_two_dataloader_workers(cli, tmp_path):
    """data.num_workers = 2: augmentation runs in DataLoader worker processes, whose RNG the
    checkpoint cannot hold; resume must still repeat the same crops."""
    _kill_resume_stop(cli, tmp_path, "workers", ["data.num_workers=2"])


@pytest.mark.slow
def test_resume_exactly_with_lora(cli, tmp_path):
    """adapt.lora = true (with LoRA dropout, so the adapters draw from the RNG too)."""
    _kill_resume_stop(cli, tmp_path, "lora", ["adapt.lora=true", "adapt.lora_dropout=0.1"])


@pytest.mark.slow
def test_resume_exactly_with_two_processes(cli, tmp_path):
    """`--gpus 2` with compute.device = "cpu": two ranks under accelerate (gloo); only rank 0 saves,
    and the resume skips the first batches of each rank's shard. With mixup and drop-path, which each rank
    draws for itself (seeded per rank and step, train/build.py `seed_step`): the checkpoint holds rank 0's
    RNG only, yet rank 1's draws after the resume must repeat too, or the mean loss would differ."""
    # batches of 16: each rank gets half the epoch, and 32 steps an epoch leave room for KILL_ROOM
    _kill_resume_stop(cli, tmp_path, "mp", ["compute.device=cpu", "data.batch_size=16", "augment.mixup=0.8",
                                            "regularize.drop_path=0.1"], gpus=2)

"""Real jobs on a Slurm cluster (a one-node one from .ci/slurm_up.sh in CI): a run submitted with
`--executor slurm` trains to the end and lists its job; pause and resume reach it through `vittui ctl`;
`scancel --signal=TERM` then `scontrol requeue` continues it exactly; `ctl resume` resubmits a stopped one."""

from __future__ import annotations

import json
import math
import subprocess

import pytest
from slurm_helpers import acks, job_ids, losses, squeue_state, start_requeued_now
from tiny import TINY_PROCESS, events, kill_if_alive, status, step_numbers, tiny_toml, wait_for

from vittui.runs import events as ev

pytestmark = pytest.mark.slurm

STEPS = 60
RECIPE = TINY_PROCESS + [f"schedule.max_steps={STEPS}", "run.checkpoint_every=1000"]


def submit(cli, toml, name: str, jobs: list[str]) -> str:
    """`vittui train --executor slurm`; the job id it printed (checked against executor.json)."""
    out = cli("train", str(toml), "--executor", "slurm", "--name", name).stdout
    jobs.extend(job_ids(cli.root / name))
    assert f"submitted {name} as slurm job {jobs[-1]}" in out, out
    return jobs[-1]


def listed(cli, name: str) -> dict:
    return next(r for r in json.loads(cli("runs", "--json").stdout) if r["name"] == name)


@pytest.mark.slow  # three job starts: ~70 s on a busy 2-core box
def test_submitted_run_trains_lists_its_job_pauses_suspends_and_resumes_through_ctl(cli, tmp_path, slurm_cluster):
    # longer than the other tests: between the resume's ack and the next pause arriving (a vittui process
    # start, seconds on a loaded box) the tiny worker once ran to the end of 60 steps (CI, 2026-12-01)
    steps = 5 * STEPS
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS + [f"schedule.max_steps={steps}", "run.checkpoint_every=1000"])
    job = submit(cli, toml, "s", slurm_cluster)
    run = cli.root / "s"
    assert (run / "slurm.sbatch").exists() and json.loads((run / "executor.json").read_text())["job_id"] == job
    row = listed(cli, "s")
    assert row["job_id"] == job and row["executor"] == "slurm"
    assert row["state"] in ("queued", "starting", "running"), row  # whatever Slurm got to by now
    if row["state"] == "queued":
        assert row["job_state"] in ("PENDING", "CONFIGURING"), row

    wait_for(lambda: len(step_numbers(events(run))) >= 3, timeout=180, what="steps under slurm")
    assert squeue_state(job) == "RUNNING"
    row = listed(cli, "s")
    assert (row["state"], row["job_state"], row["job_id"]) == ("running", "RUNNING", job), row

    out = cli("ctl", "s", "pause", "--wait", "60").stdout
    assert "pause took effect at step" in out
    wait_for(lambda: status(run).get("state") == "paused", what="paused")
    held = status(run)["step"]
    assert listed(cli, "s")["state"] == "paused"
    [queued] = json.loads(cli("queue", "--json").stdout)["runs"]  # `vittui queue` lists the Slurm run too
    assert (queued["name"], queued["state"], queued["executor"], queued["job_id"], queued["job_state"]) == (
        "s", "paused", "slurm", job, "RUNNING"), queued
    out = cli("ctl", "s", "resume", "--wait", "60").stdout
    assert "resume took effect at step" in out
    said = [(a.command, a.step) for a in acks(run)]
    assert said == [("pause", held), ("resume", held)], said

    # suspend (paused first, so it lands before the end whatever the machine's speed): the worker
    # checkpoints and exits, so does the job; `ctl resume` submits a new job
    wait_for(lambda: status(run).get("step", 0) > held, what="steps after resume")
    cli("ctl", "s", "pause", "--wait", "60")
    out = cli("ctl", "s", "suspend", "--wait", "60").stdout
    assert "suspend took effect at step" in out
    wait_for(lambda: status(run).get("state") == "suspended", timeout=60, what="suspended")
    wait_for(lambda: squeue_state(job) == "COMPLETED", timeout=60, what="the suspended job to end")
    at = status(run)["step"]
    assert at < steps and listed(cli, "s")["state"] == "suspended"
    out = cli("ctl", "s", "resume").stdout
    slurm_cluster.extend(job_ids(run))
    new = job_ids(run)[-1]
    assert new != job and f"resubmitted s (suspended) as slurm job {new}" in out, out

    wait_for(lambda: status(run).get("state") == "finished", timeout=240, what="the slurm run to finish")
    assert step_numbers(events(run)) == list(range(1, steps + 1))
    assert [e.resumed_from_step for e in events(run) if isinstance(e, ev.RunStarted)] == [0, at]
    wait_for(lambda: squeue_state(new) == "COMPLETED", timeout=60, what="the job to complete")
    row = listed(cli, "s")
    assert (row["state"], row["job_id"], row["job_state"]) == ("finished", new, "COMPLETED"), row
    assert f"vittui: slurm job {job}" in (run / "worker.log").read_text()
    assert f"vittui: slurm job {new}" in (run / "worker.log").read_text()


def pause_then_term(cli, run, name: str, job: str, after: int) -> int:
    """Pause once `after` steps are logged (so the signal lands well before the end whatever the machine's
    speed), then send the job SIGTERM as preemption does; the step the worker stopped and checkpointed at."""
    wait_for(lambda: len(step_numbers(events(run))) >= after, timeout=180, what=f"{after} steps under slurm")
    cli("ctl", name, "pause", "--wait", "60")
    subprocess.run(["scancel", "--signal=TERM", job], check=True, timeout=30)
    wait_for(lambda: status(run).get("state") == "stopped", timeout=60, what="stopped by SIGTERM")
    wait_for(lambda: squeue_state(job) == "COMPLETED", timeout=60, what=f"job {job} to end")
    at = status(run)["step"]
    assert after <= at < LONG and status(run)["last_checkpoint_step"] == at
    return at


LONG = 60


@pytest.mark.slow  # three job starts and a foreground run: ~2 min on a busy 2-core box
def test_term_then_requeue_resumes_exactly_and_a_stopped_run_resubmits(cli, tmp_path, slurm_cluster):
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS + [f"schedule.max_steps={LONG}", "run.checkpoint_every=1000"])
    cli("train", str(toml), "--name", "straight", timeout=300)  # the uninterrupted run, in the foreground
    straight = losses(cli.root / "straight")
    assert sorted(straight) == list(range(1, LONG + 1))

    job = submit(cli, toml, "p", slurm_cluster)
    run = cli.root / "p"
    first = pause_then_term(cli, run, "p", job, after=5)

    # preemption's way back: Slurm requeues the same job; its script resumes from the checkpoint on disk
    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    wait_for(lambda: listed(cli, "p")["state"] == "queued", timeout=30, what="queued while the job is pending")
    assert listed(cli, "p")["job_state"] == "PENDING"
    start_requeued_now(job)
    second = pause_then_term(cli, run, "p", job, after=first + 5)
    assert "(restart 1) on" in (run / "worker.log").read_text()

    # a stopped Slurm run back in line: `train --resume RUN --queue` resubmits it with sbatch, as a new job
    # (`ctl RUN resume` does the same: the test above)
    out = cli("train", "--resume", "p", "--queue").stdout
    slurm_cluster.extend(job_ids(run))
    new = job_ids(run)[-1]
    assert new != job and f"resubmitted p as slurm job {new}" in out, out
    wait_for(lambda: status(run).get("state") == "finished", timeout=240, what="the resubmitted job to finish")

    assert step_numbers(events(run)) == list(range(1, LONG + 1))  # no gap, nothing done twice
    assert [e.resumed_from_step for e in events(run) if isinstance(e, ev.RunStarted)] == [0, first, second]
    resumed = losses(run)
    for step in range(1, LONG + 1):
        assert math.isclose(resumed[step], straight[step], rel_tol=1e-6), (step, resumed[step], straight[step])
    p = cli("ctl", "p", "resume", check=False)  # finished: nothing to resume
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "finished" in p.stderr


def test_a_pending_job_is_queued_and_stop_cancels_it(cli, tmp_path, slurm_cluster):
    """A job held back (`--begin` an hour ahead, through the config's extra sbatch lines) stays PENDING: the
    run is `queued` with Slurm's state; `ctl stop` cancels the job, and the run is stopped, not lost."""
    toml = tiny_toml(tmp_path / "tiny.toml", RECIPE)
    config = tmp_path / "slurm.toml"
    config.write_text('time = "10"\ncpus = 1\nsbatch = ["--begin=now+1hour", "--comment=vittui-test"]\n')
    out = cli("train", str(toml), "--executor", "slurm", "--slurm-config", str(config), "--name", "w").stdout
    run = cli.root / "w"
    slurm_cluster.extend(job_ids(run))
    job = slurm_cluster[-1]
    assert f"slurm job {job}" in out
    script = (run / "slurm.sbatch").read_text()
    assert "#SBATCH --begin=now+1hour" in script and "#SBATCH --time=10" in script
    assert squeue_state(job) == "PENDING"
    row = listed(cli, "w")
    assert (row["state"], row["job_id"], row["job_state"]) == ("queued", job, "PENDING"), row
    text = cli("runs").stdout
    assert f"queued (slurm {job} PENDING)" in text, text
    [queued] = json.loads(cli("queue", "--json").stdout)["runs"]  # waiting in Slurm's queue, not this box's
    assert (queued["name"], queued["state"], queued["position"], queued["job_id"], queued["job_state"]) == (
        "w", "queued", None, job, "PENDING"), queued
    assert f"(slurm {job} PENDING)" in cli("queue").stdout

    p = cli("ctl", "w", "pause", check=False)  # no worker yet: nothing to pause
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "queued" in p.stderr
    out = cli("ctl", "w", "stop").stdout
    assert f"cancelled slurm job {job}" in out
    wait_for(lambda: squeue_state(job) == "CANCELLED", timeout=30, what="the job cancelled")
    row = listed(cli, "w")
    assert (row["state"], row["job_state"]) == ("stopped", "CANCELLED"), row
    assert not (run / "worker.log").exists() or "vittui: slurm job" not in (run / "worker.log").read_text()
    for resume in (["ctl", "w", "resume"], ["train", "--resume", "w", "--queue"]):
        p = cli(*resume, check=False)  # never trained: no checkpoint to continue from
        assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "no checkpoint" in p.stderr
    assert job_ids(run) == [job]  # nothing resubmitted


@pytest.mark.slow  # two job starts: ~60 s on a busy 2-core box
def test_a_job_requeued_before_its_first_checkpoint_starts_over(cli, tmp_path, slurm_cluster):
    """The worker killed outright (SIGKILL, no checkpoint written) is `lost` once its job ends; requeued, the job
    starts the run over from step 0 and the history keeps one pass, the same losses as the first
    (the seed fixes both)."""
    # an epoch longer than the run: no epoch-end checkpoint before the kill
    toml = tiny_toml(tmp_path / "tiny.toml", RECIPE + ["data.limit=1500"])
    job = submit(cli, toml, "k", slurm_cluster)
    run = cli.root / "k"
    wait_for(lambda: len(step_numbers(events(run))) >= 3, timeout=180, what="steps under slurm")
    kill_if_alive(status(run)["pid"])  # as a node crash would: no signal handler runs (scancel's KILL sends TERM first)
    wait_for(lambda: squeue_state(job) not in ("RUNNING", "COMPLETING", ""), timeout=60, what="the killed job to end")
    first = losses(run)
    assert not any(run.glob("checkpoints/step-*/state.pt"))
    assert listed(cli, "k")["state"] == "lost"

    subprocess.run(["scontrol", "requeue", job], check=True, timeout=30)
    start_requeued_now(job)
    wait_for(lambda: status(run).get("state") == "finished", timeout=240, what="the requeued job to finish")
    starts = [e for e in events(run) if isinstance(e, ev.RunStarted)]
    assert [e.resumed_from_step for e in starts] == [0, 0]
    said = [e.message for e in events(run) if isinstance(e, ev.Log)]
    assert any("no checkpoint yet: starting over from step 0" in m for m in said), said  # the worker knew
    redone = [e for e in events(run)[events(run).index(starts[-1]):] if isinstance(e, ev.Step)]
    assert [e.step for e in redone] == list(range(1, STEPS + 1))
    for e in redone[:len(first)]:
        assert math.isclose(e.loss, first[e.step], rel_tol=1e-6), (e.step, e.loss, first[e.step])
    from vittui.runs.history import RunHistory

    history = RunHistory()
    history.feed(events(run))
    assert history.step == STEPS and history.resumes == [0]


@pytest.mark.slow  # two job starts and a foreground run: ~2 min on a busy 2-core box
def test_the_time_limit_signal_checkpoints_and_the_job_requeues_itself(cli, tmp_path, slurm_cluster):
    """`--signal=USR1@N` is what Slurm sends N seconds before a job's time limit; `scancel --signal=USR1`
    sends the same signal to the same job steps now. The worker checkpoints and ends `suspended` with the
    reason, the job script requeues its own job (no user, no `ctl resume`), and the next job continues the
    run exactly: the losses of an uninterrupted run."""
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS + [f"schedule.max_steps={LONG}", "run.checkpoint_every=1000"])
    cli("train", str(toml), "--name", "straight", timeout=300)
    straight = losses(cli.root / "straight")

    job = submit(cli, toml, "t", slurm_cluster)
    run = cli.root / "t"
    assert "#SBATCH --signal=USR1@120" in (run / "slurm.sbatch").read_text()
    wait_for(lambda: len(step_numbers(events(run))) >= 5, timeout=180, what="5 steps under slurm")
    cli("ctl", "t", "pause", "--wait", "60")  # so the signal lands well before the end on any machine
    subprocess.run(["scancel", "--signal=USR1", job], check=True, timeout=30)
    wait_for(lambda: "requeueing slurm job" in (run / "worker.log").read_text(), timeout=60,
             what="the script to requeue its job")
    said = [e for e in events(run) if isinstance(e, ev.Status) and e.state == "suspended"]
    assert len(said) == 1 and f"slurm job {job}'s time limit is near" in said[0].reason, said
    at = said[0].step
    assert 5 <= at < LONG and status(run)["last_checkpoint_step"] == at
    wait_for(lambda: squeue_state(job) == "PENDING", timeout=60, what="the job back in Slurm's queue")
    row = listed(cli, "t")
    assert (row["state"], row["job_id"], row["job_state"]) == ("queued", job, "PENDING"), row
    start_requeued_now(job)
    wait_for(lambda: status(run).get("state") == "finished", timeout=240, what="the requeued job to finish")

    assert job_ids(run) == [job]  # the same job, requeued: nothing resubmitted
    assert "(restart 1) on" in (run / "worker.log").read_text()
    assert step_numbers(events(run)) == list(range(1, LONG + 1))
    assert [e.resumed_from_step for e in events(run) if isinstance(e, ev.RunStarted)] == [0, at]
    resumed = losses(run)
    for step in range(1, LONG + 1):
        assert math.isclose(resumed[step], straight[step], rel_tol=1e-6), (step, resumed[step], straight[step])


@pytest.mark.slow  # waits for Slurm's own clock: the signal comes 30-90 s after the start, then a requeue
def test_a_real_time_limit_signals_the_worker_and_the_job_requeues_itself(cli, tmp_path, slurm_cluster):
    """No scancel this time: a job with a 3-minute limit and `signal_seconds = 90` is signalled by Slurm itself
    (up to 60 s earlier than asked: Slurm's timer is coarse). The paused worker checkpoints and ends
    `suspended`, the job script requeues the job, and the same job finishes the run with every step once."""
    toml = tiny_toml(tmp_path / "tiny.toml", TINY_PROCESS + [f"schedule.max_steps={LONG}", "run.checkpoint_every=1000"])
    config = tmp_path / "slurm.toml"
    config.write_text('time = "00:03:00"\nsignal_seconds = 90\ncpus = 1\n')
    out = cli("train", str(toml), "--executor", "slurm", "--slurm-config", str(config), "--name", "tl").stdout
    run = cli.root / "tl"
    slurm_cluster.extend(job_ids(run))
    job = job_ids(run)[-1]
    assert f"submitted tl as slurm job {job}" in out, out
    assert "#SBATCH --time=00:03:00" in (run / "slurm.sbatch").read_text()
    wait_for(lambda: len(step_numbers(events(run))) >= 5, timeout=180, what="5 steps under slurm")
    cli("ctl", "tl", "pause", "--wait", "60")  # it would finish 60 steps long before any time limit
    wait_for(lambda: "requeueing slurm job" in (run / "worker.log").read_text(), timeout=200,
             what="Slurm's own SIGUSR1 before the time limit, and the script's requeue")
    said = [e for e in events(run) if isinstance(e, ev.Status) and e.state == "suspended"]
    assert len(said) == 1 and f"slurm job {job}'s time limit is near" in said[0].reason, said
    at = said[0].step
    assert status(run)["last_checkpoint_step"] == at
    wait_for(lambda: squeue_state(job) == "PENDING", timeout=60, what="the job back in Slurm's queue")
    start_requeued_now(job)
    wait_for(lambda: status(run).get("state") == "finished", timeout=240, what="the requeued job to finish")
    assert job_ids(run) == [job]
    assert step_numbers(events(run)) == list(range(1, LONG + 1))
    assert [e.resumed_from_step for e in events(run) if isinstance(e, ev.RunStarted)] == [0, at]

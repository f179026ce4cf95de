"""Two ranks (`accelerate launch`, gloo on the CPU) must not draw alike: with one seed for all, every rank
would mix its batch with the same mixup lambda and drop the same paths. Each rank seeds from (run.seed, rank,
step) before every step (train/build.py `seed_step`), so the draws differ between ranks and repeat from run
to run; the worker's RNG trace (VITTUI_TEST_RNG_TRACE, read-only digests of each rank's RNG states at every
loss) shows both. That a kill -9 and resume repeats them is tests/faults/test_resume_hard.py's two-process case."""

from __future__ import annotations

import os
import subprocess

import pytest
from tiny import TINY_PROCESS, status

from vittui.recipe import Recipe
from vittui.runs.launcher import prepare_run, worker_command
from vittui.train.faults import TRACE_ENV

STEPS = 6


def _traced_run(root, name, trace):
    recipe = Recipe().with_overrides(TINY_PROCESS + [
        f"schedule.max_steps={STEPS}", "run.checkpoint_every=0", "run.probe_every=0", "compute.device=cpu",
        "augment.mixup=0.8", "regularize.drop_path=0.1", "run.seed=11"])
    run = prepare_run(recipe, root, name)
    trace.mkdir()
    p = subprocess.run(worker_command(run, gpus=2), capture_output=True, text=True, timeout=300,
                       env={**os.environ, TRACE_ENV: str(trace)})
    assert p.returncode == 0 and status(run.path)["state"] == "finished", p.stdout + p.stderr
    return [[line.split() for line in (trace / f"rank{r}.txt").read_text().splitlines()] for r in (0, 1)]


@pytest.mark.slow  # two launches of two processes: ~40 s on 2 cores
def test_each_rank_draws_its_own_and_again_on_a_rerun(tmp_path):
    first = _traced_run(tmp_path / "runs", "a", tmp_path / "trace-a")
    rank0, rank1 = first
    assert [int(r[0]) for r in rank0] == [int(r[0]) for r in rank1] == list(range(1, STEPS + 1))
    for a, b in zip(rank0, rank1):
        assert a[1] != b[1] and a[2] != b[2], f"step {a[0]}: both ranks' torch / NumPy RNGs stand alike"
    assert _traced_run(tmp_path / "runs", "b", tmp_path / "trace-b") == first  # the same draws, rank by rank

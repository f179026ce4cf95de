"""The driver without workers: the executor is replaced by one that writes a finished run at once (its
evals chosen by the test), so ask → enqueue → tell runs in a second. And a restart on a study a killed
driver left behind: a run that finished meanwhile is told COMPLETE, a run never made and a lost run are told
FAIL, nothing is told twice, and asking resumes until the study holds N."""

from __future__ import annotations

import os

import optuna
import pytest
from fakerun import FakeRun

from vittui.recipe import load_preset
from vittui.runs import events as ev
from vittui.runs.launcher import prepare_run
from vittui.sweep import driver
from vittui.sweep.driver import SweepConfig, drive, trial_run_name
from vittui.sweep.space import parse_space
from vittui.sweep.storage import default_storage, owner_id


def finished_with_evals(run, top1s) -> None:
    w = ev.EventWriter(run.events_path)
    for i, t in enumerate(top1s, 1):
        w.write(ev.Eval(step=5 * i, epoch=float(i), loss=1.0, top1=t, top5=100.0))
    w.close()
    st = run.read_status()
    st.state, st.step = "finished", 5 * len(top1s)
    run.write_status(st)


@pytest.fixture
def cfg(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    base = load_preset("demo-digits")
    space = parse_space({"optim": {"lr": {"low": 1e-4, "high": 1e-2, "log": True}}}, base)
    return SweepConfig(recipe=base, space=space, runs_root=root, study="d", storage=default_storage(root),
                       n_trials=5, sampler="random", pruner="none", seed=1, poll_s=0.01)


@pytest.fixture
def instant(monkeypatch):
    """Enqueue = a run directory that has already finished, with evals [10, 30, 20] (best 30)."""
    made = []

    def enqueue(recipe, runs_root, name, tags, *, executor="local", slurm_config=None):
        run = prepare_run(recipe, runs_root, name)
        tags.write(run)
        finished_with_evals(run, [10.0, 30.0, 20.0])
        made.append((name, recipe.optim.lr))
        return run

    monkeypatch.setattr(driver, "enqueue_trial", enqueue)
    return made


def test_asks_enqueues_and_tells_the_best_eval(cfg, instant):
    out = drive(cfg, say=lambda line: None)
    study = optuna.load_study(study_name="d", storage=cfg.storage)
    assert [(t.number, t.state.name, t.value) for t in study.trials] == [(i, "COMPLETE", 30.0) for i in range(5)]
    assert [name for name, _ in instant] == [trial_run_name("d", i) for i in range(5)]
    assert [lr for _, lr in instant] == [t.params["optim.lr"] for t in study.trials]  # the sampled value trained
    assert out.started == list(range(5)) and sorted(out.told) == list(range(5))


def test_restart_tells_what_ended_fails_what_is_gone_and_reaches_n(cfg, instant):
    study = optuna.create_study(study_name="d", storage=cfg.storage, direction="maximize")
    me = owner_id(cfg.runs_root)
    left = [study.ask() for _ in range(4)]  # four trials a killed driver had running
    for t in left:
        t.set_user_attr("owner", me)
        t.suggest_float("optim.lr", 1e-4, 1e-2, log=True)
    done = prepare_run(cfg.recipe, cfg.runs_root, trial_run_name("d", 0))  # finished while no driver watched
    finished_with_evals(done, [40.0, 50.0])
    lost = FakeRun(cfg.runs_root, name=trial_run_name("d", 2), pid=2**22 + 7)  # its worker was killed: no pid
    lost.close()
    unqueued = FakeRun(cfg.runs_root, name=trial_run_name("d", 3), state="queued", pid=0)  # made, never in line
    unqueued.close()
    # trial 1's run was never made (the driver died between asking and enqueueing)
    lines = []
    out = drive(cfg, say=lines.append)
    study = optuna.load_study(study_name="d", storage=cfg.storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE", "FAIL", "FAIL", "FAIL", "COMPLETE"]
    assert study.trials[0].value == 50.0
    assert study.trials[1].user_attrs["ended"] == "its run d-t0001 was never made"
    assert study.trials[2].user_attrs["ended"] == "d-t0002 lost"
    assert study.trials[3].user_attrs["ended"] == "d-t0003 never joined the queue"
    assert out.started == [4] and sorted(out.told) == [0, 1, 2, 3, 4]
    assert len(lines) == len(set(lines))
    assert sorted(p.name for p in cfg.runs_root.iterdir() if p.is_dir()) == [trial_run_name("d", i) for i in
                                                                              (0, 2, 3, 4)]
    assert not os.path.exists(cfg.runs_root / "d-t0000-2")


def test_a_trial_asked_past_n_is_surplus_never_run(cfg, instant, monkeypatch):
    """Two drivers count N-1 at once and both ask: the trial numbered N is told FAIL, marked surplus, never
    run, and left out of the count (another driver's two trials stand in for the race)."""
    cfg.n_trials = 2
    study = driver.open_study(cfg)
    study.ask()
    study.ask()
    monkeypatch.setattr(driver, "open_study", lambda c: study)
    real_counted = driver.counted
    calls = []

    def counted(trials):  # the first count misses the other driver's trials: we ask
        calls.append(1)
        return [] if len(calls) == 1 else real_counted(trials)

    monkeypatch.setattr(driver, "counted", counted)
    drive(cfg, say=lambda line: None)
    (surplus,) = [t for t in study.get_trials() if t.user_attrs.get("surplus")]
    assert surplus.number == 2 and surplus.state.name == "FAIL" and instant == []
    assert len(real_counted(study.get_trials())) == 2


def _first_values(cfg, n: int = 4) -> list[float]:
    study = optuna.create_study(sampler=driver.make_sampler(cfg, 0))
    return [study.ask().suggest_float("x", 0.0, 1.0) for _ in range(n)]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_one_seed_on_two_boxes_of_a_shared_study_draws_apart(cfg, tmp_path, sampler):
    """The README's one command on two boxes (one PostgreSQL study, a runs folder each) with one --seed: the
    boxes must not draw the same values; the runs folder's own SQLite study stays reproducible by its seed."""
    from dataclasses import replace

    shared = "postgresql://postgres@127.0.0.1:5432/optuna"
    boxes = [replace(cfg, sampler=sampler, storage=shared, runs_root=tmp_path / f"box{i}") for i in (1, 2)]
    assert _first_values(boxes[0]) != _first_values(boxes[1])
    assert _first_values(boxes[0]) == _first_values(replace(boxes[0]))  # a rerun on the same box: the same
    local = [replace(cfg, sampler=sampler, runs_root=tmp_path / f"box{i}", storage=default_storage(tmp_path / f"box{i}"))
             for i in (1, 2)]
    assert _first_values(local[0]) == _first_values(local[1])  # its own study: the seed alone decides

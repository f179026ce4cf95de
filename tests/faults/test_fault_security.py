"""Security faults: a checkpoint cannot run code, and a run's files are the owner's alone.

A crafted `state.pt` whose pickle would create a marker file (through `__reduce__`) is refused by
`checkpoint.load_state` with CheckpointError and the marker never appears — both when called directly
and when a worker resumes from it. Inside each test the same file is first shown to be live (an unsafe
`torch.load` of it does create the marker), so a refusal is vittui's and not an inert payload's.

Permissions: under `os.umask(0)` a run directory and its control files are 0700/0600, and so is every
file and folder a real (in-process) training run writes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import torch
from fault_helpers import TINY_INPROC

from vittui.recipe import Recipe
from vittui.runs import control
from vittui.runs import events as ev
from vittui.runs.launcher import prepare_run
from vittui.train import checkpoint as ckpt


class _Payload:
    """Unpickling this calls open(marker, 'w'): the file appearing means code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _crafted_state(path: Path, marker: Path) -> None:
    state = {"optimizer": {}, "position": {"step": 1, "epoch": 0, "batch": 1}, "rng": {}, "evil": _Payload(marker)}
    torch.save(state, path)


def _assert_live(path: Path, marker: Path) -> None:
    """Precondition: this very file runs code under an unsafe `torch.load`, so a refusal below means
    vittui refused, not that the payload was inert. The marker is removed again afterwards."""
    torch.load(path, weights_only=False)
    assert marker.exists(), "the crafted payload is inert: the test would prove nothing"
    marker.unlink()


def test_load_state_refuses_a_crafted_pickle(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "checkpoints" / "step-00000001"
    folder.mkdir(parents=True)
    _crafted_state(folder / "state.pt", marker)
    _assert_live(folder / "state.pt", marker)
    with pytest.raises(ckpt.CheckpointError, match="refusing to load"):
        ckpt.load_state(folder)
    assert not marker.exists()


def test_load_state_uses_weights_only(tmp_path, monkeypatch):
    seen = {}
    real = torch.load

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    folder = tmp_path / "c"
    folder.mkdir()
    torch.save({"optimizer": {}, "position": {"step": 3, "epoch": 0, "batch": 3}, "rng": {"torch": torch.get_rng_state()}},
               folder / "state.pt")
    monkeypatch.setattr(torch, "load", spy)
    assert ckpt.load_state(folder).position.step == 3  # plain containers and tensors still load
    assert seen.get("weights_only") is True


def test_an_older_state_loads_with_the_defaults_of_what_it_lacks(tmp_path):
    """A checkpoint from before early stopping, the spike rule and the live lr knob: the metrics fall back to
    top-1, the rest to their defaults (checkpoint.TrainState.from_dict); a state with no position is refused."""
    folder = tmp_path / "old"
    folder.mkdir()
    torch.save({"optimizer": {"state": {}}, "position": {"step": 7, "epoch": 1, "batch": 2}, "rng": {},
                "best_top1": 81.5, "last_top1": 80.0}, folder / "state.pt")
    s = ckpt.load_state(folder)
    assert (s.position, s.best_metric, s.last_metric) == (ckpt.Position(7, 1, 2), 81.5, 80.0)
    assert (s.early_stop, s.divergence, s.lr_multiplier, s.scaler) == (None, None, 1.0, None)
    torch.save({"optimizer": {}, "rng": {}}, folder / "state.pt")
    with pytest.raises(ckpt.CheckpointError, match="is not a vittui training state"):
        ckpt.load_state(folder)


def test_a_state_round_trips_through_state_pt(tmp_path):
    state = ckpt.TrainState(optimizer={"state": {}, "param_groups": []}, position=ckpt.Position(12, 2, 4),
                            rng=ckpt.rng_state(), best_top1=90.0, last_top1=88.0, best_metric=0.31, last_metric=0.35,
                            early_stop={"best": 0.31, "bad_evals": 1}, divergence={"mean": 1.2, "weight": 0.9, "seen": 12},
                            lr_multiplier=0.5, scaler={"scale": 1024.0})
    folder = ckpt.save(tmp_path / "checkpoints", 12, model=torch.nn.Linear(2, 2), state=state, keep_last=2)
    back = ckpt.load_state(folder)
    assert back.rng["torch"].equal(state.rng["torch"])
    assert {k: v for k, v in back.to_dict().items() if k != "rng"} == {k: v for k, v in state.to_dict().items() if k != "rng"}


def _inproc_recipe(**extra) -> Recipe:
    over = {"data.source": "digits", "data.limit": 64, "data.batch_size": 16, "schedule.max_steps": 3,
            "run.checkpoint_every": 2}
    over.update(extra)
    return Recipe().with_overrides(TINY_INPROC).with_overrides(over)


def test_resuming_from_a_crafted_checkpoint_fails_without_running_it(tmp_path):
    from vittui.train.loop import train
    from vittui.train.worker import run_worker

    recipe = _inproc_recipe()
    run = prepare_run(recipe, tmp_path / "runs", "evil")
    train(recipe, run.path)
    last = ckpt.find(run.checkpoints, "last")
    marker = tmp_path / "pwned"
    _crafted_state(last / "state.pt", marker)
    _assert_live(last / "state.pt", marker)
    assert run_worker(run.path, resume=True) == 1
    assert not marker.exists()
    status = run.read_status()
    assert status.state == "failed" and "refusing to load" in status.message
    faults = [e for e in ev.read_all(run.events_path) if isinstance(e, ev.Fault)]
    assert faults and "refusing to load" in faults[-1].message


@pytest.fixture
def open_umask():
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_run_directory_and_control_files_are_owner_only_under_umask_0(tmp_path, open_umask):
    run = prepare_run(Recipe(), tmp_path / "runs", "r")
    assert _mode(run.path) == 0o700
    for d in (run.checkpoints, run.attention):
        assert _mode(d) == 0o700, d
    for f in (run.recipe_path, run.status_path, run.events_path, run.commands_path):
        assert _mode(f) == 0o600, f
    run.commands_path.unlink()  # a controller may be first to create the control file
    control.send(run.path, "pause")
    assert _mode(run.commands_path) == 0o600
    run.events_path.unlink()
    w = ev.EventWriter(run.events_path)
    w.write(ev.Log(level="info", message="x"))
    w.close()
    assert _mode(run.events_path) == 0o600
    from vittui.runs import lock

    lock.acquire(run.lock_path)
    try:
        assert _mode(run.lock_path) == 0o600
    finally:
        lock.release(run.lock_path)
    from vittui.runs.launcher import spawn

    proc = spawn(["true"], run)
    proc.wait()
    assert _mode(run.log_path) == 0o600


def test_every_file_a_training_run_writes_is_owner_only_under_umask_0(tmp_path, open_umask):
    from vittui.train.loop import train

    recipe = _inproc_recipe(**{"regularize.ema": True, "run.probe_every": 2})
    run = prepare_run(recipe, tmp_path / "runs", "perm")
    train(recipe, run.path)
    assert ckpt.find(run.checkpoints, "last") is not None
    loose = []
    for dirpath, dirnames, filenames in os.walk(run.path):
        for name in dirnames:
            p = Path(dirpath) / name
            if _mode(p) != 0o700:
                loose.append(f"{p.relative_to(run.path)} {oct(_mode(p))}")
        for name in filenames:
            p = Path(dirpath) / name
            if _mode(p) != 0o600:
                loose.append(f"{p.relative_to(run.path)} {oct(_mode(p))}")
    assert not loose, loose

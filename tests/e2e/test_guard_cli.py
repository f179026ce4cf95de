"""The divergence guard and early stopping through the installed command: a foreground `vittui train` that
rewinds past an injected NaN and says so, and one that stops early and exports its best checkpoint."""

import json

import pytest

from tiny import TINY_PROCESS, events, status, tiny_toml

from vittui.runs import events as ev


def test_foreground_train_rewinds_past_a_nan_and_finishes(cli, tmp_path):
    toml = tiny_toml(tmp_path / "r.toml", [*TINY_PROCESS, "schedule.max_steps=16", "run.on_divergence=rewind",
                                          "run.probe_every=0"])
    p = cli("train", str(toml), "--name", "r", extra_env={"VITTUI_TEST_NAN_AT_STEP": "14"})
    assert p.returncode == 0 and "Traceback" not in p.stdout + p.stderr
    # checkpoints every 10 steps (TINY_PROCESS): the NaN at 14 goes back to 10 at half the lr
    assert "rewound at step 14 to the checkpoint at step 10 (lr multiplier 0.5): loss is nan at step 14" in p.stdout
    run = cli.root / "r"
    assert status(run)["state"] == "finished" and status(run)["step"] == 16
    [rw] = [e for e in events(run) if isinstance(e, ev.Rewound)]
    assert (rw.step, rw.to_step, rw.lr_multiplier) == (14, 10, 0.5)


@pytest.mark.slow  # a training past its stall plus export-model (~40 s)
def test_early_stop_finishes_and_export_model_takes_the_best_checkpoint(cli, tmp_path):
    # an lr too small to move top-1: evals at 2 (the best), 4, 6 -> two without improvement, stop at 6
    toml = tiny_toml(tmp_path / "s.toml", [*TINY_PROCESS, "optim.lr=1e-12", "schedule.min_lr=0",
                                          "schedule.warmup_lr=0", "run.eval_every=2", "run.probe_every=0",
                                          "schedule.early_stop_patience=2"])
    p = cli("train", str(toml), "--name", "s")
    assert p.returncode == 0
    run = cli.root / "s"
    st = status(run)
    assert st["state"] == "finished" and st["step"] == 6 < st["total_steps"]
    assert st["message"].startswith("early stop at step 6: no improvement in 2 evals")
    assert "finished at step 6: early stop at step 6" in p.stdout
    assert json.loads((run / "checkpoints" / "best.json").read_text())["path"] == "step-00000002"
    assert json.loads((run / "checkpoints" / "last.json").read_text())["path"] == "step-00000006"
    p = cli("export-model", "s", "--format", "safetensors", "-o", str(tmp_path / "out"))
    assert "exported s/step-00000002 as safetensors" in p.stdout

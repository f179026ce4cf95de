"""`compute.compile = true`: what the run writes must name the model's own parameters, not the wrapper's.

torch.compile returns an OptimizedModule whose state_dict prefixes every key with `_orig_mod.`; a
checkpoint written from it does not load into the plain model that `vittui eval`, `export-model`,
`predict` or a resume without compile build. The compile backend is swapped for "eager" here (the
wiring is what is tested; Inductor on a CPU needs a C++ toolchain and minutes); tests/gpu compiles for real.
"""

import torch

from vittui.models.build import build_model
from vittui.runs import events as ev
from vittui.runs.launcher import prepare_run
from vittui.train import checkpoint as ckpt
from vittui.train.loop import train


def test_compiled_run_writes_plain_checkpoints_and_probe_names(tmp_path, tiny_recipe, monkeypatch):
    compiled = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):
        out = real_compile(model, backend="eager")
        compiled.append(out)
        return out

    monkeypatch.setattr(torch, "compile", eager_compile)
    r = tiny_recipe.with_overrides(["compute.compile=true", "schedule.max_steps=3", "run.probe_every=2"])
    run = prepare_run(r, tmp_path, "c")
    try:
        result = train(r, run.path)
    finally:
        torch._dynamo.reset()
    assert result.state == "finished" and len(compiled) == 1  # the loop did train the compiled module

    plain = build_model(r.model, 10)
    from safetensors import safe_open

    found = ckpt.find(run.checkpoints, "last")
    with safe_open(str(found / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert keys == set(plain.state_dict()), sorted(keys)[:3]
    ckpt.load_weights(plain, found)  # what eval / export-model / predict / a plain resume do
    evs = ev.read_all(run.events_path)
    flows = [e for e in evs if isinstance(e, ev.GradFlow)]
    assert flows and flows[0].names == ["blocks.0", "blocks.1"]
    assert [e.step for e in evs if isinstance(e, ev.AttentionProbe)] == [2]  # the probe reads the plain model

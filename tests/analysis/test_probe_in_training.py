"""Two epochs on digits through the real loop (`vittui.train.loop.train`, its own probe call) with a Hugging
Face distilled DeiT built from config and with a timm GAP ViT: AttentionProbe events with finite statistics
are written, with the right query, the probe files load as the dashboard loads them, and probing never
switched off."""

from __future__ import annotations

import math

import pytest
from tiny import TINY

from vittui.recipe import Recipe
from vittui.runs.events import AttentionProbe, Log, read_all
from vittui.runs.events import PROBE_OFF_PREFIX

MODELS = {
    "hf-deit-distilled": (["model.name=facebook/deit-tiny-distilled-patch16-224", "model.source=hf"], 2, "cls"),
    "timm-gap": (["model.name=vit_base_patch16_gap_224", "model.source=timm"], 0, "patch_mean"),
}


@pytest.mark.parametrize("family", list(MODELS))
def test_two_epochs_on_digits_write_finite_probes(family, tmp_path):
    from vittui.runs.launcher import prepare_run
    from vittui.train.loop import train
    from vittui.ui import probeview

    extra, prefix, query = MODELS[family]
    recipe = Recipe().with_overrides(list(TINY) + extra + ["run.probe_every=4"])
    run = prepare_run(recipe, tmp_path, family)
    result = train(recipe, run.path)
    assert result.state == "finished", result
    events = read_all(run.path / "events.jsonl")
    offs = [e.message for e in events if isinstance(e, Log) and e.message.startswith(PROBE_OFF_PREFIX)]
    assert offs == []
    probes = [e for e in events if isinstance(e, AttentionProbe)]
    assert len(probes) >= 2
    for p in probes:
        assert p.query == query
        values = [v for rows in (p.entropy, p.distance) for row in rows for v in row] + list(p.diversity)
        assert values and all(math.isfinite(v) for v in values), p
    loaded = probeview.load(run.path, probes[-1].path)
    assert loaded.prefix == prefix and loaded.grid == (4, 4) and loaded.query == query

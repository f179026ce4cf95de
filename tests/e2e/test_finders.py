"""`vittui lr-find` and `vittui batch-find` as a person runs them: the JSON the setup screen reads, the
plot and table, one line and exit 2 for bad input, and no run directory left behind by either."""

from __future__ import annotations

import json
import math

from tiny import TINY, tiny_toml

LR_KEYS = {"lrs", "losses", "smoothed", "suggested_lr", "rule", "stopped_early", "steps"}


def files_under(path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def test_lr_find_json_is_one_object_with_the_curve_and_writes_nothing(cli, tmp_path):
    toml = tiny_toml(tmp_path / "tiny.toml", TINY)
    before = files_under(tmp_path)
    p = cli("lr-find", str(toml), "--steps", "25", "--start", "1e-5", "--end", "1", "--json", timeout=300)
    out = json.loads(p.stdout)  # the whole of stdout is one JSON document
    assert LR_KEYS <= set(out)
    n = out["steps"]
    assert 11 <= n <= 25 and len(out["lrs"]) == len(out["losses"]) == len(out["smoothed"]) == n
    assert out["lrs"][0] == 1e-5 and all(a < b for a, b in zip(out["lrs"], out["lrs"][1:]))
    if not out["stopped_early"]:
        assert n == 25 and math.isclose(out["lrs"][-1], 1.0)
    # the stated rule, checked from the curve itself
    smoothed = [s if s is not None else math.inf for s in out["smoothed"]]
    i = min(range(n), key=lambda k: smoothed[k])
    assert out["suggested_lr"] == out["lrs"][i] and out["rule"].startswith("min:")
    assert files_under(tmp_path) == before  # no runs/ folder, no run directory


def test_lr_find_text_draws_the_curve_and_names_the_suggestion(cli, tmp_path):
    toml = tiny_toml(tmp_path / "tiny.toml", TINY)
    p = cli("lr-find", str(toml), "--steps", "15", "--start", "1e-5", "--end", "1", timeout=300)
    assert "LR range test: suggested lr" in p.stdout and "1e-04" in p.stdout  # title and a decade tick
    assert "suggested lr:" in p.stdout and "--set optim.lr=" in p.stdout
    assert "\x1b[" not in p.stdout  # no colour codes when stdout is not a terminal


def test_finders_refuse_bad_input_in_one_line_without_a_run_directory(cli, tmp_path):
    toml = tiny_toml(tmp_path / "tiny.toml", TINY)
    cases = [
        (("lr-find", str(toml), "--start", "0"), "--start and --end"),
        (("lr-find", str(toml), "--steps", "1"), "--steps must be at least 2"),
        (("lr-find", str(toml), "--set", "model.name=vit_tiyn_patch16_224"), "did you mean vit_tiny_patch16_224"),
        (("batch-find", str(toml), "--max-memory", "-1"), "--max-memory must be a positive size"),
        (("batch-find", str(toml), "--set", "data.path=/nonexistent", "--set", "data.source=imagefolder"), "error: "),
    ]
    for args, line in cases:
        p = cli(*args, check=False, timeout=300)
        assert p.returncode == 2, (args, p.stdout, p.stderr)
        assert line in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
        assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not cli.root.exists()


def test_batch_find_json_under_a_memory_limit(cli, tmp_path):
    from vittui.planning.memory import estimate
    from vittui.recipe import load

    toml = tiny_toml(tmp_path / "tiny.toml", TINY + ["data.limit=64"])
    recipe = load(toml)

    def peak(n: int) -> int:
        return estimate(recipe.with_overrides([f"data.batch_size={n}"]), num_classes=10, device="cpu").peak

    limit_gib = (peak(11) + peak(12)) / 2 / 2**30
    expected = max(n for n in range(1, 65) if peak(n) <= int(limit_gib * 2**30))
    p = cli("batch-find", str(toml), "--max-memory", f"{limit_gib!r}", "--json", timeout=300)
    out = json.loads(p.stdout)
    assert out["largest"] == expected == 11
    assert out["device"] == "cpu" and out["limit_source"] == "--max-memory" and out["max_batch"] == 64
    assert {t["batch"] for t in out["tries"]} >= {11, 12} and out["recommended"] in {t["batch"] for t in out["tries"]}
    assert "largest" in out["rule"]
    assert not cli.root.exists()

"""Attention and gradient panes in the monitor, and the report screen, driven by a fake run directory with
real probe files (written by `save_probe`) and a report.json made by `EvalReport`."""

from __future__ import annotations

import numpy as np
import pytest
from ui_helpers import SIZE, attention_pane, screen_text, shown_map, wait_for

from vittui.analysis.metrics import report_from_probs, write_report
from vittui.runs.events import AttentionProbe, GradFlow
from vittui.runs.probes import save_probe
from vittui.ui.app import create_app
from vittui.ui.screens.monitor import MonitorScreen
from vittui.ui.screens.report import ReportScreen
from vittui.ui.widgets.attention_pane import AttentionPane
from vittui.ui.widgets.grad_pane import GradPane

pytestmark = pytest.mark.anyio

# CLS rows over the 2x2 patches for (layer, image, head) of the test probe; the rest is uniform
CLS = {
    (0, 0, 0): [0.4, 0.3, 0.2, 0.1],
    (0, 0, 1): [0.1, 0.2, 0.3, 0.4],
    (1, 0, 0): [0.1, 0.4, 0.2, 0.3],
    (0, 1, 0): [0.25, 0.25, 0.4, 0.1],
}
# the ramp ' .:-=+*#%@' over 16 columns x 8 rows: each patch is 8 columns x 4 rows
L0_I0_H0 = ["@@@@@@@@********"] * 4 + ["--------        "] * 4
L0_I0_H1 = ["        --------"] * 4 + ["********@@@@@@@@"] * 4
L1_I0_H0 = ["        @@@@@@@@"] * 4 + ["--------********"] * 4
L0_I1_H0 = ["++++++++++++++++"] * 4 + ["@@@@@@@@        "] * 4
STEP10_L0_I0_H0 = L0_I0_H1  # the older probe: the first map reversed
RAMP = " .:-=+*#%@"  # the documented shading, dark to bright


def hand_rollout(attention: np.ndarray, image: int) -> np.ndarray:
    """Attention rollout (Abnar & Zuidema 2020) worked out here with numpy, not with vittui: per layer the
    heads averaged, the residual added as 0.5 A + 0.5 I, rows renormalised; R = A'_1 @ A'_0; the CLS row
    over the 2x2 patches."""
    r = np.eye(attention.shape[-1])
    for layer in attention.astype(np.float64)[:, image]:
        a = 0.5 * layer.mean(axis=0) + 0.5 * np.eye(layer.shape[-1])
        r = (a / a.sum(axis=-1, keepdims=True)) @ r
    return r[0, 1:].reshape(2, 2)


def shaded(cells: np.ndarray) -> list[str]:
    """A 2x2 map as the pane draws it in 16x8: 8 columns x 4 rows a patch, shade by min-max position."""
    lo, hi = cells.min(), cells.max()
    # rounded to 6 places: a value exactly halfway (as in image 2) rounds up, as documented, not by float noise
    ch = [[RAMP[int(np.floor(round((v - lo) / (hi - lo), 6) * 9 + 0.5))] for v in row] for row in cells]
    return [ch[0][0] * 8 + ch[0][1] * 8] * 4 + [ch[1][0] * 8 + ch[1][1] * 8] * 4


def probe_attention(reverse: bool = False) -> np.ndarray:
    a = np.full((2, 2, 2, 5, 5), 0.2, dtype=np.float32)  # (L, B, H, T, T): CLS + 2x2 patches
    for (layer, image, head), row in CLS.items():
        a[layer, image, head, 0] = [0.0, *(row[::-1] if reverse and (layer, image, head) == (0, 0, 0) else row)]
    return a


def probe_images() -> np.ndarray:
    img = np.zeros((2, 8, 8, 1), dtype=np.uint8)
    img[0, :, :4] = 255  # image 1: left half is stroke
    img[1, 4:, :] = 255  # image 2: bottom half
    return img


def add_probes(fake_run) -> None:
    att = fake_run.path / "attention"
    stats = dict(entropy=[[0.5, 0.6], [0.7, 0.8]], distance=[[4.0, 5.5], [6.0, 7.5]], diversity=[0.3, 0.99])
    p10 = save_probe(att, 10, probe_attention(reverse=True), np.moveaxis(probe_images(), -1, 1), grid=(2, 2),
                     patch_size=4, num_prefix_tokens=1)
    fake_run.emit(AttentionProbe(step=10, path=p10, flags=[], **stats))
    p20 = save_probe(att, 20, probe_attention(), grid=(2, 2), patch_size=4, num_prefix_tokens=1)
    fake_run.emit(AttentionProbe(step=20, path=p20, flags=[
        "layer 1: heads collapsed (mean pairwise similarity 0.990 > 0.95)"], **stats))


def pane(app) -> AttentionPane:
    return attention_pane(app)


async def test_attention_pane_draws_the_probe_and_follows_the_keys(runs_root, fake_run, no_gpu, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    fake_run.started()
    fake_run.steps(20)
    add_probes(fake_run)
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: pane(app).view.probe is not None and "step 20  probe 2/2  live" in pane(app).text
                       and shown_map(app) == L0_I0_H0, what="probe drawn")
        text = pane(app).text
        assert "step 20  probe 2/2  live" in text
        assert "layer 0  head 0  (2 layers x 2 heads)" in text and "image 1/2" in text
        assert "entropy 0.500 (norm.)" in text and "mean distance 4.0 px" in text
        assert "head similarity 0.300" in text
        assert "FLAG layer 1: heads collapsed" in text
        assert shown_map(app) == L0_I0_H0
        # the probe image beside it, on the same ramp: the left half of image 1 is stroke
        lines = screen_text(app).splitlines()
        region = pane(app).content_region
        assert lines[region.y][region.x: region.x + 16] == "@" * 8 + " " * 8

        await pilot.press("h")
        assert "layer 0  head 1" in pane(app).text and shown_map(app) == L0_I0_H1
        await pilot.press("H", "l")
        assert "layer 1  head 0" in pane(app).text and shown_map(app) == L1_I0_H0
        assert "entropy 0.700" in pane(app).text and "head similarity 0.990" in pane(app).text
        await pilot.press("L", "i")
        assert "image 2/2" in pane(app).text and shown_map(app) == L0_I1_H0
        await pilot.press("o")
        # image 2's rollout: bottom-left brightest, bottom-right darkest, the top two equal and halfway
        expected = shaded(hand_rollout(probe_attention(), 1))
        assert expected == ["+" * 16] * 4 + ["@" * 8 + " " * 8] * 4
        assert "rollout, 2 layers" in pane(app).text and shown_map(app) == expected
        await pilot.press("i")
        # image 1's: top-right brightest, then bottom-right, bottom-left, top-left
        expected = shaded(hand_rollout(probe_attention(), 0))
        assert expected == [" " * 8 + "@" * 8] * 4 + ["-" * 8 + "*" * 8] * 4
        assert shown_map(app) == expected
        await pilot.press("o")
        assert shown_map(app) == L0_I0_H0

        # scrub back to the older probe (loaded by the worker), then forward to live again
        await pilot.press("less_than_sign")
        await wait_for(pilot, lambda: pane(app).view.probe is not None and pane(app).view.probe.step == 10
                       and "step 10  probe 1/2  (> newer)" in pane(app).text and shown_map(app) == STEP10_L0_I0_H0,
                       what="older probe drawn")
        assert shown_map(app) == STEP10_L0_I0_H0
        assert "OK no attention flags" in pane(app).text
        await pilot.press("greater_than_sign")
        assert "step 20  probe 2/2  live" in pane(app).text and shown_map(app) == L0_I0_H0


async def test_attention_pane_in_colour_uses_half_blocks(runs_root, fake_run, no_gpu, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    fake_run.started()
    add_probes(fake_run)
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: pane(app).view.probe is not None, what="probe loaded")
        if not pane(app).use_colour:
            pytest.skip("the test console has no colour system")
        text = pane(app).build()
        first = text.plain.splitlines()[0]
        assert first[:16] == "▀" * 16 and first[18:34] == "▀" * 16
        styles = {str(span.style) for span in text.spans}
        assert any("on #" in s or "on rgb" in s for s in styles)  # fg/bg colours, upper and lower pixel


async def test_new_probe_events_show_live(runs_root, fake_run, no_gpu, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    fake_run.started()
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.replayed)
        assert "no attention probe yet" in pane(app).text
        add_probes(fake_run)
        await wait_for(pilot, lambda: pane(app).view.probe is not None and "probe 2/2" in pane(app).text)


async def test_gradient_pane_draws_a_bar_per_block_and_flags(runs_root, fake_run, no_gpu):
    fake_run.started()
    names = [f"blocks.{i}" for i in range(4)]
    fake_run.emit(GradFlow(step=20, names=names, attn=[1e-1, 1e-2, 1e-3, 1e-9], mlp=[1e-1, 1e-1, 1e-1, 1e-9],
                           other={"total": 0.5}, flags=["blocks.3: vanishing gradient (norm 1.41e-09 < median ...)"]))
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        grads = app.screen.query_one(GradPane)
        await wait_for(pilot, lambda: grads.flow is not None)
        lines = grads.text.splitlines()
        assert lines[0].startswith("step 20  log bars, max 1.00e-01")
        rows = {line.replace("!", " ").split()[0]: line for line in lines[1:5]}
        assert set(rows) == {"0", "1", "2", "3"}

        def attn_bar(row: str) -> str:
            return row.split("attn ", 1)[1].split(" mlp", 1)[0].rstrip(" 0123456789.e+-")

        full, tenth, hundredth = attn_bar(rows["0"]), attn_bar(rows["1"]), attn_bar(rows["2"])
        assert set(full) == {"█"}
        assert len(full) > len(tenth) > len(hundredth) > 0  # one decade less, a quarter of the bar less
        assert attn_bar(rows["3"]).strip() in ("", "▏")  # vanishing: next to nothing
        assert rows["3"].startswith("!")
        assert "FLAG blocks.3: vanishing gradient" in grads.text
        assert "gradients" in screen_text(app)


async def test_narrow_terminal_toggles_the_insight_panes(runs_root, fake_run, no_gpu, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    fake_run.started()
    fake_run.steps(5)
    add_probes(fake_run)
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: "step 5/100" in screen_text(app))
        assert not pane(app).display or not app.screen.query_one("#insight").display
        await pilot.press("a")
        await wait_for(pilot, lambda: pane(app).view.probe is not None and "@@@@@@@@********" in screen_text(app),
                       what="insight panes shown")
        text = screen_text(app)
        assert "attention" in text and "gradients" in text and "step 20  probe 2/2" in text
        assert "accuracy" not in text
        await pilot.press("a")
        await wait_for(pilot, lambda: "accuracy" in screen_text(app) and "worker RSS" in screen_text(app),
                       what="plots and hardware back")
        assert "step 20  probe 2/2" not in screen_text(app)


async def test_wide_terminal_hides_the_insight_panes_on_a(runs_root, fake_run, no_gpu):
    fake_run.started()
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        # first the state before (the pane drawn with its placeholder), then the change
        await wait_for(pilot, lambda: app.screen.replayed and "no attention probe yet" in screen_text(app),
                       what="attention pane drawn")
        await pilot.press("a")
        await wait_for(pilot, lambda: "no attention probe yet" not in screen_text(app), what="attention pane hidden")
        assert not pane(app).display or not app.screen.query_one("#insight").display


async def test_insight_keys_belong_to_the_panes_and_need_a_probe(runs_root, fake_run, no_gpu, monkeypatch):
    """The panes' keys work with the focus in the panes (their own bindings) as well as elsewhere (the
    screen forwards them); without a probe they are off, in the palette too."""
    monkeypatch.setenv("NO_COLOR", "1")
    fake_run.started()
    app = create_app(runs_root, gpu_source=no_gpu, attach=fake_run.run.name)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.replayed)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Attention rollout on/off" not in titles
        assert app.screen.check_action("insight", ("layer(1)",)) is None
        add_probes(fake_run)
        await wait_for(pilot, lambda: pane(app).view.probe is not None and shown_map(app) == L0_I0_H0,
                       what="probe drawn")
        assert "Attention rollout on/off" in [c.title for c in app.get_system_commands(app.screen)]
        pane(app).focus()
        await pilot.press("h")
        assert app.focused is pane(app) and "layer 0  head 1" in pane(app).text and shown_map(app) == L0_I0_H1
        app.screen.query_one("#log-pane").focus()
        await pilot.press("H")
        assert "layer 0  head 0" in pane(app).text and shown_map(app) == L0_I0_H0


def make_report(run_path):
    rng = np.random.default_rng(0)
    labels = np.array([0] * 5 + [1] * 4 + [2] * 3)
    preds = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 0])
    probs = np.full((12, 3), 0.1)
    probs[np.arange(12), preds] = 0.8 + 0.01 * rng.random(12)
    report = report_from_probs(probs, labels, 3, ["cat", "dog", "eel"], loss=0.42)
    report.throughput = {"device": "cpu", "img_size": 32, "runs": [
        {"batch_size": 1, "latency_ms": 1.25, "images_per_s": 800.0}]}
    report.robustness = [{"corruption": "clean", "severity": 0, "parameter": None, "top1": 0.75, "drop": 0.0},
                         {"corruption": "gaussian_noise", "severity": 1, "parameter": 0.08, "top1": 0.5,
                          "drop": 0.25}]
    write_report(run_path, report)
    return report


async def test_report_screen_from_the_runs_screen(runs_root, no_gpu):
    from fakerun import FakeRun

    fr = FakeRun(runs_root, name="done", state="finished")
    fr.started()
    fr.set_state("finished")
    make_report(fr.path)
    app = create_app(runs_root, gpu_source=no_gpu, attach="done")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.replayed)
        await pilot.press("r")
        await wait_for(pilot, lambda: "done" in screen_text(app), what="runs listed")
        await pilot.press("v")
        assert isinstance(app.screen, ReportScreen)
        await wait_for(pilot, lambda: app.screen.report is not None and "12 validation images" in screen_text(app)
                       and "800.0" in screen_text(app), what="report drawn")
        text = screen_text(app)
        assert "12 validation images" in text and "top-1 75.0%" in text
        cells = [line.split("│")[1].split() for line in text.splitlines() if line.startswith("│")]
        counts = [[int(v) for v in c[1:4]] for c in cells
                  if c and c[0] in ("cat", "dog", "eel") and all(v.isdigit() for v in c[1:4])]
        assert counts == [[4, 1, 0], [0, 3, 1], [1, 0, 2]]
        assert "per class" in text and "reliability" in text and "ECE" in text
        assert "gaussian_noise" in text and "throughput (cpu, 32 px)" in text and "800.0" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, ReportScreen)
    fr.close()


async def test_report_screen_offers_to_evaluate_and_runs_the_cli(runs_root, no_gpu, monkeypatch):
    """Without report.json, e runs `python -m vittui.cli eval RUN` (a stand-in script here) and shows the
    report it writes."""
    import sys

    from fakerun import FakeRun

    import vittui.ui.screens.report as report_mod

    fr = FakeRun(runs_root, name="stopped", state="stopped")
    fr.started()
    fr.set_state("stopped")
    script = fr.path.parent / "fake_eval.py"
    script.write_text(
        "import sys\n"
        "sys.path[:0] = [" + repr(str(__file__.rsplit('/', 1)[0])) + "]\n"
        "from test_ui_insight import make_report\n"
        "print('evaluating on 12 validation images', flush=True)\n"
        "make_report(sys.argv[1])\n"
        "print('wrote report.json')\n")
    monkeypatch.setattr(report_mod, "eval_command", lambda path: [sys.executable, str(script), str(path)])
    app = create_app(runs_root, gpu_source=no_gpu, attach="stopped")
    async with app.run_test(size=SIZE) as pilot:
        assert isinstance(app.screen, MonitorScreen)
        await wait_for(pilot, lambda: app.screen.state == "stopped")
        await pilot.press("v")
        assert isinstance(app.screen, ReportScreen)
        await wait_for(pilot, lambda: "press e to run" in screen_text(app))
        await pilot.press("e")
        await wait_for(pilot, lambda: app.screen.report is not None, timeout=30, what="report after eval")
        screen = app.screen
        assert screen.eval_rc == 0 and any("evaluating on 12" in line for line in screen.eval_lines)
        await wait_for(pilot, lambda: "12 validation images" in screen_text(app), what="report drawn")
    fr.close()


@pytest.mark.slow  # a real `vittui eval` (calibration, robustness, throughput) on a tiny run: ~20 s
async def test_report_screen_runs_the_real_eval_on_a_trained_run(runs_root, no_gpu, run_a):
    """No stand-in: e on a finished tiny run runs the real `vittui eval` subprocess, which writes report.json,
    and the screen draws what that file says (images, top-1, ECE, the confusion counts)."""
    import json
    import shutil

    shutil.copytree(run_a, runs_root / "a")  # the session's shared run stays without a report
    app = create_app(runs_root, gpu_source=no_gpu, attach="a")
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen) and app.screen.state == "finished")
        await pilot.press("v")
        await wait_for(pilot, lambda: "press e to run" in screen_text(app), what="the offer to evaluate")
        await pilot.press("e")
        await wait_for(pilot, lambda: app.screen.report is not None, timeout=300, what="the real eval's report")
        screen = app.screen
        assert screen.eval_rc == 0, screen.eval_lines
        written = json.loads((runs_root / "a" / "report.json").read_text())
        n, top1, ece = written["n"], written["top1"], written["ece"]
        assert n > 0 and sum(map(sum, written["confusion"])) == n
        await wait_for(pilot, lambda: f"{n} validation images   top-1 {100 * top1:.1f}%   ECE {ece:.4f}"
                       in screen_text(app), what="the report's numbers drawn")


def test_eval_command_is_the_cli_in_a_subprocess(tmp_path):
    import sys

    from vittui.ui.screens.report import eval_command

    assert eval_command(tmp_path) == [sys.executable, "-m", "vittui.cli", "eval", str(tmp_path)]

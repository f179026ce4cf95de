"""What the attention + gradient probe costs at the default cadence (`run.probe_every`, 50 steps).

    python benchmarks/probe_cost.py [--quick] [--rounds 3] [--steps 220] [--threads 0]

1. Direct: on the demo model and data (built by vittui's own builders), alternate blocks of training
   steps with probe calls — `vittui.analysis.attention.probe` on the loop's 4 fixed validation images,
   saved to an attention folder as the loop does, plus `vittui.analysis.gradients.grad_flow` on the
   gradients of a real step — and report probe time / (probe_every × mean step time).
2. End to end: the detached worker with probes on (default cadence) against probes off, alternating,
   images/s from the Step events' timestamps (see overhead.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import demo_recipe, load_note, median  # noqa: E402
from overhead import rate, run_vittui  # noqa: E402  (shared A/B machinery)


def direct(recipe, blocks: int, steps_per_block: int) -> dict:
    import torch

    from vittui.analysis.attention import probe
    from vittui.analysis.gradients import grad_flow
    from vittui.data.sources import build_data
    from vittui.models.build import build_model
    from vittui.train.build import PROBE_IMAGES, _probe_batch
    from vittui.train.optim import build_optimizer

    if recipe.compute.threads:
        torch.set_num_threads(recipe.compute.threads)
    data = build_data(recipe)
    torch.manual_seed(0)
    model = build_model(recipe.model, len(data.classes), drop_path=recipe.regularize.drop_path)
    opt = build_optimizer(model, recipe)
    crit = torch.nn.CrossEntropyLoss(label_smoothing=recipe.regularize.label_smoothing)
    images = _probe_batch(data.val_loader, PROBE_IMAGES)
    out_dir = Path(tempfile.mkdtemp(prefix="probe-cost-"))
    batches = iter(())

    def next_batch():
        nonlocal batches
        try:
            return next(batches)
        except StopIteration:
            batches = iter(data.train_loader)
            return next(batches)

    def step():  # the loop's step: forward, backward, grad-norm, update (data loading included)
        x, y, _ = next_batch()
        loss = crit(model(x), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), float("inf"))
        loss.item()
        return loss

    model.train()
    step_times, probe_times, attn_times, grad_times = [], [], [], []
    for _ in range(3):  # warm up
        step()
        opt.step()
        opt.zero_grad(set_to_none=True)
    for b in range(blocks):
        for _ in range(steps_per_block):
            t = time.perf_counter()
            step()
            opt.step()
            opt.zero_grad(set_to_none=True)
            step_times.append(time.perf_counter() - t)
        step()  # gradients in place, as when the loop probes (before optimizer.step)
        t0 = time.perf_counter()
        grad_flow(model, step=b)
        t1 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            probe(model, images, out_dir, b, mean=recipe.data.mean, std=recipe.data.std)
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        model.train()
        grad_times.append(t1 - t0)
        attn_times.append(t2 - t1)
        probe_times.append(t2 - t0)
    return {"step": statistics.mean(step_times), "probe": statistics.median(probe_times),
            "attn": statistics.median(attn_times), "grad": statistics.median(grad_times)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="few blocks; end to end 2 rounds of 110 steps")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=220, help="steps per end-to-end run")
    ap.add_argument("--threads", type=int, default=0, help="compute.threads (0 = torch default)")
    ap.add_argument("--skip-e2e", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.rounds, a.steps = 2, 110
    recipe = demo_recipe(**{"compute.threads": a.threads})
    every = recipe.run.probe_every
    print(f"demo-digits, probe_every={every}, threads={a.threads or 'default'}; {load_note()}")

    d = direct(recipe, blocks=3 if a.quick else 8, steps_per_block=10 if a.quick else 20)
    frac = d["probe"] / (every * d["step"])
    print(f"direct: mean step {d['step'] * 1000:.1f} ms; probe {d['probe'] * 1000:.1f} ms "
          f"(attention {d['attn'] * 1000:.1f} ms + grad_flow {d['grad'] * 1000:.1f} ms) = "
          f"{d['probe'] / d['step']:.2f} steps; at every {every} steps: {100 * frac:.2f}% of step time; target <= 2%")

    if a.skip_e2e:
        return 0
    root = Path(tempfile.mkdtemp(prefix="vittui-bench-probe-"))
    on_r = recipe.with_overrides({"schedule.max_steps": a.steps})
    off_r = on_r.with_overrides({"run.probe_every": 0})
    bs = recipe.data.batch_size
    ons, offs, ratios, cpus = [], [], [], []
    for i in range(a.rounds):
        order = ("on", "off") if i % 2 == 0 else ("off", "on")
        got = {}
        for which in order:
            r = on_r if which == "on" else off_r
            got[which] = run_vittui(r, root, f"probe-{which}-{i}", dashboard=False)
        ons.append(rate(got["on"]["times"], bs))
        offs.append(rate(got["off"]["times"], bs))
        ratios.append(ons[-1] / offs[-1])
        cpus.append(got["off"]["cpu"] / got["on"]["cpu"])
        print(f"round {i + 1}: wall probes on {ons[-1]:.1f} img/s, off {offs[-1]:.1f} img/s, on/off {ratios[-1]:.3f}; "
              f"CPU ms/image on {1000 * got['on']['cpu']:.2f}, off {1000 * got['off']['cpu']:.2f} -> {cpus[-1]:.3f}"
              f"   ({load_note()})", flush=True)
    m, c = median(ratios), median(cpus)
    print(f"end to end: probes on / off images/s {m:.3f} by wall clock (cost {100 * (1 - m):.2f}%), {c:.3f} by CPU "
          f"time (cost {100 * (1 - c):.2f}%); medians of {a.rounds} paired rounds, {a.steps} steps each = "
          f"{a.steps // every} probes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A run under vittui — detached worker, a dashboard attached and redrawing, probes at the default
cadence — against a bare PyTorch loop of the same model, data and recipe written here, measured side by
side in one run, alternating A/B.

    python benchmarks/overhead.py [--quick] [--rounds 3] [--epochs 10]

Throughput is wall-clock: images trained between optimizer step K0 and the last step, divided by the
time between those steps (vittui: the Step events' timestamps; bare loop: time.time() after each
step). Everything the loop does between those steps counts — events, status writes, the control point,
attention/gradient probes, the per-epoch eval (both sides) and checkpoint (vittui only).

The bare loop (`bare_train`) is what a person would write from the recipe by hand: the digits arrays
through a plain Dataset (same 8→32 px bilinear resize per item, same timm `create_transform`), a
DataLoader with the same batch size and drop_last, the same timm ViT built from config, AdamW with the
recipe's lr/wd, warmup+cosine per step, label-smoothed cross entropy, top-1 eval at each epoch end.
It runs in its own process (`--child`), like vittui's worker.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import cpu_seconds, demo_recipe, load_note, median  # noqa: E402

from vittui.runs import events as ev  # noqa: E402
from vittui.runs.store import RunDir, RunStatus  # noqa: E402

K0 = 5  # steps dropped from the front (first-iteration warmup)
# How often the harness looks at a vittui run (events, status, the worker's CPU). It was 0.05 s: on
# this 2-vCPU VM a process waking 20 times a second slowed the worker on the other vCPU by ~3% (a
# 20%-duty poller slows a training loop by ~6%, a steady busy loop by ~3%), and the bare loop's parent
# just waits. Each look counts the steps it finds, so a coarse tick only shifts the CPU window.
HARNESS_TICK_S = 0.5


# ---- throughput from step timestamps ------------------------------------------------------------

def rate(times: list[float], batch: int, k0: int = K0) -> float:
    """Images/s between step k0 and the last step, from per-step wall-clock timestamps (index = step-1)."""
    if len(times) <= k0 + 1:
        return float("nan")
    return (len(times) - 1 - k0) * batch / (times[-1] - times[k0])


def vittui_step_times(run_path: Path) -> list[float]:
    steps = [e for e in ev.read_all(RunDir(run_path).events_path) if isinstance(e, ev.Step)]
    return [s.t for s in steps]


def status_state(run_path: Path) -> str:
    status = RunDir(run_path).read_status()
    return status.state if status else ""


DONE = ("finished", "failed", "stopped")


# ---- vittui side -----------------------------------------------------------------------------------


class CpuSampler:
    """Follows a live run: counts its Step events and samples the worker's CPU time (and this
    process's, where the dashboard runs) at the first step past K0 and when the last step shows up."""

    def __init__(self, run_path: Path, last_step: int):
        self.tail = ev.EventTail(Path(run_path) / "events.jsonl")
        self.run_path, self.last_step = Path(run_path), last_step
        self.steps, self.pid = 0, 0
        self.first: tuple[int, float, float] | None = None
        self.last: tuple[int, float, float] | None = None
        self.own = 0.0  # CPU this sampler spent, taken out of the dashboard's share

    def tick(self) -> None:
        c = time.process_time()
        try:
            self._tick()
        finally:
            self.own += time.process_time() - c

    def _tick(self) -> None:
        if not self.pid:
            try:
                self.pid = (RunDir(self.run_path).read_status() or RunStatus()).pid
            except OSError:
                pass
        self.steps += sum(isinstance(e, ev.Step) for e in self.tail.poll())
        if self.pid and self.first is None and self.steps > K0:
            self.first = (self.steps, cpu_seconds(self.pid), time.process_time() - self.own)
        if self.pid and self.last is None and self.steps >= self.last_step:
            self.last = (self.steps, cpu_seconds(self.pid), time.process_time() - self.own)

    def per_image(self, batch: int) -> tuple[float, float]:
        """(worker CPU s/image, this process's CPU s/image) over the window; NaN if not sampled."""
        if not (self.first and self.last) or self.last[0] <= self.first[0]:
            return float("nan"), float("nan")
        n = (self.last[0] - self.first[0]) * batch
        return (self.last[1] - self.first[1]) / n, (self.last[2] - self.first[2]) / n


def run_vittui(recipe, root: Path, name: str, *, dashboard: bool = True, timeout: float = 1800) -> dict:
    """Launch the detached worker; with `dashboard`, attach the real app headless and keep it drawing
    until the run ends. Returns the Step events' timestamps and CPU seconds per image (worker, and the
    dashboard's process)."""
    from vittui.runs import launcher

    run = launcher.launch(recipe, root, name)
    total = recipe.schedule.max_steps
    sampler = CpuSampler(run.path, total)
    if dashboard:
        asyncio.run(_attached(root, run.name, run.path, timeout, sampler))
    else:
        end = time.monotonic() + timeout
        while status_state(run.path) not in DONE and time.monotonic() < end:
            sampler.tick()
            time.sleep(HARNESS_TICK_S)
    if status_state(run.path) != "finished":
        log = run.log_path.read_text()[-2000:] if run.log_path.exists() else ""
        raise RuntimeError(f"run {run.name} ended {status_state(run.path)!r}:\n{log}")
    cpu_w, cpu_ui = sampler.per_image(recipe.data.batch_size)
    return {"times": vittui_step_times(run.path), "cpu": cpu_w + (cpu_ui if dashboard else 0.0), "cpu_ui": cpu_ui,
            "cpu_worker": cpu_w}


async def _attached(root: Path, name: str, run_path: Path, timeout: float, sampler: CpuSampler) -> None:
    from vittui.ui.app import create_app
    from vittui.ui.screens.monitor import MonitorScreen

    app = create_app(root, attach=name)
    end = time.monotonic() + timeout
    async with app.run_test(size=(120, 40)):
        while status_state(run_path) not in DONE and time.monotonic() < end:
            sampler.tick()
            # a plain sleep, not pilot.pause(): pause() waits for every widget to drain its queue, which
            # made this harness ~40% of the CPU charged to the dashboard (a user's terminal has no pilot)
            await asyncio.sleep(HARNESS_TICK_S)
        assert isinstance(app.screen, MonitorScreen), "the dashboard did not attach"
        assert app.screen.history.step > 0, "the dashboard saw no steps"
        app.exit()


# ---- bare loop -------------------------------------------------------------------------------------

def bare_train(recipe, max_steps: int, *, style: str = "bare", out: Path | None = None) -> dict:
    """The hand-written loop. style='bare': plain torch; style='timm': timm train.py's pieces
    (create_optimizer_v2, create_scheduler_v2, Mixup when the recipe asks, AMP through autocast when
    compute.precision is bf16, channels_last when asked, a checkpoint per epoch like its CheckpointSaver).
    style='bare+accelerate': the bare loop in a process that first imports accelerate and makes an
    `Accelerator` (the worker's only process-wide difference that is not its own code).
    Returns per-step timestamps."""
    if style == "bare+accelerate":
        from accelerate import Accelerator

        Accelerator(cpu=True)
    import numpy as np
    import timm
    import torch
    from PIL import Image
    from sklearn.datasets import load_digits
    from timm.data import create_transform
    from torch.utils.data import DataLoader, Dataset

    from vittui.data.splits import split_indices  # only to pick the same images; not on the hot path

    if recipe.compute.threads:
        torch.set_num_threads(recipe.compute.threads)
    torch.manual_seed(recipe.run.seed)
    m, a, d, o = recipe.model, recipe.augment, recipe.data, recipe.optim
    size = m.img_size
    mean = tuple(d.mean) * (3 if len(d.mean) == 1 else 1)
    std = tuple(d.std) * (3 if len(d.std) == 1 else 1)
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    tr, va = split_indices(labels, d.val_fraction, recipe.run.seed)

    class Digits(Dataset):
        def __init__(self, idx, tf):
            self.idx, self.tf = idx, tf

        @property
        def transform(self):  # timm's create_loader sets the transform through this name
            return self.tf

        @transform.setter
        def transform(self, tf):
            self.tf = tf

        def __len__(self):
            return len(self.idx)

        def __getitem__(self, i):
            j = self.idx[i]
            arr = np.clip(np.rint(digits.images[j] * (255.0 / 16.0)), 0, 255).astype(np.uint8)
            img = Image.fromarray(arr, "L").resize((size, size), Image.Resampling.BILINEAR).convert("RGB")
            return self.tf(img), int(labels[j])

    train_tf = create_transform(input_size=(3, size, size), is_training=True, scale=tuple(a.crop_scale),
                                ratio=tuple(a.crop_ratio), hflip=a.hflip, vflip=a.vflip,
                                color_jitter=a.color_jitter or None, auto_augment=a.auto_augment or None,
                                re_prob=a.re_prob, re_mode="pixel", interpolation=a.interpolation,
                                mean=mean, std=std)
    val_tf = create_transform(input_size=(3, size, size), is_training=False, interpolation="bilinear",
                              mean=mean, std=std, crop_pct=1.0)
    cuda = torch.cuda.is_available() and recipe.compute.device != "cpu"
    device = torch.device("cuda" if cuda else "cpu")
    workers = d.num_workers
    extra = dict(persistent_workers=True, prefetch_factor=2) if workers else {}
    if style == "timm":
        # train.py's loaders: timm's create_loader with its prefetcher (on by default there): uint8
        # images through fast_collate, normalised (and randomly erased) per batch on the device
        from timm.data import create_loader

        common = dict(input_size=(3, size, size), batch_size=d.batch_size, interpolation=a.interpolation, mean=mean,
                      std=std, num_workers=workers, pin_memory=cuda, device=device, use_prefetcher=True,
                      persistent_workers=bool(workers))
        train_loader = create_loader(Digits(tr, None), is_training=True, scale=tuple(a.crop_scale),
                                     ratio=tuple(a.crop_ratio), hflip=a.hflip, vflip=a.vflip,
                                     color_jitter=a.color_jitter or None, auto_augment=a.auto_augment or None,
                                     re_prob=a.re_prob, re_mode="pixel", **common)
        val_loader = create_loader(Digits(va, None), is_training=False, crop_pct=1.0,
                                   **{**common, "interpolation": "bilinear"})
    else:
        train_loader = DataLoader(Digits(tr, train_tf), batch_size=d.batch_size, shuffle=True, drop_last=True,
                                  num_workers=workers, pin_memory=cuda, **extra)
        val_loader = DataLoader(Digits(va, val_tf), batch_size=d.batch_size, num_workers=workers,
                                pin_memory=cuda, **extra)

    model = timm.create_model(m.name, pretrained=False, num_classes=10, img_size=size, patch_size=m.patch_size,
                              depth=m.depth, embed_dim=m.embed_dim, num_heads=m.num_heads,
                              drop_path_rate=recipe.regularize.drop_path, drop_rate=recipe.regularize.dropout)
    channels_last = recipe.compute.channels_last
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    model.to(device)
    steps_per_epoch = len(train_loader)
    total = min(recipe.schedule.epochs * steps_per_epoch, max_steps or 10**12)
    warmup = int(round(recipe.schedule.warmup_epochs * steps_per_epoch))
    ls = recipe.regularize.label_smoothing
    mixup = None
    if style == "timm":
        from timm.loss import LabelSmoothingCrossEntropy, SoftTargetCrossEntropy
        from timm.optim import create_optimizer_v2
        from timm.scheduler import create_scheduler_v2

        optimizer = create_optimizer_v2(model, "adamw", lr=o.lr, weight_decay=o.weight_decay,
                                        fused=(o.fused and cuda) or None)
        scheduler, _ = create_scheduler_v2(optimizer, "cosine", num_epochs=recipe.schedule.epochs,
                                           warmup_epochs=int(recipe.schedule.warmup_epochs),
                                           min_lr=recipe.schedule.min_lr, warmup_lr=recipe.schedule.warmup_lr,
                                           step_on_epochs=False, updates_per_epoch=steps_per_epoch)
        if a.mixup > 0 or a.cutmix > 0:
            from timm.data import Mixup

            mixup = Mixup(mixup_alpha=a.mixup, cutmix_alpha=a.cutmix, prob=a.mixup_prob,
                          switch_prob=a.mixup_switch_prob, label_smoothing=ls, num_classes=10)
            criterion = SoftTargetCrossEntropy()
        else:
            criterion = LabelSmoothingCrossEntropy(ls) if ls else torch.nn.CrossEntropyLoss()
    else:
        optimizer = torch.optim.AdamW(model.parameters(), lr=o.lr, weight_decay=o.weight_decay)

        def lr_at(step):
            if step < warmup:
                return (step + 1) / warmup
            t = (step - warmup) / max(total - warmup, 1)
            return (recipe.schedule.min_lr + 0.5 * (o.lr - recipe.schedule.min_lr) * (1 + math.cos(math.pi * t))) / o.lr

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)
        criterion = torch.nn.CrossEntropyLoss(label_smoothing=ls)
    bf16 = recipe.compute.precision == "bf16"
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
    ckpt_dir = Path(tempfile.mkdtemp(prefix="bare-ckpt-")) if style == "timm" else None

    times: list[float] = []
    cpu: list[float] = []
    step = 0
    epoch = 0
    model.train()
    while step < total:
        for x, y in train_loader:
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            if mixup is not None:
                x, y = mixup(x, y)
            with amp:
                loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if o.clip_grad:
                torch.nn.utils.clip_grad_norm_(model.parameters(), o.clip_grad)
            optimizer.step()
            step += 1
            if style == "timm":
                scheduler.step_update(num_updates=step)
                if step % 50 == 0:  # train.py's log_interval: the only loss.item() sync
                    loss.item()
            else:
                scheduler.step()
            times.append(time.time())
            cpu.append(time.process_time())
            if step >= total:
                break
        epoch += 1
        model.eval()  # top-1 on the validation split at each epoch end, like any training script
        correct = n = 0
        with torch.no_grad(), amp:
            for x, y in val_loader:
                x, y = x.to(device), y.to(device)
                correct += (model(x).argmax(1) == y).sum().item()
                n += len(y)
        model.train()
        if style == "timm":
            scheduler.step(epoch)
            torch.save({"state_dict": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch},
                       ckpt_dir / "last.pth.tar")
    if ckpt_dir is not None:  # one 5 MB file per benchmark run: nothing to keep
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    cpu_per_image = (cpu[-1] - cpu[K0]) / ((len(cpu) - 1 - K0) * d.batch_size) if len(cpu) > K0 + 1 else float("nan")
    result = {"times": times, "cpu": cpu_per_image, "batch": d.batch_size, "steps_per_epoch": steps_per_epoch, "top1": 100 * correct / max(n, 1)}
    if out is not None:
        Path(out).write_text(json.dumps(result))
    return result


def run_bare(recipe, max_steps: int, *, style: str = "bare") -> dict:
    """The bare loop in a process of its own, in a new session as vittui's worker is: with the kernel's
    autogroup scheduling a session is a scheduling group, so both sides get the same share of a busy CPU."""
    from vittui.recipe import save

    with tempfile.TemporaryDirectory() as tmp:
        rp, out = Path(tmp) / "recipe.toml", Path(tmp) / "out.json"
        save(recipe, rp)
        subprocess.run([sys.executable, __file__, "--child", str(rp), "--steps", str(max_steps), "--style", style,
                        "--out", str(out)], check=True, start_new_session=True)
        return json.loads(out.read_text())


def dashboard_alone(seconds: float, step_every: float = 0.15) -> float:
    """The monitor on a fake live run (a thread appends a Step event every `step_every` s, no torch):
    the dashboard's CPU as a percentage of one core, measured over `seconds` after a 2 s settle."""
    import threading

    from vittui.runs import launcher

    root = Path(tempfile.mkdtemp(prefix="vittui-bench-dash-"))
    run = launcher.prepare_run(demo_recipe(), root, "fake")
    run.write_status(RunStatus(state="running", pid=os.getpid()))
    w = ev.EventWriter(run.events_path)
    w.write(ev.RunStarted(name="fake", model="vit", params_total=1, params_trainable=1, num_classes=10,
                          classes=list("0123456789"), train_size=1, val_size=1, steps_per_epoch=22,
                          total_steps=10**6, device="cpu"))
    done = threading.Event()

    def feed():
        i = 0
        while not done.is_set():
            i += 1
            w.write(ev.Step(step=i, epoch=i / 22, loss=1 / i, lr=1e-3, grad_norm=1.0, images_per_s=400,
                            data_time=0.01, step_time=step_every))
            time.sleep(step_every)

    threading.Thread(target=feed, daemon=True).start()
    share = []

    async def go():
        from vittui.ui.app import create_app

        app = create_app(root, attach="fake")
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(2)
            c0, t0 = time.process_time(), time.perf_counter()
            await pilot.pause(seconds)
            share.append(100 * (time.process_time() - c0) / (time.perf_counter() - t0))
            app.exit()

    try:
        asyncio.run(go())
    finally:
        done.set()
    return share[0]


def ablate(recipe, root: Path, rounds: int) -> None:
    """Where does the attached run's extra time go? The vittui run with the dashboard whole, without its
    hardware sampler, without probe loading, and without a dashboard; then the bare loop alone and beside
    the monitor on a fake run (`dashboard_alone`). One run each per round, in turn."""
    import threading

    from vittui.ui.screens import monitor as M

    whole_hw, whole_probe = M.MonitorScreen.sample_hardware, M.MonitorScreen.load_probe
    bs = recipe.data.batch_size
    for i in range(rounds):
        for v in ("whole", "no-hardware", "no-probe", "no-dashboard", "bare", "bare+fake-dashboard", "bare+accelerate"):
            M.MonitorScreen.sample_hardware = (lambda self: None) if v == "no-hardware" else whole_hw
            M.MonitorScreen.load_probe = (lambda self, path: None) if v == "no-probe" else whole_probe
            if v.startswith("bare"):
                th = None
                if v == "bare+fake-dashboard":
                    th = threading.Thread(target=dashboard_alone, args=(60,), daemon=True)
                    th.start()
                    time.sleep(3)
                b = run_bare(recipe, recipe.schedule.max_steps, style="bare+accelerate" if v == "bare+accelerate" else "bare")
                print(f"round {i + 1} {v:20s} {rate(b['times'], bs):6.1f} img/s  worker {1000 * b['cpu']:.2f} ms/image",
                      flush=True)
                if th is not None:
                    th.join()
                continue
            r = run_vittui(recipe, root, f"ablate-{v}-{i}", dashboard=v != "no-dashboard")
            print(f"round {i + 1} {v:20s} {rate(r['times'], bs):6.1f} img/s  worker {1000 * r['cpu_worker']:.2f} "
                  f"ms/image  dashboard {1000 * r['cpu_ui'] if v != 'no-dashboard' else 0:.2f} ms/image   ({load_note()})", flush=True)
    M.MonitorScreen.sample_hardware, M.MonitorScreen.load_probe = whole_hw, whole_probe


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="2 rounds of 3 epochs")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=10, help="step cap = epochs × steps per epoch (22)")
    ap.add_argument("--threads", type=int, default=0, help="compute.threads for both sides (0 = torch default); "
                    "1 keeps OpenMP from thrashing on a machine shared with other jobs")
    ap.add_argument("--redraw", type=float, default=0.0, help="what-if: the monitor's redraw interval in seconds "
                    "(patches vittui.ui.screens.monitor.REDRAW_S in this process; 0 = as shipped)")
    ap.add_argument("--dashboard-alone", type=float, default=0.0, metavar="SECONDS",
                    help="only measure the monitor's CPU on a fake live run (a step every 150 ms), shipped "
                    "redraw interval vs 1.0 s, alternating")
    ap.add_argument("--no-dashboard", action="store_true", help="leave the dashboard out of the vittui side")
    ap.add_argument("--ablate", action="store_true", help="vittui with parts of the dashboard switched off, and the "
                    "bare loop alone / beside a dashboard on a fake run, one run each per round")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--style", default="bare", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        from vittui.recipe import load

        bare_train(load(a.child), a.steps, style=a.style, out=Path(a.out))
        return 0
    if a.dashboard_alone:
        import vittui.ui.screens.monitor as monitor

        shipped = monitor.REDRAW_S
        for i in range(2):
            for r in (shipped, 1.0):
                monitor.REDRAW_S = r
                print(f"monitor on a fake live run, REDRAW_S={r}: {dashboard_alone(a.dashboard_alone):.1f}% of a core "
                      f"({load_note()})", flush=True)
        return 0
    if a.quick:
        a.rounds, a.epochs = 2, 3
    if a.redraw:
        import vittui.ui.screens.monitor as monitor

        monitor.REDRAW_S = a.redraw
    steps = 22 * a.epochs  # 1437 train images // 64 = 22 full batches per epoch
    recipe = demo_recipe(**{"schedule.max_steps": steps, "compute.threads": a.threads})
    bs = recipe.data.batch_size
    root = Path(tempfile.mkdtemp(prefix="vittui-bench-overhead-"))
    if a.ablate:
        ablate(recipe, root, a.rounds)
        return 0
    print(f"demo-digits, {steps} steps ({a.epochs} epochs), probe_every={recipe.run.probe_every}, "
          f"threads={a.threads or 'default'}, redraw every {a.redraw or 'shipped'} s, "
          f"dashboard {'off' if a.no_dashboard else 'attached (headless run_test, 120x40)'}; {load_note()}")
    wall, cpu = [], []
    for i in range(a.rounds):  # alternate A/B (and swap the order each round) so load drift hits both
        order = ("vittui", "bare") if i % 2 == 0 else ("bare", "vittui")
        got = {}
        for which in order:
            if which == "vittui":
                got[which] = run_vittui(recipe, root, f"overhead-{i}", dashboard=not a.no_dashboard)
            else:
                got[which] = run_bare(recipe, steps)
        v, b = got["vittui"], got["bare"]
        wall.append(rate(v["times"], bs) / rate(b["times"], bs))
        cpu.append(b["cpu"] / v["cpu"])
        print(f"round {i + 1}: wall images/s vittui {rate(v['times'], bs):.1f} / bare {rate(b['times'], bs):.1f} = "
              f"{wall[-1]:.3f}; CPU ms/image vittui {1000 * v['cpu']:.2f} (dashboard {1000 * v['cpu_ui']:.2f}) / "
              f"bare {1000 * b['cpu']:.2f} -> {cpu[-1]:.3f}   ({load_note()})", flush=True)
    print(f"vittui / bare loop, images/s by wall clock: {median(wall):.3f}; by CPU time per image (worker + "
          f"dashboard vs bare): {median(cpu):.3f} (medians of {a.rounds} paired rounds); target >= 0.98")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The runs screen with many runs: how long until the first full draw.

    python benchmarks/runs_screen_bench.py [--runs 1000] [--repeat 3]

Creates N small run directories (the demo recipe, a status.json in a mix of final states, a few events),
then times, side by side:
  1. `scan_runs` (what the screen's scan worker calls) in this process;
  2. the runs screen's first full draw through the app factory (`create_app(...).run_test()`, 120x40):
     from `action_runs` until a frame with a full screen of rows has been drawn; and until every row is in
     the table (the rest go in a batch per frame);
  3. `vittui runs` and `vittui runs --json` as subprocesses (start-up included), for comparison.
Target for 2: <= 0.5 s with 1,000 runs (issue #16). On a shared box the wall time follows the load, so the
CPU seconds the process spent on that first draw are printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import demo_recipe, load_note, median  # noqa: E402

STATES = ("finished", "stopped", "failed", "suspended", "finished")


def make_runs(root: Path, n: int) -> None:
    from vittui import recipe as R
    from vittui.runs import events as E
    from vittui.runs.store import RunDir, RunStatus

    text = R.to_toml(demo_recipe()) if hasattr(R, "to_toml") else None
    for i in range(n):
        run = RunDir(root / f"run-{i:04d}").create()
        if text is None:
            R.save(demo_recipe(), run.recipe_path)
        else:
            run.recipe_path.write_text(text)
        run.write_status(RunStatus(state=STATES[i % len(STATES)], step=100 + i, total_steps=660, pid=0,
                                   best_top1=0.5 + (i % 40) / 100, last_top1=0.5))
        w = E.EventWriter(run.events_path)
        for s in range(1, 4):
            w.write(E.Step(step=s, epoch=s / 22, loss=2.3 - 0.1 * s, lr=1e-3, grad_norm=1.0, images_per_s=600.0,
                           data_time=0.004, step_time=0.1, torch_allocated=0, torch_reserved=0, t=1.7e9 + s))
        w.close()


async def first_draw(root: Path, n: int) -> tuple[float, float, float]:
    from vittui.hardware import FakeSource, HostSnapshot
    from vittui.ui.app import create_app
    from vittui.ui.screens.setup import SetupScreen

    host = HostSnapshot(cpu_percent=0.0, cpu_count=2, ram_used=1 << 30, ram_total=8 << 30, worker_rss=None,
                        worker_cpu_percent=None)
    app = create_app(root, gpu_source=FakeSource([], host, reason="benchmark"))
    SetupScreen.PREFLIGHT_SETTLE_S = 3600.0  # no `vittui check` subprocess competing for the CPU
    async with app.run_test(size=(120, 40)) as pilot:
        while not isinstance(app.screen, SetupScreen):
            await pilot.pause(0.01)
        await pilot.pause(0.5)
        t0, c0 = time.perf_counter(), time.process_time()
        app.action_runs()
        from vittui.ui.widgets.runs_table import RunsTable

        screenful = 35  # rows a 120x40 terminal shows
        while True:
            tables = list(app.screen.query(RunsTable))
            if tables and tables[0].row_count >= screenful and len(tables[0].rows_data) >= screenful:
                break
            await asyncio.sleep(0.002)
        await pilot._wait_for_screen()  # the frame with the rows in it
        t_screen, c_screen = time.perf_counter() - t0, time.process_time() - c0
        while not (tables[0].row_count == n and len(tables[0].rows_data) == n):
            await asyncio.sleep(0.005)
        await pilot._wait_for_screen()
        return t_screen, c_screen, time.perf_counter() - t0


def timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import os

    from vittui.runs import registry
    from vittui.runs.registry import scan_runs

    with tempfile.TemporaryDirectory(prefix="vittui-runs-bench-") as tmp:
        root = Path(tmp) / "runs"
        t0 = time.perf_counter()
        make_runs(root, args.runs)
        print(f"{args.runs} run directories written in {time.perf_counter() - t0:.1f} s ({load_note()})")

        scans = []
        for _ in range(args.repeat):
            getattr(registry, "_MODEL_NAMES", {}).clear()  # cold: what a fresh process pays
            t0 = time.perf_counter()
            rows = scan_runs(root)
            scans.append(time.perf_counter() - t0)
        assert len(rows) == args.runs
        draws, cpus, alls = [], [], []
        for _ in range(args.repeat):
            getattr(registry, "_MODEL_NAMES", {}).clear()  # cold, as a dashboard that has just started
            screen, cpu, every = asyncio.run(first_draw(root, args.runs))
            draws.append(screen)
            cpus.append(cpu)
            alls.append(every)
        env = {**os.environ, "VITTUI_RUNS": str(root)}
        cli = [sys.executable, "-m", "vittui.cli", "runs"]
        plain = [timed(cli, env) for _ in range(args.repeat)]
        js = [timed(cli + ["--json"], env) for _ in range(args.repeat)]

    def fmt(xs):
        return f"median {median(xs):.3f} s  (runs: {', '.join(f'{x:.3f}' for x in xs)})"

    print(f"scan_runs, in process           {fmt(scans)}")
    print(f"runs screen, first full draw    {fmt(draws)}   target <= 0.5 s")
    print(f"  the same, CPU seconds (all threads of this process: less sensitive to the load) {fmt(cpus)}")
    print(f"runs screen, all rows in table  {fmt(alls)}")
    print(f"vittui runs (subprocess)        {fmt(plain)}")
    print(f"vittui runs --json (subprocess) {fmt(js)}")
    print(f"first draw / scan_runs = {median(draws) / median(scans):.2f}")


if __name__ == "__main__":
    main()

"""`vittui queue [--json]`, `vittui queue rm RUN`, `vittui queue top RUN`: the run queue of this runs folder
(runs/queue.py) — queued runs in the order they will start, then the live ones and the Slurm jobs still
pending (with the job id and Slurm's state) — and the two changes a person makes to it. Errors (an unknown run, a run that is not queued) are one line and exit 2."""

from __future__ import annotations

import sys

from vittui.commands._common import JSON_HELP, print_json, resolve_run, runs_root


def add_parser(sub) -> None:
    q = sub.add_parser("queue", help="list the run queue (queued and live runs); rm/top a queued run")
    q.add_argument("action", nargs="?", choices=["list", "rm", "top"], default="list")
    q.add_argument("run", nargs="?", help="the queued run (for rm and top)")
    q.add_argument("--json", action="store_true", help=JSON_HELP)
    q.set_defaults(func=run)


def rows(root) -> list[dict]:
    """Queued runs (position 1 first), then live runs and runs waiting in Slurm's queue (position None):
    what `vittui queue` lists. Slurm is asked once (`squeue`) for every Slurm run's job."""
    from vittui.recipe import load
    from vittui.runs import queue
    from vittui.runs.registry import is_live, scan_runs
    from vittui.runs.store import RunDir

    def row(run, state, pos, job_id=None, job=None):
        entry = queue.read_entry(run)
        try:
            model = load(run.recipe_path).model.name
        except Exception:  # noqa: BLE001 - a broken recipe must not hide the run
            model = "?"
        status = run.read_status()
        return {"position": pos, "name": run.name, "state": state, "model": model,
                "estimate_bytes": entry.estimate_bytes if entry else None,
                "gpus": entry.gpus if entry else 0, "gpu_ids": entry.gpu_ids if entry else [],
                "resume": entry.resume if entry else False, "pid": (status.pid or None) if status else None,
                "message": status.message if status else "", "executor": "slurm" if job_id else "local",
                "job_id": job_id, "job_state": job}

    waiting = queue.queued(root)
    out = [row(r, "queued", i) for i, r in enumerate(waiting, 1)]
    names = {r.name for r in waiting}
    for r in scan_runs(root):  # one squeue for every Slurm run's job
        if r.name not in names and (is_live(r.state) or (r.job_id and r.state == "queued")):  # a job pending
            out.append(row(RunDir(r.path), r.state, None, r.job_id, r.job_state))
    return out


def run(args) -> int:
    from vittui.hardware import fmt_bytes
    from vittui.runs import queue

    root = runs_root(args)
    if args.action in ("rm", "top"):
        if not args.run:
            print(f"error: `vittui queue {args.action}` needs a RUN", file=sys.stderr)
            return 2
        rd = resolve_run(args, args.run)
        try:
            if args.action == "rm":
                queue.remove(rd)
            else:
                queue.top(rd)
        except queue.QueueError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        pos = queue.position(rd)
        if args.json:
            print_json({"name": rd.name, "action": args.action, "state": "queued" if pos else "stopped",
                        "position": pos})
        elif args.action == "rm":
            print(f"removed {rd.name} from the queue (state stopped; its directory is kept)")
        else:
            print(f"{rd.name} is first in line (position {pos})")
        return 0
    if args.run:
        print("error: `vittui queue` lists; to change the queue use `vittui queue rm RUN` or `vittui queue top RUN`",
              file=sys.stderr)
        return 2
    table = rows(root)
    alive = queue.scheduler_alive(root)
    if args.json:
        print_json({"scheduler_alive": alive, "runs": table})
        return 0
    if not table:
        print(f"nothing queued or live in {root}/")
        return 0
    print(f"scheduler: {'running' if alive else 'not running'}")
    print(f"{'POS':>3}  {'NAME':<28} {'STATE':<9} {'ESTIMATE':>10} {'GPU':<5} MODEL")
    for r in table:
        est = fmt_bytes(r["estimate_bytes"]) if r["estimate_bytes"] else "-"
        gpu = ",".join(map(str, r["gpu_ids"])) or (str(r["gpus"]) + "?" if r["gpus"] else "-")
        where = f"  (slurm {r['job_id']} {r['job_state'] or '?'})" if r["job_id"] else ""
        print(f"{r['position'] or '-':>3}  {r['name']:<28} {r['state']:<9} {est:>10} {gpu:<5} {r['model']}{where}")
    return 0

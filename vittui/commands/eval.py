"""`vittui eval RUN [--checkpoint best|last]`: the evaluation report beyond accuracy."""

from __future__ import annotations

import json
import sys

from vittui.commands._common import JSON_HELP, print_json, resolve_run


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="evaluate a run: per-class, confusion, calibration, robustness, speed")
    p.add_argument("run")
    p.add_argument("--checkpoint", default="best", help="best | last | a step number")
    p.add_argument("--no-robustness", action="store_true", help="skip the corruption sweep")
    p.add_argument("--threshold", type=float, default=0.5, help="decision threshold for two-class tasks")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    import torch

    from vittui.analysis.evaluate import evaluate, robustness, throughput
    from vittui.analysis.metrics import write_report
    from vittui.data.sources import build_data
    from vittui.train.restore import restore

    rd = resolve_run(args, args.run)
    restored = restore(rd.path, args.checkpoint)
    recipe = restored.recipe
    data = build_data(recipe, for_eval=True)
    model = restored.model
    print(f"evaluating {rd.name} ({restored.checkpoint.name}{', EMA weights' if restored.ema else ''}) "
          f"on {data.val_size} validation image files (unreadable ones are skipped and counted)", file=sys.stderr)
    report = evaluate(model, data.val_loader, len(restored.classes), class_names=restored.classes,
                      threshold=args.threshold)
    if not args.no_robustness:
        report.robustness = robustness(model, data.val_loader, mean=recipe.data.mean, std=recipe.data.std,
                                       seed=recipe.run.seed)
    report.throughput = throughput(model, recipe.model.img_size, batch_sizes=(1, recipe.data.batch_size),
                                   device="cuda" if torch.cuda.is_available() else "cpu")
    json_path, md_path = write_report(rd.path, report)
    if args.json:
        print_json({"run": rd.name, "checkpoint": restored.checkpoint.name, "ema": bool(restored.ema),
                    "report": json.loads(report.to_json())})
    else:
        print(report.to_markdown())
    print(f"wrote {json_path} and {md_path}", file=sys.stderr)
    return 0

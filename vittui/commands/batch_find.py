"""`vittui batch-find PRESET [--set k=v]… [--max-memory GIB] [--max-batch N] [--json]`: the largest
`data.batch_size` that fits, with images/s at each size tried and a recommendation
(vittui/train/batch_find.py). Pre-flight first; no run directory is created."""

from __future__ import annotations

import sys

from vittui.commands._common import FINDER_JSON_HELP, print_json
from vittui.commands._finder import build_for_finder


def add_parser(sub) -> None:
    p = sub.add_parser("batch-find", help="largest batch that fits (real steps), images/s, a recommendation")
    p.add_argument("preset", help="recipe .toml or shipped preset name (e.g. demo-digits)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. model.img_size=64")
    p.add_argument("--max-memory", metavar="GIB",
                   help="memory to fit in, in GiB (or 512MB, 2GB); default: free RAM on the CPU, the whole GPU")
    p.add_argument("--max-batch", type=int, help="largest batch to try (default: the training set's size)")
    p.add_argument("--json", action="store_true", help=FINDER_JSON_HELP)
    p.set_defaults(func=run)


def run(args) -> int:
    from vittui.commands.estimate import parse_size
    from vittui.hardware import fmt_bytes

    limit = None
    if args.max_memory is not None:
        try:
            limit = parse_size(args.max_memory)
        except ValueError:
            limit = 0
        if limit <= 0:
            print(f"error: --max-memory must be a positive size in GiB, e.g. 8 or 512MB (got {args.max_memory!r})",
                  file=sys.stderr)
            return 2
    if args.max_batch is not None and args.max_batch < 1:
        print(f"error: --max-batch must be at least 1 (got {args.max_batch})", file=sys.stderr)
        return 2
    if (b := build_for_finder(args)) is None:
        return 2
    from vittui.train.batch_find import find_batch

    def progress(t) -> None:
        if not args.json:
            print(f"  tried batch {t.batch}: {'fits' if t.fits else 'does not fit'}", file=sys.stderr, flush=True)

    r = find_batch(b, max_memory=limit, max_batch=args.max_batch, on_try=progress)
    if args.json:
        print_json(r.as_dict())
        return 0 if r.largest else 1
    print(f"device {r.device}; limit {fmt_bytes(r.limit_bytes)} ({r.limit_source}); batches up to {r.max_batch}"
          + (f" in steps of {r.unit} (mixup needs even batches)" if r.unit > 1 else ""))
    measured = "peak (CUDA)" if r.device.startswith("cuda") else "peak"
    print(f"  {'batch':>6s}  {'fits':<4s}  {measured:>11s}  {'estimate':>10s}  {'images/s':>9s}")
    for t in sorted(r.tries, key=lambda t: t.batch):
        peak = fmt_bytes(t.peak_bytes) if t.peak_bytes is not None else "n/a"
        ips = f"{t.images_per_s:9.1f}" if t.images_per_s else f"{'-':>9s}"
        print(f"  {t.batch:>6d}  {'yes' if t.fits else 'no':<4s}  {peak:>11s}  {fmt_bytes(t.estimate_bytes):>10s}  "
              f"{ips}" + (f"  {t.note}" if t.note else ""))
    if not r.largest:
        print(f"not even a batch of {r.unit} fits: lower model.img_size, turn on compute.grad_checkpointing or use "
              "a smaller model")
        return 1
    print(f"largest that fits: {r.largest}")
    print(f"recommended: data.batch_size = {r.recommended}   (rule: {r.rule})")
    return 0

"""`vittui predict RUN IMAGE_OR_FOLDER… [--checkpoint best|last] [--top-k 5] [--json]`: class names and
probabilities. Folders run in batches with a progress bar on stderr; unreadable files are reported on stderr
and skipped."""

from __future__ import annotations

import json
import sys

from vittui.commands._common import resolve_run


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="class probabilities for images or folders of images")
    p.add_argument("run")
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--checkpoint", default="best", help="best | last | a step number")
    p.add_argument("--top-k", type=int, default=5, help="classes shown per image (default 5)")
    p.add_argument("--batch-size", type=int, default=0, help="images per batch (default: the recipe's)")
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None,
                     help="show the progress bar even when stderr is not a terminal")
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.top_k < 1:
        print(f"error: --top-k must be >= 1 (got {args.top_k})", file=sys.stderr)
        return 2
    if args.batch_size < 0:
        print(f"error: --batch-size must be >= 1 (got {args.batch_size})", file=sys.stderr)
        return 2
    from vittui.deploy.predict import image_files, predict

    rd = resolve_run(args, args.run)
    files = image_files(args.inputs)
    if not files:
        print(f"error: no image files in {' '.join(args.inputs)}", file=sys.stderr)
        return 2
    show_bar = args.progress if args.progress is not None else sys.stderr.isatty()
    show_bar = show_bar and (len(files) > 1)
    bar = None
    if show_bar:
        from tqdm import tqdm

        bar = tqdm(total=len(files), unit="img", file=sys.stderr, desc="predict", dynamic_ncols=True)

    def on_skip(s) -> None:
        msg = f"skipped {s.image}: {s.error}"
        if bar is not None:
            bar.write(msg, file=sys.stderr)
        else:
            print(msg, file=sys.stderr)

    try:
        result = predict(rd.path, args.inputs, checkpoint=args.checkpoint, top_k=args.top_k,
                         batch_size=args.batch_size or None, files=files,
                         progress=bar.update if bar is not None else None, on_skip=on_skip)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(json.dumps(result.to_dict(), indent=1))
    else:
        width = max((len(p.image) for p in result.predictions), default=0)
        for p in result.predictions:
            cells = "  ".join(f"{c} {100 * prob:5.1f}%" for c, prob in p.top)
            print(f"{p.image:<{width}}  {cells}")
    n, s = len(result.predictions), len(result.skipped)
    print(f"{n} image{'s' if n != 1 else ''} predicted with {rd.name}/{result.checkpoint}"
          f"{' (EMA weights)' if result.ema else ''}" + (f"; {s} unreadable skipped" if s else ""), file=sys.stderr)
    return 0 if n else 1

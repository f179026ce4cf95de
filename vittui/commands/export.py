"""`vittui export PRESET -o train.py [--set k=v]…`: the recipe as a standalone training script."""

from __future__ import annotations

import sys
from pathlib import Path

from vittui.commands._common import load_recipe


def add_parser(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a standalone training script for a recipe (torch, timm, accelerate; no vittui)",
        description="Write the recipe as one readable training script that runs with `python train.py` "
                    "or `accelerate launch train.py` and prints the same losses as `vittui train`.",
    )
    p.add_argument("preset", help="a .toml recipe or the name of a shipped preset")
    p.add_argument("-o", "--output", default="-", help="the script to write (default: standard output)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set optim.lr=3e-4 (repeatable)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output file")
    p.set_defaults(func=run)


def run(args) -> int:
    from vittui.planning.codegen import export_script

    recipe = load_recipe(args)
    name = Path(str(args.preset)).stem
    text = export_script(recipe, preset=name)
    if args.output == "-":
        sys.stdout.write(text)
        return 0
    out = Path(args.output)
    if out.exists() and not args.force:
        print(f"error: {out} exists; pass --force to overwrite it", file=sys.stderr)
        return 2
    if out.parent and not out.parent.exists():
        print(f"error: folder {out.parent} does not exist", file=sys.stderr)
        return 2
    out.write_text(text, encoding="utf-8")
    print(f"wrote {out} ({text.count(chr(10))} lines); run it with `python {out}` or "
          f"`accelerate launch {out}`", file=sys.stderr)
    return 0

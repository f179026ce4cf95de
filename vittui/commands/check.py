"""`vittui check PRESET [--set k=v]… [--json]`: the recipe validator and pre-flight, without training.

The same checks `vittui train` runs before a run directory exists (vittui/planning/preflight.py and
preflight_libs.py), printed as findings: one line per problem. The setup screen calls it in a
subprocess on a saved temporary recipe (the UI process never imports torch), reading `--json`:
`{"ok": bool, "problems": [str, ...]}`. Exit 0 when ok, 2 otherwise.
"""

from __future__ import annotations

import sys

from vittui.commands._common import JSON_HELP, load_recipe, output_root, print_json
from vittui.recipe import RecipeError


def add_parser(sub) -> None:
    p = sub.add_parser("check", help="validate a recipe and run the pre-flight checks, without training")
    p.add_argument("preset", help="recipe .toml or shipped preset name (e.g. demo-digits)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override, e.g. optim.lr=3e-4")
    p.add_argument("--json", action="store_true", help=JSON_HELP)
    p.set_defaults(func=run)


def problems_of(args) -> list[str]:
    """The recipe's problems: a value the validator refuses (it stops at the first), or pre-flight's."""
    try:
        recipe = load_recipe(args)
    except RecipeError as e:
        return [f"RecipeError: {e}"]
    except FileNotFoundError as e:
        return [str(e)]
    from vittui.planning.preflight_libs import preflight

    return preflight(recipe, output_root(args, recipe))


def run(args) -> int:
    problems = problems_of(args)
    if args.json:
        print_json({"ok": not problems, "problems": problems})
    elif problems:
        for line in problems:
            print(f"error: {line}", file=sys.stderr)
    else:
        print(f"{args.preset}: ok (recipe valid, pre-flight found nothing)")
    return 2 if problems else 0

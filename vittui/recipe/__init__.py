"""The training recipe: typed, frozen sections loaded from TOML, validated with errors a person can act on.

The recipe is the one description of a run that every other part reads: the worker builds from it,
the dashboard edits it, the estimator plans with it and the exporter turns it into code. It imports
neither torch nor Textual so that any process can load it in milliseconds.

Import everything from here (`from vittui.recipe import Recipe, load`); the modules hold one job each:
`schema` (the sections and their defaults), `checks` (choices, ranges, types, cross-field rules),
`codec` (TOML and dicts, overrides, field access) and `presets` (the shipped recipes).
"""

import dataclasses  # noqa: F401  (kept for callers that used vittui.recipe.dataclasses)
from dataclasses import fields, replace  # noqa: F401  (likewise R.fields / R.replace)

from vittui.recipe.checks import AUTO_AUGMENT, CHOICES, RANGES
from vittui.recipe.codec import (
    apply_overrides,
    diff,
    dumps,
    field_keys,
    field_type,
    from_dict,
    get,
    load,
    loads,
    parse_override,
    save,
    set_value,
    to_dict,
)
from vittui.recipe.presets import list_presets, load_preset, presets_dir, resolve_preset
from vittui.recipe.schema import (
    SECTIONS,
    AdaptSection,
    AugmentSection,
    ComputeSection,
    DataSection,
    ModelSection,
    OptimSection,
    Recipe,
    RecipeError,
    RegularizeSection,
    RunSection,
    ScheduleSection,
    three_channels,
)

__all__ = [
    "Recipe", "RecipeError", "ModelSection", "DataSection", "AugmentSection", "OptimSection",
    "RegularizeSection", "ScheduleSection", "AdaptSection", "ComputeSection", "RunSection",
    "load", "loads", "dumps", "save", "from_dict", "to_dict", "apply_overrides", "parse_override",
    "diff", "get", "set_value", "field_keys", "field_type", "list_presets", "load_preset", "resolve_preset",
    "presets_dir", "SECTIONS", "CHOICES", "RANGES", "AUTO_AUGMENT", "three_channels",
]

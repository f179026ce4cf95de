"""Recipes in and out of TOML and plain dicts, overrides (`section.key=value`), field access and diffs.
`from_dict` is the only way a recipe comes into being, so every path validates."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

from vittui.recipe.checks import check_recipe, check_value, coerce, field_hints, unknown_key
from vittui.recipe.schema import SECTIONS, Recipe, RecipeError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def from_dict(data: dict[str, Any], source: str | None = None) -> Recipe:
    """Build a Recipe from nested dicts; the only way a recipe comes into being, so every path validates."""
    try:
        if not isinstance(data, dict):
            raise RecipeError("a recipe must be a table of sections")
        sections: dict[str, Any] = {}
        for name, values in data.items():
            if name not in SECTIONS:
                raise unknown_key(name, list(SECTIONS))
            if not isinstance(values, dict):
                raise RecipeError(f"[{name}] must be a table of settings (got {values!r})")
            cls = SECTIONS[name]
            hints = field_hints(cls)
            kwargs = {}
            for key, value in values.items():
                full = f"{name}.{key}"
                if key not in hints:
                    raise unknown_key(full, list(hints))
                kwargs[key] = coerce(full, hints[key], value)
                check_value(full, kwargs[key])
            sections[name] = cls(**kwargs)
        recipe = Recipe(**sections)
        for name, cls in SECTIONS.items():  # defaults are validated too
            for f in fields(cls):
                check_value(f"{name}.{f.name}", getattr(getattr(recipe, name), f.name))
        check_recipe(recipe)
        return recipe
    except RecipeError as e:
        if source and not e.source:
            raise RecipeError(e.message, source) from None
        raise


def to_dict(recipe: Recipe) -> dict[str, dict[str, Any]]:
    """Nested plain dicts; None (unset override) is left out because TOML has no null."""
    out: dict[str, dict[str, Any]] = {}
    for name in SECTIONS:
        section = getattr(recipe, name)
        out[name] = {
            f.name: list(v) if isinstance(v, tuple) else v
            for f in fields(section)
            if (v := getattr(section, f.name)) is not None
        }
    return out


def diff(a: Recipe, b: Recipe) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two recipes."""
    da, db = to_dict(a), to_dict(b)
    out = {}
    for name in SECTIONS:
        for key in sorted(set(da[name]) | set(db[name])):
            if da[name].get(key) != db[name].get(key):
                out[f"{name}.{key}"] = (da[name].get(key), db[name].get(key))
    return out


def dumps(recipe: Recipe) -> str:
    import tomli_w

    return tomli_w.dumps(to_dict(recipe))


def loads(text: str, source: str | None = None) -> Recipe:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise RecipeError(f"TOML syntax error: {e}", source) from None
    return from_dict(data, source)


def load(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError(f"recipe file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise RecipeError(f"cannot read recipe: {e}", str(path)) from None
    return loads(text, str(path))


def save(recipe: Recipe, path: str | Path) -> None:
    Path(path).write_text(dumps(recipe), encoding="utf-8")


def parse_override(item: str) -> tuple[str, Any]:
    """`optim.lr=3e-4` -> ("optim.lr", 0.0003); values are TOML, bare words are strings."""
    if "=" not in item:
        raise RecipeError(f"override {item!r} must look like section.key=value")
    key, raw = item.split("=", 1)
    key, raw = key.strip(), raw.strip()
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return key, value


def apply_overrides(recipe: Recipe, overrides: list[str] | dict[str, Any], source: str | None = None) -> Recipe:
    items = overrides.items() if isinstance(overrides, dict) else map(parse_override, overrides)
    data = to_dict(recipe)
    for key, value in items:
        if "." not in key:
            raise RecipeError(f"override key {key!r} must be section.key (e.g. optim.lr)", source)
        section, leaf = key.split(".", 1)
        if section not in data:
            raise RecipeError(unknown_key(section, list(SECTIONS)).message, source)
        data[section][leaf] = value
    return from_dict(data, source)


def get(recipe: Recipe, key: str) -> Any:
    section, leaf = key.split(".", 1)
    return getattr(getattr(recipe, section), leaf)


def set_value(recipe: Recipe, key: str, value: Any) -> Recipe:
    """One field changed and the whole recipe revalidated; the editor's path to a new recipe."""
    return apply_overrides(recipe, {key: value})


def field_keys() -> list[str]:
    return [f"{name}.{f.name}" for name, cls in SECTIONS.items() for f in fields(cls)]


def field_type(key: str) -> Any:
    section, leaf = key.split(".", 1)
    return field_hints(SECTIONS[section])[leaf]


__all__ = [
    "from_dict", "to_dict", "diff", "dumps", "loads", "load", "save", "parse_override", "apply_overrides", "get",
    "set_value", "field_keys", "field_type",
]

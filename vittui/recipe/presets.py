"""The recipes shipped with vittui (`vittui/presets/*.toml`, package data) and finding one by name."""

from __future__ import annotations

from pathlib import Path

from vittui.recipe.codec import load
from vittui.recipe.schema import Recipe, RecipeError


def presets_dir() -> Path:
    """Presets ship inside the package so an installed vittui has them without the repository."""
    return Path(__file__).parent.parent / "presets"


def list_presets() -> list[str]:
    return sorted(p.stem for p in presets_dir().glob("*.toml"))


def resolve_preset(name_or_path: str | Path) -> Path:
    """A path to a TOML file, or the name of a shipped preset (with or without .toml)."""
    p = Path(name_or_path)
    if p.exists():
        return p
    stem = p.name[:-5] if p.name.endswith(".toml") else p.name
    shipped = presets_dir() / f"{stem}.toml"
    if shipped.exists():
        return shipped
    raise RecipeError(
        f"recipe file not found: {name_or_path} (shipped presets: {', '.join(list_presets())})"
    )


def load_preset(name_or_path: str | Path) -> Recipe:
    return load(resolve_preset(name_or_path))


__all__ = ["presets_dir", "list_presets", "resolve_preset", "load_preset"]

"""The recipe editor: every field of every section, grouped; each change validated by `recipe.set_value`
(the same validator as the CLI). A rejected value shows its message inline and the old value stays."""

from __future__ import annotations

from dataclasses import fields

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from vittui import recipe as R
from vittui.ui.widgets.recipe_field import RecipeField

# The grouping: what a person tunes most first, then model/data/run.
SECTION_ORDER = ("model", "data", "augment", "optim", "regularize", "schedule", "adapt", "compute", "run")
SECTION_TITLES = {
    "model": "model", "data": "data", "augment": "augment", "optim": "optim", "regularize": "regularize",
    "schedule": "schedule", "adapt": "adapt (freezing / LoRA)", "compute": "compute", "run": "run",
}


def set_field(recipe: R.Recipe, key: str, value) -> R.Recipe:
    """`recipe.set_value`, plus clearing an optional field (None is not a TOML value)."""
    if value is None:
        data = R.to_dict(recipe)
        section, leaf = key.split(".", 1)
        data[section].pop(leaf, None)
        return R.from_dict(data)
    return R.set_value(recipe, key, value)


class RecipeEditor(VerticalScroll):
    can_focus = False

    class Changed(Message):
        """A validated new recipe."""

        def __init__(self, recipe: R.Recipe, key: str) -> None:
            super().__init__()
            self.recipe = recipe
            self.key = key

    def __init__(self, recipe: R.Recipe, **kwargs) -> None:
        super().__init__(**kwargs)
        self.recipe = recipe

    def compose(self) -> ComposeResult:
        for name in SECTION_ORDER:
            yield Static(f"[{SECTION_TITLES[name]}]", classes="section-title", markup=False)
            section = getattr(self.recipe, name)
            for f in fields(section):
                yield RecipeField(f"{name}.{f.name}", getattr(section, f.name))

    def field(self, key: str) -> RecipeField:
        return self.query_one("#f-" + key.replace(".", "-"), RecipeField)

    def set_recipe(self, recipe: R.Recipe) -> None:
        """Attributes down: show a recipe that came from elsewhere (a preset, the model table)."""
        self.recipe = recipe
        for f in self.query(RecipeField):
            f.show_value(R.get(recipe, f.key))
            f.show_error("")

    def on_recipe_field_edited(self, event: RecipeField.Edited) -> None:
        event.stop()
        old = R.get(self.recipe, event.key)
        try:
            new = set_field(self.recipe, event.key, event.value)
        except R.RecipeError as e:
            event.field.show_error(e.message)
            event.field.show_value(old)
            return
        event.field.show_error("")
        self.recipe = new
        event.field.show_value(R.get(new, event.key))
        self.post_message(self.Changed(new, event.key))

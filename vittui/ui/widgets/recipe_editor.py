"""The recipe editor: sections listed on the left (model, data, augment, optim, regularize, schedule,
adapt, compute, run), the fields of the chosen section on the right. Each change is validated by
`recipe.set_value` (the same validator as the CLI); a rejected value shows its message inline and the
old value stays. Only one section's fields exist at a time, which keeps the first frame fast."""

from __future__ import annotations

from dataclasses import fields

from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from vittui import recipe as R
from vittui.ui.widgets.recipe_field import RecipeField

SECTION_ORDER = ("model", "data", "augment", "optim", "regularize", "schedule", "adapt", "compute", "run")
SECTION_TITLES = {
    "model": "model", "data": "data", "augment": "augment", "optim": "optimizer", "regularize": "regularize",
    "schedule": "schedule", "adapt": "adapt: freezing / LoRA", "compute": "compute", "run": "run",
}


def set_field(recipe: R.Recipe, key: str, value) -> R.Recipe:
    """`recipe.set_value`, plus clearing an optional field (None is not a TOML value)."""
    if value is None:
        data = R.to_dict(recipe)
        section, leaf = key.split(".", 1)
        data[section].pop(leaf, None)
        return R.from_dict(data)
    return R.set_value(recipe, key, value)


class RecipeEditor(Horizontal):
    class Changed(Message):
        """A validated new recipe."""

        def __init__(self, recipe: R.Recipe, key: str) -> None:
            super().__init__()
            self.recipe = recipe
            self.key = key

    def __init__(self, recipe: R.Recipe, **kwargs) -> None:
        super().__init__(**kwargs)
        self.recipe = recipe
        self.section = "model"

    def compose(self) -> ComposeResult:
        yield OptionList(*[Option(name, id=name) for name in SECTION_ORDER], id="sections")
        yield VerticalScroll(id="fields")

    def on_mount(self) -> None:
        self.query_one("#sections", OptionList).highlighted = 0
        # the fields mount right after the first frame: styling their ~40 widgets is a third of the time
        # to the first frame, and the section list, the catalogue and the buttons are usable before then
        self.call_after_refresh(self.show_section, self.section)

    async def show_section(self, name: str) -> None:
        """Mount the fields of one section (values from the current recipe)."""
        self.section = name
        box = self.query_one("#fields", VerticalScroll)
        await box.remove_children()
        section = getattr(self.recipe, name)
        await box.mount(
            Static(f"[{SECTION_TITLES[name]}]", classes="section-title", markup=False),
            *[RecipeField(f"{name}.{f.name}", getattr(section, f.name)) for f in fields(section)],
        )
        box.scroll_home(animate=False)
        options = self.query_one("#sections", OptionList)
        idx = SECTION_ORDER.index(name)
        if options.highlighted != idx:
            with options.prevent(OptionList.OptionHighlighted):
                options.highlighted = idx

    async def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        event.stop()
        if event.option.id and event.option.id != self.section:
            await self.show_section(event.option.id)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        fields_box = self.query_one("#fields")
        first = next(iter(fields_box.query("#control")), None)
        if first is not None:
            first.focus()

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

"""Property-based fuzzing of recipes: whatever a person (or a fuzzer) writes, `loads` and
`apply_overrides` answer with a valid Recipe or a RecipeError — never another exception.

Documents are nested dicts whose section and key names are drawn from the real ones, misspellings of
them and random strings, with values of every TOML type (typed values for real keys, so that many
documents get past the per-field checks and reach the cross-field rules), serialized with tomli_w.
Raw random text and mutated preset text exercise the TOML parser path.

Integers are kept to TOML's 64-bit range here (the spec's range; tomllib itself is lenient); integers
beyond it have their own test at the bottom.
"""

from __future__ import annotations

import datetime as dt
import typing

import pytest
import tomli_w
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vittui import recipe as R
from vittui.recipe import Recipe, RecipeError

FUZZ = settings(max_examples=300, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much])

SECTION_NAMES = list(R.SECTIONS)
KEYS = {name: [f.name for f in R.fields(cls)] for name, cls in R.SECTIONS.items()}
ALL_LEAVES = sorted({k for ks in KEYS.values() for k in ks})
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)

# ---------------------------------------------------------------------------------------------- names
# Strategies are built once: building them inside draws costs hypothesis a validation pass each time.

HOW = st.sampled_from(["drop", "dup", "swap", "upper", "suffix", "replace"])
SUFFIX = st.sampled_from(["s", "_", " ", ".x", "-1"])
POSITION = st.integers(0, 10**6)


@st.composite
def misspelt(draw, real: st.SearchStrategy) -> str:
    word = draw(real)
    i = draw(POSITION) % len(word)
    how = draw(HOW)
    if how == "drop":
        return word[:i] + word[i + 1:] or "y"
    if how == "dup":
        return word[:i] + word[i] + word[i:]
    if how == "swap" and i + 1 < len(word):
        return word[:i] + word[i + 1] + word[i] + word[i + 2:]
    if how == "upper":
        return word.upper()
    if how == "suffix":
        return word + draw(SUFFIX)
    return word[:i] + draw(st.characters()) + word[i + 1:]


def names(real: list[str]) -> st.SearchStrategy:
    """Mostly real names, some misspelt ones, some random strings."""
    exact = st.sampled_from(real)
    return st.one_of(exact, exact, exact, misspelt(exact), st.text(max_size=12))


SECTION_NAME = names(SECTION_NAMES)
KEY_NAME = {name: names(KEYS.get(name, ALL_LEAVES)) for name in SECTION_NAMES}
ANY_KEY_NAME = names(ALL_LEAVES)

# --------------------------------------------------------------------------------------------- values

SCALARS = st.one_of(
    st.text(max_size=20),
    INT64,
    st.integers(-10, 10),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.datetimes(min_value=dt.datetime(1, 1, 1), max_value=dt.datetime(9999, 12, 31)),
    st.dates(),
    st.times(),
)
ANY_VALUE = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def _typed(tp) -> st.SearchStrategy:
    """Values of roughly the field's type, often in range, sometimes just outside."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        return _typed(inner[0])
    if origin is tuple:
        args = typing.get_args(tp)
        elem = _typed(args[0])
        if len(args) == 2 and args[1] is not Ellipsis:
            return st.lists(elem, min_size=1, max_size=3)
        return st.lists(elem, max_size=4)
    if tp is bool:
        return st.booleans()
    if tp is int:
        return st.one_of(st.integers(-3, 300), INT64)
    if tp is float:
        return st.one_of(st.floats(-2, 2), st.floats(0, 1), st.integers(-3, 3), st.floats())
    if tp is str:
        return st.text(max_size=16)
    return ANY_VALUE


def _field_strategy(full: str) -> st.SearchStrategy:
    typed = _typed(R.field_type(full))
    if full in R.CHOICES:
        typed = st.one_of(st.sampled_from(R.CHOICES[full]), typed)
    return st.one_of(typed, typed, typed, ANY_VALUE)


FIELD_VALUE = {full: _field_strategy(full) for full in R.field_keys()}


def field_value(section: str, key: str) -> st.SearchStrategy:
    return FIELD_VALUE.get(f"{section}.{key}", ANY_VALUE)


SECTION_COUNT, KEY_COUNT, ONE_IN_TEN = st.integers(0, 5), st.integers(0, 6), st.integers(0, 9)
REAL_SECTION = st.sampled_from(SECTION_NAMES)
REAL_KEY = {name: st.sampled_from(KEYS[name]) for name in SECTION_NAMES}
TYPED_VALUE = {full: _typed(R.field_type(full)) for full in R.field_keys()}


@st.composite
def documents(draw, clean: bool = False) -> dict:
    """Noisy: any names, any values. Clean: real names and typed values, so the document gets past
    the per-field checks and reaches the ranges and the cross-field rules."""
    doc: dict = {}
    for _ in range(draw(SECTION_COUNT)):
        section = draw(REAL_SECTION if clean else SECTION_NAME)
        if not clean and draw(ONE_IN_TEN) == 0 and draw(ONE_IN_TEN) < 3:  # a value where a table should be
            doc[section] = draw(ANY_VALUE)
            continue
        table = doc.get(section) if isinstance(doc.get(section), dict) else {}
        for _ in range(draw(KEY_COUNT)):
            key = draw(REAL_KEY[section] if clean else KEY_NAME.get(section, ANY_KEY_NAME))
            table[key] = draw(TYPED_VALUE[f"{section}.{key}"] if clean else field_value(section, key))
        doc[section] = table
    return doc


def _toml(doc: dict) -> str | None:
    try:
        return tomli_w.dumps(doc)
    except (TypeError, ValueError):  # e.g. something tomli_w cannot write; not our concern
        return None


def _valid_or_recipe_error(text: str) -> Recipe | None:
    try:
        r = R.loads(text, source="fuzz.toml")
    except RecipeError as e:
        assert str(e) and e.message, "a RecipeError must say what is wrong"
        return None
    assert isinstance(r, Recipe)
    assert R.loads(R.dumps(r)) == r  # a recipe that loads also round-trips
    return r


# ---------------------------------------------------------------------------------------------- tests


@FUZZ
@given(st.one_of(documents(), documents(clean=True)))
@example({"optim": {"lr": 0.5, "name": "sgd"}, "model": {"img_size": 32, "patch_size": 4}})
@example({"optim": {"lr": 1}})
@example({"optim": {"betas": [0.9]}})
@example({"data": {"mean": [], "std": []}})
@example({"run": {"name": ".."}})
@example({"model": [{"name": "x"}]})
def test_any_toml_document_gives_a_recipe_or_a_recipe_error(doc):
    text = _toml(doc)
    if text is not None:
        _valid_or_recipe_error(text)


@FUZZ
@given(st.text(max_size=300))
@example("")
@example("[optim\nlr = 1")
@example("[optim]\nlr = 1e999")
@example("[optim]\nlr = nan")
@example("[data]\nmean = [1, 'a']")
@example("a.b.c = 1")
@example("[[optim]]\nlr = 0.1")
def test_raw_text_gives_a_recipe_or_a_recipe_error(text):
    _valid_or_recipe_error(text)


PRESET_TEXTS = [R.resolve_preset(n).read_text() for n in R.list_presets()]


@settings(FUZZ, max_examples=200)
@given(st.sampled_from(PRESET_TEXTS), st.lists(st.tuples(st.sampled_from(["delete", "insert", "dup"]),
                                                        st.integers(0, 10**6), st.integers(0, 40),
                                                        st.text(max_size=20)), min_size=1, max_size=4))
def test_mutated_preset_text_gives_a_recipe_or_a_recipe_error(text, edits):
    for how, pos, n, ins in edits:
        pos = pos % (len(text) + 1)
        if how == "delete":
            text = text[:pos] + text[pos + n:]
        elif how == "insert":
            text = text[:pos] + ins + text[pos:]
        else:
            text = text[:pos] + text[pos:pos + n] + text[pos:]
    _valid_or_recipe_error(text)


DOTTED, FORM = st.integers(0, 3), st.sampled_from(["toml", "toml", "bare", "random"])
EQUALS = st.sampled_from(["=", " = ", "=="])


@st.composite
def override_items(draw) -> str:
    if draw(ONE_IN_TEN) == 0:
        return draw(st.text(max_size=30))  # anything, with or without '='
    section = draw(SECTION_NAME)
    key = draw(KEY_NAME.get(section, ANY_KEY_NAME))
    dotted = [f"{section}.{key}", f"{section}.{key}", key, f"{section}.{key}.x"][draw(DOTTED)]
    value = draw(field_value(section, key))
    form = draw(FORM)
    if form == "toml":
        raw = _toml({"v": value})
        raw = raw[len("v = "):].rstrip("\n") if raw and raw.startswith("v = ") else str(value)
    elif form == "bare":
        raw = str(value)
    else:
        raw = draw(st.text(max_size=20))
    return f"{dotted}{draw(EQUALS)}{raw}"


@FUZZ
@given(st.sampled_from([Recipe()] + [R.load_preset(n) for n in R.list_presets()]),
       st.lists(override_items(), max_size=5))
@example(Recipe(), ["optim.lr=3e-4", "data.batch_size=8"])
@example(Recipe(), ["optim.lr"])
@example(Recipe(), ["=1"])
@example(Recipe(), [".=1"])
@example(Recipe(), ["optim.lr=1\nx = 2"])
@example(Recipe(), ["optim.lr={a = 1}"])
@example(Recipe(), ["model.name=[1, 2]"])
@example(Recipe(), ["nosection.lr=1"])
def test_overrides_give_a_recipe_or_a_recipe_error(base, items):
    try:
        r = R.apply_overrides(base, items, source="--set")
    except RecipeError as e:
        assert e.message
        return
    assert isinstance(r, Recipe) and R.loads(R.dumps(r)) == r


@settings(FUZZ, max_examples=150)
@given(st.dictionaries(st.one_of(st.sampled_from(R.field_keys()), st.text(max_size=20)), ANY_VALUE, max_size=4))
def test_dict_overrides_give_a_recipe_or_a_recipe_error(overrides):
    try:
        r = Recipe().with_overrides(overrides)
    except RecipeError:
        return
    assert isinstance(r, Recipe)


# ----------------------------------------------------------------------------- integers beyond 64 bits


@pytest.mark.parametrize("how", ["file", "override"])
def test_integer_too_large_for_a_float_is_a_recipe_error(how):
    huge = "9" * 400
    with pytest.raises(RecipeError, match="optim.lr"):
        if how == "file":
            R.loads(f"[optim]\nlr = {huge}")
        else:
            Recipe().with_overrides([f"optim.lr={huge}"])

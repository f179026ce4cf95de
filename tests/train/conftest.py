import pytest
from tiny import TINY  # noqa: F401 (tests import it from here too)
from tiny import tiny_recipe as _tiny_recipe

from vittui.recipe import Recipe


@pytest.fixture
def tiny_recipe() -> Recipe:
    return _tiny_recipe()

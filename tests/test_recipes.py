"""The recipe registry: device classes, selection and fallback, user files, recipe errors."""

import textwrap

import numpy as np
import pytest

from fmmloopy import recipes as registry
from fmmloopy.devices import device_classes
from fmmloopy.execution import compiled_operator
from fmmloopy.recipes import RecipeError, load_recipes, select_recipe


@pytest.fixture(autouse=True)
def isolated_registry():
    """Recipes registered by a test do not leak into the next one."""
    registry.ensure_loaded()
    recipes, sources = list(registry._REGISTRY), set(registry._LOADED_SOURCES)
    yield
    registry._REGISTRY[:] = recipes
    registry._LOADED_SOURCES.clear()
    registry._LOADED_SOURCES.update(sources)


def test_device_classes_of_pocl_run_from_specific_to_any(device):
    classes = device_classes(device)
    assert classes[-1] == "any"
    assert "cpu" in classes  # the CI machine has only PoCL's CPU device
    assert classes.index("cpu-pocl") < classes.index("cpu")


def test_default_selection_prefers_device_recipe_and_never_the_reference(device):
    assert select_recipe("p2p", "pairwise", device).name == "cpu"
    assert select_recipe("m2l", "matvec", device).name == "cpu"
    assert select_recipe("p2p", "pairwise", device, "sequential").name == "sequential"


def test_fallback_reaches_generic_for_an_operator_without_device_recipe(device):
    # An operator of a template that only 'any' recipes cover falls back to 'generic'.
    registry.recipe("only_any_template", device="any", name="generic")(lambda k, c: k)
    assert select_recipe("new_op", "only_any_template", device).name == "generic"


def test_unknown_recipe_name_is_a_clear_error(device):
    with pytest.raises(LookupError, match="no recipe 'nope' for operator 'p2p'"):
        select_recipe("p2p", "pairwise", device, "nope")


def _write(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(textwrap.dedent(body))
    return path


def test_user_recipe_file_via_environment_is_selected_for_its_device(tmp_path, monkeypatch,
                                                                    device):
    path = _write(tmp_path, "my_recipes.py", """
        import loopy as lp
        from fmmloopy.recipes import recipe

        @recipe("p2p", device="cpu-pocl", name="mine")
        def mine(knl, ctx):
            return lp.tag_inames(knl, {"itgt_box": "g.0"})
        """)
    monkeypatch.setenv(registry.RECIPES_ENV, str(path))
    # More specific device class than 'cpu': it becomes the default on PoCL.
    assert select_recipe("p2p", "pairwise", device).name == "mine"
    assert select_recipe("m2l", "matvec", device).name == "cpu"


def test_recipe_that_raises_names_file_operator_and_error(tmp_path, device):
    path = _write(tmp_path, "broken.py", """
        import loopy as lp
        from fmmloopy.recipes import recipe

        @recipe("p2p", device="any", name="broken_split")
        def broken(knl, ctx):
            return lp.split_iname(knl, "not_an_iname", 4)
        """)
    load_recipes(str(path))
    with pytest.raises(RecipeError, match=r"recipe 'broken_split' from .*broken\.py "
                                          r"on operator 'p2p' raised"):
        compiled_operator("p2p", device, recipe="broken_split", dtype=np.float64)


def test_recipe_may_not_change_kernel_arguments(tmp_path, device):
    path = _write(tmp_path, "renaming.py", """
        import loopy as lp
        from fmmloopy.recipes import recipe

        @recipe("p2p", device="any", name="renames_args")
        def renames(knl, ctx):
            return lp.rename_argument(knl, "strengths", "charges")
        """)
    load_recipes(str(path))
    with pytest.raises(RecipeError, match="changed the kernel arguments"):
        compiled_operator("p2p", device, recipe="renames_args")


def test_missing_recipe_file_is_reported():
    with pytest.raises(FileNotFoundError, match="does_not_exist.py"):
        load_recipes("/nonexistent/does_not_exist.py")


def test_executor_is_built_once_per_operator_recipe_device_dtype(device):
    first = compiled_operator("p2p", device, recipe="cpu")
    assert compiled_operator("p2p", device, recipe="cpu") is first
    assert compiled_operator("p2p", device, recipe="sequential") is not first
    assert compiled_operator("p2p", device, recipe="cpu", dtype=np.float32) is not first


def test_named_recipe_of_another_device_class_is_found(device):
    """Every recipe is plain OpenCL: asked for by name, a recipe of another class runs here."""
    @registry.recipe("p2p", device="gpu-imaginary", name="elsewhere")
    def elsewhere(knl, ctx):
        return knl

    assert select_recipe("p2p", "pairwise", device, "elsewhere").name == "elsewhere"
    assert select_recipe("p2p", "pairwise", device).name != "elsewhere"

"""A user's recipe that raises, or that produces code loopy or the OpenCL compiler rejects, fails
``fmmloopy.Fmm`` with a RecipeError naming the recipe file, the operator and the transform (the
loopy call or helper that raised, with its line; or the recipe function whose code failed)."""

import re
import textwrap

import numpy as np
import pytest

import fmmloopy
from fmmloopy.tuning import registry
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import load_recipes

POINTS = np.random.default_rng(90).random((300, 3))

RECIPES = '''
import loopy as lp

from fmmloopy.tuning.recipe import recipe
from fmmloopy.tuning.tools import (
    add_build_options,
    add_preamble,
    parallelize_box_loop,
    spread_over_local_axis,
    stage_in_local_memory,
)


@recipe("p2p", device="any", name="splits_a_missing_loop")
def splits_a_missing_loop(knl, ctx):
    knl = parallelize_box_loop(knl)
    return lp.split_iname(knl, "no_such_loop", 4)


@recipe("p2p", device="any", name="stages_an_output")
def stages_an_output(knl, ctx):
    return stage_in_local_memory(knl, "isrc", ("result",), width=16)


@recipe("p2p", device="any", name="has_a_bug")
def has_a_bug(knl, ctx):
    return knl.no_such_method()


@recipe("p2p", device="any", name="returns_nothing")
def returns_nothing(knl, ctx):
    parallelize_box_loop(knl)


@recipe("p2p", device="any", name="too_wide")
def too_wide(knl, ctx):
    knl = parallelize_box_loop(knl)
    return spread_over_local_axis(knl, "itgt", 2 * ctx.device.max_work_group_size)


@recipe("p2p", device="any", name="not_c")
def not_c(knl, ctx):
    return add_preamble(parallelize_box_loop(knl), "broken", "this is not C;")


@recipe("p2p", device="any", name="unknown_option")
def unknown_option(knl, ctx):
    return add_build_options(parallelize_box_loop(knl), "-cl-no-such-option")


@recipe("p2p", device="any", name="local_loop_alone")
def local_loop_alone(knl, ctx):
    return lp.tag_inames(knl, {"itgt": "l.0"})


@recipe("p2p", device="any", name="unrolls_a_data_dependent_loop")
def unrolls_a_data_dependent_loop(knl, ctx):
    return lp.tag_inames(parallelize_box_loop(knl), {"isrc": "unr"})
'''


@pytest.fixture(scope="module")
def recipe_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("user_recipes") / "my_recipes.py"
    path.write_text(textwrap.dedent(RECIPES))
    return path


@pytest.fixture(autouse=True)
def isolated_registry(recipe_file):
    """These recipes are registered for this module only (``fmmloopy check`` checks all)."""
    registry.ensure_loaded()
    recipes, sources = list(registry.REGISTRY), dict(registry._LOADED)
    load_recipes(str(recipe_file))
    yield
    registry.REGISTRY[:] = recipes
    registry._LOADED.clear()
    registry._LOADED.update(sources)


def _line(text):
    """Line number of ``text`` in the recipe file."""
    lines = textwrap.dedent(RECIPES).splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def _failure(recipe):
    with pytest.raises(RecipeError) as failed:
        fmmloopy.Fmm(POINTS, order=3, n_crit=40, recipes={"p2p": recipe})
    return str(failed.value)


def test_loopy_transform_that_raises_is_named_with_its_line(recipe_file):
    message = _failure("splits_a_missing_loop")
    expected = (f"recipe 'splits_a_missing_loop' from {recipe_file} on operator 'p2p' raised "
                "KeyError in transform split_iname (loopy.transform.iname) called at line "
                f"{_line('no_such_loop')} of my_recipes.py "
                "(`return lp.split_iname(knl, \"no_such_loop\", 4)`): 'no_such_loop'")
    assert message == expected


def test_helper_that_raises_is_named(recipe_file):
    message = _failure("stages_an_output")
    line = _line('("result",)')
    assert message.startswith(
        f"recipe 'stages_an_output' from {recipe_file} on operator 'p2p' raised ValueError in "
        "transform stage_in_local_memory (fmmloopy.tuning.tools) called at line "
        f"{line} of my_recipes.py"), message
    assert "cannot stage ['result']: the kernel writes them" in message


def test_recipe_own_bug_is_located(recipe_file):
    message = _failure("has_a_bug")
    assert message.startswith(
        f"recipe 'has_a_bug' from {recipe_file} on operator 'p2p' raised AttributeError at "
        f"line {_line('no_such_method')} of my_recipes.py (`return knl.no_such_method()`)"), \
        message


def test_recipe_returning_none_is_reported(recipe_file):
    assert _failure("returns_nothing") == (
        f"recipe 'returns_nothing' from {recipe_file} on operator 'p2p' returned NoneType, not "
        "a loopy TranslationUnit")


def _run_failure_prefix(recipe, recipe_file):
    return (f"running operator 'p2p' under recipe '{recipe}' (function {recipe} in "
            f"{recipe_file}) on '")


@pytest.mark.parametrize("recipe,explanation", [
    ("too_wide", r"the recipe's work-group size is not allowed on this device \(at most \d+ "
                 r"work-items, \[.*\] per axis\) \(OpenCL: .*INVALID_WORK_GROUP_SIZE\)"),
    ("not_c", r"the OpenCL compiler rejected the code generated for the recipe \(build log "
              r"below\) \(OpenCL: clBuildProgram failed: BUILD_PROGRAM_FAILURE"),
    # PoCL refuses the option by status; NVIDIA's OpenCL by a failed build whose log says so.
    ("unknown_option", r"the recipe added build options this OpenCL compiler does not accept "
                       r"(\(build log below\) )?\(OpenCL: clBuildProgram failed: "
                       r"(INVALID_BUILD_OPTIONS|BUILD_PROGRAM_FAILURE)"),
    ("local_loop_alone", r"LoopyError: instruction '.*' does not use all local hw axes"),
    # islpy, not loopy, raises here: every exception of code generation is reported alike.
    ("unrolls_a_data_dependent_loop", r"\w*Error: "),
])
def test_code_that_fails_to_generate_build_or_launch_names_recipe_and_operator(
        recipe_file, recipe, explanation):
    message = _failure(recipe)
    assert message.startswith(_run_failure_prefix(recipe, recipe_file)), message
    assert re.search(r"' failed: " + explanation, message, re.DOTALL), message

"""Recipes wrong only at the sizes of a real FMM: shown wrong against a direct sum, then caught
by the default ``fmmloopy check`` (not by its small problems alone) and refused by
:class:`fmmloopy.Fmm`'s first-use verification.

The recipes (``tests/recipes/size_dependent_recipes.py``) each assume a bound of 64 (targets
per box, sources per chunk, rows per work-group, a fast path above 64 coefficients) or of 27 U
entries. The FMM here runs at the defaults (order 6: 152-point surfaces; ``n_crit`` 150).
"""

from pathlib import Path

import numpy as np
import pytest

import fmmloopy
from fmmloopy.check import run_checks
from fmmloopy.distributions import sphere_surface
from fmmloopy.driver import UnverifiedRecipeWarning
from fmmloopy.kernels import get_kernel
from fmmloopy.recipes import RecipeError, load_recipes
from fmmloopy.reference import direct_sum

RECIPES = Path(__file__).parent / "recipes" / "size_dependent_recipes.py"
POINTS = sphere_surface(20_000, np.random.default_rng(7))  # leaves of up to ~150 points
CHARGES = np.random.default_rng(8).uniform(-1.0, 1.0, len(POINTS))
SAMPLE = np.random.default_rng(9).choice(len(POINTS), 300, replace=False)

#: The order-6 FMM is accurate to about 1e-6 (docs/fmm.md); 1e-3 is a thousand times worse.
WRONG = 1e-3

CASES = [  # recipe, the operators it is used for in the FMM, caught by the small problems too
    ("targets_up_to_64", ("p2p",), False),
    ("one_source_chunk", ("p2p", "m2p"), False),
    ("rows_in_one_group", ("m2l", "c2e"), False),
    ("fast_path_above_64", ("m2l",), False),
    ("u_list_up_to_27", ("p2p",), True),
]


@pytest.fixture(scope="module", autouse=True)
def size_dependent_recipes():
    load_recipes(RECIPES)


def _error_against_direct_sum(potential: np.ndarray) -> float:
    expected = direct_sum(get_kernel("laplace"), np.delete(POINTS, SAMPLE, axis=0),
                          np.delete(CHARGES, SAMPLE), POINTS[SAMPLE])
    # direct_sum leaves out no self term: the sampled targets are removed from the sources, so
    # add their charges' contributions from every other point separately.
    for k, i in enumerate(SAMPLE):
        others = np.delete(SAMPLE, k)
        expected[k] += direct_sum(get_kernel("laplace"), POINTS[others], CHARGES[others],
                                  POINTS[i:i + 1])[0]
    return float(np.linalg.norm(potential[SAMPLE] - expected) / np.linalg.norm(expected))


def test_the_shipped_recipes_are_accurate_on_this_problem():
    """The reference point for the errors below: the same FMM with the shipped recipes."""
    assert _error_against_direct_sum(fmmloopy.Fmm(POINTS)(CHARGES)) < 1e-5


@pytest.mark.parametrize("name,operators,small_catches", CASES)
def test_size_dependent_recipe_is_wrong_caught_and_refused(name, operators, small_catches):
    recipes = dict.fromkeys(operators, name)
    # 1. Wrong, shown independently of the check: the FMM run with it, against a direct sum.
    with pytest.warns(UnverifiedRecipeWarning, match=name):
        unverified = fmmloopy.Fmm(POINTS, recipes=recipes, verify_recipes=False)
    assert _error_against_direct_sum(unverified(CHARGES)) > WRONG

    # 2. The default check fails it, at the production sizes; the small problems alone do not
    # (except for the U-list cap, which the adaptive small trees already exceed).
    results = list(run_checks(unverified.device, operators=operators, recipes=[name],
                              recipe_sources=[str(RECIPES)]))
    failed = [r for r in results if not r.ok]
    assert failed and all("differs from 'sequential'" in r.message for r in failed)
    assert all("target box" in r.message for r in failed)  # says where
    assert {r.operator for r in failed} == set(operators)
    assert any(r.problem.endswith("-150") for r in failed)
    small = list(run_checks(unverified.device, operators=operators, recipes=[name],
                            recipe_sources=[str(RECIPES)], production=None))
    assert all(r.ok for r in small) != small_catches

    # 3. Fmm refuses it on first use, saying where it differs.
    with pytest.raises(RecipeError, match=rf"recipe '{name}'.*differs from 'sequential' on "
                                          r"this FMM's tree.*target box"):
        fmmloopy.Fmm(POINTS, recipes=recipes)


def test_summed_loop_on_work_items_is_a_race_caught_and_refused(device):
    """A race PoCL hides: shown by loopy's own race check on the kernel (no fmmloopy code in
    between), then failed by the default check with the loop's name, and refused by Fmm."""
    import warnings

    import loopy as lp
    from loopy.diagnostic import WriteRaceConditionWarning

    from fmmloopy.operators import math_kernel
    from fmmloopy.recipes import RecipeContext, select_recipe

    sizes = {"n_target_coeffs": 152, "n_source_coeffs": 152}
    recipe = select_recipe("m2l", "matvec", device, "summed_loop_on_work_items")
    kernel = recipe(math_kernel("m2l", **sizes),
                    RecipeContext("m2l", "matvec", device, dict(sizes, dtype=np.float64)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        lp.check.check_for_write_races(lp.preprocess_kernel(kernel).default_entrypoint)
    raced = [str(w.message) for w in caught if issubclass(w.category, WriteRaceConditionWarning)]
    assert any("'store'" in message and "iexp_src_inner" in message for message in raced)

    results = list(run_checks(device, operators=["m2l"], recipes=[recipe.name],
                              recipe_sources=[str(RECIPES)]))
    assert results and not any(r.ok for r in results)
    assert all("loop 'iexp_src_inner' (from 'iexp_src', which the template sums over) is "
               "tagged l.0" in r.message for r in results)
    with pytest.raises(RecipeError, match="write race.*iexp_src_inner"):
        fmmloopy.Fmm(POINTS, recipes={"m2l": recipe.name})

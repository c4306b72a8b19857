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
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.checking.check import run_checks
from fmmloopy.driver.builder import UnverifiedRecipeWarning
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.reference import direct_sum
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import load_recipes

RECIPES = Path(__file__).parent / "recipes" / "size_dependent_recipes.py"
POINTS = sphere_surface(20_000, np.random.default_rng(7))  # leaves of up to ~150 points
CHARGES = np.random.default_rng(8).uniform(-1.0, 1.0, len(POINTS))
SAMPLE = np.random.default_rng(9).choice(len(POINTS), 300, replace=False)

#: The order-6 FMM is accurate to about 1e-6 (docs/fmm.md); 1e-3 is a thousand times worse.
WRONG = 1e-3

#: The small check problems that take the production-size problems' surfaces and ranks in a check
#: that runs those (fmmloopy.checking.problems.check_problems).
PRODUCTION_SIZED_SMALL = {"sphere", "tgt!=src"}

CASES = [  # recipe, the operators it is used for in the FMM, caught by the small problems too
    ("targets_up_to_64", ("p2p",), False),
    ("one_source_chunk", ("p2p", "m2p"), False),
    # M2L's cores have at most 56 rows at order 6 (its compressed ranks), its expansions and
    # the check-to-equivalent maps 152.
    ("rows_in_one_group", ("m2l_expand", "c2e"), False),
    ("fast_path_above_64", ("c2e",), False),
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

    # 2. The default check fails it, at the production sizes (the production-size problems, or
    # the small trees that take their surfaces and ranks); the small problems alone do not
    # (except for the U-list cap, which the adaptive small trees already exceed).
    results = list(run_checks(unverified.device, operators=operators, recipes=[name],
                              recipe_sources=[str(RECIPES)], fail_fast=True))
    failed = [r for r in results if not r.ok]
    assert failed and all("differs from 'sequential'" in r.message for r in failed)
    assert all("target box" in r.message for r in failed)  # says where
    assert {r.operator for r in failed} == set(operators)
    if not small_catches:
        assert all(r.problem.endswith("-150") or r.problem in PRODUCTION_SIZED_SMALL
                   for r in failed)
    small = list(run_checks(unverified.device, operators=operators, recipes=[name],
                            recipe_sources=[str(RECIPES)], production=None, fail_fast=True))
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

    from fmmloopy.maths.operators import math_kernel
    from fmmloopy.tuning.recipe import RecipeContext
    from fmmloopy.tuning.registry import select_recipe

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
                              recipe_sources=[str(RECIPES)], fail_fast=True))
    assert results and not any(r.ok for r in results)
    assert all("loop 'iexp_src_inner' (from 'iexp_src', which the template sums over) is "
               "tagged l.0" in r.message for r in results)
    with pytest.raises(RecipeError, match="write race.*iexp_src_inner"):
        fmmloopy.Fmm(POINTS, recipes={"m2l": recipe.name})


HELPER_RECIPE = '''
from helper_widths import WIDTH  # a constant from a helper file of the user's

from fmmloopy.tuning.recipe import recipe
from fmmloopy.tuning.tools import pad_loop, parallelize_box_loop


@recipe("p2p", device="any", name="padded_to_helper_width")
def padded_to_helper_width(knl, ctx):
    return pad_loop(parallelize_box_loop(knl), "itgt", WIDTH)
'''

FMM_SCRIPT = '''
import sys
import numpy as np
import fmmloopy
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.maths.green import get_kernel
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import load_recipes
from fmmloopy.maths.reference import direct_sum

load_recipes("recipe_with_helper.py")
points = sphere_surface(20000, np.random.default_rng(7))
charges = np.random.default_rng(8).uniform(-1.0, 1.0, len(points))
try:
    fmm = fmmloopy.Fmm(points, recipes={"p2p": "padded_to_helper_width"},
                       verify_recipes=sys.argv[1] == "verify")
except RecipeError as error:
    print("refused:", str(error)[:200])
    sys.exit(0)
sample = np.arange(0, len(points), 97)
expected = [direct_sum(get_kernel("laplace"), np.delete(points, i, 0), np.delete(charges, i),
                       points[i:i + 1])[0] for i in sample]
error = np.linalg.norm(fmm(charges)[sample] - expected) / np.linalg.norm(expected)
print(f"error {error:.3e}")
'''


@pytest.mark.slow
def test_a_helper_constant_edited_between_runs_is_what_runs(tmp_path):
    """A recipe takes its width from a helper file; after the helper changes, nothing serves
    the old kernel: the check (fresh workers, no disk kernel cache) fails the new, wrong
    width, a new process's Fmm refuses it, and without verification its error is plain."""
    import os
    import subprocess
    import sys

    (tmp_path / "recipe_with_helper.py").write_text(HELPER_RECIPE)
    (tmp_path / "fmm_run.py").write_text(FMM_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(tmp_path))

    def run(*command):
        return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=600)

    check = (sys.executable, "-m", "fmmloopy.cli", "check", "--recipes",
             "recipe_with_helper.py", "--recipe", "padded_to_helper_width", "--operator", "p2p",
             "--fail-fast")
    (tmp_path / "helper_widths.py").write_text("WIDTH = 4096\n")  # every leaf fits: right
    assert run(*check).returncode == 0
    right = run(sys.executable, "fmm_run.py", "verify")
    assert float(right.stdout.split("error")[1]) < 1e-5, right.stdout + right.stderr

    (tmp_path / "helper_widths.py").write_text("WIDTH = 64\n")  # leaves of up to 150: wrong
    failed = run(*check)
    assert failed.returncode == 1 and "target 64 of" in failed.stdout
    assert "refused:" in run(sys.executable, "fmm_run.py", "verify").stdout
    wrong = run(sys.executable, "fmm_run.py", "no-verify")
    assert float(wrong.stdout.split("error")[1]) > WRONG, wrong.stdout + wrong.stderr

"""float32 FMMs (``Fmm(..., dtype=np.float32)``): accuracy against the float64 direct sum, the
refusals of what float32 cannot hold, and the first-use verification of float32 kernels.

Accuracy: a float32 FMM rounds the charges to float32 and stores each point relative to its
leaf's centre in float32 (docs/fmm.md), and its own arithmetic adds rounding to the FMM's
truncation error. The contract: against the exact potential of the given inputs, it adds at most
:data:`FLOAT32_FLOOR` relative L2 error (about 170 unit round-offs; measured 4e-6 here and
5.6e-6 at 10**6 sphere points, benchmarks/float32.py). Rounding the points to float32 as they
are (not relative to their leaves) would move the potential by more than that (2e-5 here, 1e-4
at 10**6 points: a property of the inputs and their condition number); the test measures both.
"""

from pathlib import Path

import numpy as np
import pytest

import fmmloopy
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.base.precision import FLOAT32, FLOAT64, get_precision
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.reference import direct_sum
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import load_recipes

#: The most relative L2 error float32 arithmetic may add to an FMM's (module docstring).
FLOAT32_FLOOR = 1e-5
#: The same for a gradient. Its sum is its nearest terms' (here the sum of the terms' magnitudes
#: is 1.0 times the sum's, against 22 for the potential), and a term's error is its offset's
#: rounding over the distance, doubled (1/r^2): the rounding of points stored relative to their
#: leaf's centre is about 2^-24 of the leaf's size, so a close pair in a large leaf sets the
#: floor, which moves with the tree. Measured on this test's points at order 6, over 14 trees
#: (the three root cubes n_crit="auto" may choose, n_crit 64 to 256): 5.0e-6 to 2.4e-5, 2.7 to
#: 6.4 times the potential's float32 error (1.1e-6 to 7.3e-6).
GRADIENT_FLOAT32_FLOOR = 4e-5

POINTS = sphere_surface(6000, np.random.default_rng(3))
CHARGES = np.random.default_rng(4).uniform(-1.0, 1.0, len(POINTS))
SAMPLE = np.random.default_rng(5).choice(len(POINTS), 200, replace=False)


def _relative_error(potential: np.ndarray, expected: np.ndarray) -> float:
    return float(np.linalg.norm(potential.astype(np.float64) - expected)
                 / np.linalg.norm(expected))


def _rounded(values: np.ndarray) -> np.ndarray:
    return values.astype(np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def expected():
    """The float64 direct sum at the sampled targets (no self term: a coincident source gives
    nothing, as in the FMM), of the inputs and of the points rounded to float32 as they are."""
    laplace = get_kernel("laplace")
    return (direct_sum(laplace, POINTS, CHARGES, POINTS[SAMPLE]),
            direct_sum(laplace, _rounded(POINTS), CHARGES, _rounded(POINTS[SAMPLE])))


def test_float32_fmm_adds_at_most_its_floor(expected):
    order = 6
    single = fmmloopy.Fmm(POINTS, order=order, dtype=np.float32)
    double = fmmloopy.Fmm(POINTS, order=order)
    potential = single(CHARGES)
    assert potential.dtype == np.float32 and potential.shape == (len(POINTS),)
    assert single.dtype == np.float32 and single.precision is FLOAT32
    exact, of_rounded_points = expected
    error64 = _relative_error(double(CHARGES)[SAMPLE], exact)
    error32 = _relative_error(potential[SAMPLE], exact)
    assert error32 <= error64 + FLOAT32_FLOOR, (order, error32, error64)
    # Points stored relative to their leaves: below what rounding them as they are would do
    # (measured: 4.2e-6 against 2.0e-5).
    assert error32 <= _relative_error(of_rounded_points, exact) / 2
    # Not float64's numbers rounded at the end: the kernels ran in float32.
    assert np.abs(potential.astype(np.float64) - double(CHARGES)).max() \
        > 4 * FLOAT32.unit_roundoff * np.abs(potential).max()


def test_float32_gradients_and_several_vectors(expected):
    fmm = fmmloopy.Fmm(POINTS, order=6, dtype=np.float32)
    columns = np.stack([CHARGES, -2 * CHARGES, CHARGES[::-1]], axis=1)
    fields = fmm(columns, gradient=True)
    assert fields.potential.dtype == np.float32 and fields.potential.shape == (len(POINTS), 3)
    assert fields.gradient.dtype == np.float32 and fields.gradient.shape == (len(POINTS), 3, 3)
    reference = direct_sum(get_kernel("laplace").with_fields(("potential", "gradient")),
                           POINTS, CHARGES, POINTS[SAMPLE])
    # Order 6's truncation (9e-7 for the potential in float64, docs/fmm.md; a gradient loses
    # about a digit more) plus float32's floor, for each column; column 1 is -2 times column 0.
    assert _relative_error(fields.potential[SAMPLE, 0], reference[0]) \
        <= 1e-6 + FLOAT32_FLOOR
    assert _relative_error(fields.gradient[SAMPLE, :, 0], reference[1:].T) \
        <= 1e-5 + GRADIENT_FLOAT32_FLOOR
    assert _relative_error(fields.potential[SAMPLE, 1], -2 * reference[0]) \
        <= 1e-6 + FLOAT32_FLOOR


def test_points_float32_cannot_tell_apart_are_refused():
    points = np.array([[1.0, 1.0, 1.0], [1.0 + 1e-9, 1.0, 1.0], [-1.0, 0.5, 0.0],
                       [0.0, -1.0, 0.25]])
    with pytest.raises(ValueError, match=r"same point in float32.*source 0 and source 1"):
        fmmloopy.Fmm(points, dtype=np.float32)
    fmmloopy.Fmm(points)(np.ones(4))  # float64 tells them apart
    # A target on a source in float32 only: their interaction would be left out.
    targets = np.array([[-1.0 + 1e-12, 0.5, 0.0], [0.3, 0.3, 0.3]])
    with pytest.raises(ValueError, match=r"source 0 and target 0"):
        fmmloopy.Fmm(points[2:], targets, dtype=np.float32)


def test_results_float32_cannot_hold_are_refused():
    points = POINTS[:500]
    fmm = fmmloopy.Fmm(points, dtype=np.float32)
    with pytest.raises(OverflowError, match="float32"):
        fmm(np.full(len(points), 1e37))
    with pytest.raises(ValueError, match="smallest normal"):
        fmm(np.full(len(points), 1e-40))
    # Strengths far from 1 but results inside float32's range: scaled by a power of two, as
    # in float64; the charges' mantissas differ, so the two sums round apart within the floor.
    small = fmm(np.full(len(points), 1e-30)).astype(np.float64) * 1e30
    ones = fmm(np.ones(len(points))).astype(np.float64)
    assert np.linalg.norm(small - ones) <= FLOAT32_FLOOR * np.linalg.norm(ones)


@pytest.mark.parametrize("dtype", [np.float16, np.int32, "complex64", None])
def test_other_dtypes_are_refused_by_name(dtype):
    with pytest.raises(ValueError, match="dtype must be one of"):
        fmmloopy.Fmm(POINTS[:10], dtype=dtype)


def test_precisions():
    assert get_precision("float32") is FLOAT32 and get_precision(np.float64) is FLOAT64
    assert FLOAT32.unit_roundoff == 2.0 ** -24 and FLOAT64.unit_roundoff == 2.0 ** -53


def test_unshipped_recipe_in_float32_is_verified_against_float64():
    """A wrong recipe is refused at first use in float32 too: its float32 kernel is compared
    with the float64 host reference within float32's rounding bound."""
    load_recipes(Path(__file__).parent / "recipes" / "wrong_recipes.py")
    with pytest.raises(RecipeError, match="p2p"):
        fmmloopy.Fmm(POINTS[:3000], dtype=np.float32, recipes={"p2p": "wrong_sign"})

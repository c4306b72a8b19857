"""Several strength vectors in one call: charges ``(N, k)`` -> potentials ``(M, k)``.

The reference for each column is the single-vector call on it (the path every other test
checks against direct summation), plus a direct sum for the batched call itself. A batched
call does the same floating-point operations per vector as a single one (the pairwise kernels
keep one accumulator per vector and sum in the same order; the matvecs apply the same matrices
to each vector's rows in the same groups), so columns agree within ``SAME_SUMS_BOUND``
(conftest: 1e-13 relative; measured bitwise equal on AVX-512's target lanes, about 1e-16 on
AVX2's paths, whose vectorised loops may add in another order).
"""

from pathlib import Path

import numpy as np
import pytest
from conftest import SAME_SUMS_BOUND, relative_l2

import fmmloopy
import fmmloopy.api.fmm as fmm_module
from fmmloopy.base.distributions import sphere_surface
from fmmloopy.checking.check import run_checks
from fmmloopy.driver.memory import with_vectors
from fmmloopy.execution import resources
from fmmloopy.execution.resources import host_bytes_needed
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.reference import direct_sum
from fmmloopy.tuning.recipe import RecipeError
from fmmloopy.tuning.registry import ensure_loaded

WRONG_RECIPES = Path(__file__).parent / "recipes" / "wrong_recipes.py"
#: Columns against single-vector calls (module docstring).
COLUMN_BOUND = SAME_SUMS_BOUND
#: The FMM against direct summation at order 6 (docs/kernels.md: ~1e-7 to 1e-6 relative L2).
ORDER_6_BOUND = 2e-6


def assert_columns_equal_single_calls(fmm, batched_result, charges, **single_options):
    for column in range(charges.shape[1]):
        single = fmm(charges[:, column], **single_options)
        assert relative_l2(batched_result[:, column], single) <= COLUMN_BOUND, column


@pytest.fixture(scope="module")
def sphere_fmm():
    points = sphere_surface(6000, np.random.default_rng(3))
    return points, fmmloopy.Fmm(points, order=6)


def test_columns_equal_single_calls_and_direct_sums(sphere_fmm):
    """Columns of very different sizes (1e-290 to 1e290, and one of zeros): each is scaled
    on its own, so each keeps every digit; the sums match direct summation. (Three vectors
    per call throughout this file: each count of vectors is a kernel of its own.)"""
    points, fmm = sphere_fmm
    rng = np.random.default_rng(0)
    charges = rng.standard_normal((len(points), 4))
    charges[:, 1] *= 1e-290
    charges[:, 2] *= 1e290
    sample = np.arange(0, len(points), 20)
    green = get_kernel("laplace")
    for columns in ([0, 1, 2], [3, 0, 1]):
        block = charges[:, columns]
        block[:, 2] = 0.0 if columns[0] == 0 else block[:, 2]
        potentials = fmm(block)
        assert potentials.shape == (len(points), 3) and potentials.dtype == np.float64
        if columns[0] == 0:
            assert not potentials[:, 2].any()
            block = block[:, :2]
        assert_columns_equal_single_calls(fmm, potentials, block)
        for column in range(block.shape[1]):
            expected = direct_sum(green, points, block[:, column], points[sample])
            assert relative_l2(potentials[sample, column], expected) <= ORDER_6_BOUND, column
    assert fmm(charges[:, :1]).shape == (len(points), 1)  # one column stays a column


def test_dipoles_and_gradients_of_several_vectors(sphere_fmm):
    points, fmm = sphere_fmm
    rng = np.random.default_rng(1)
    charges, dipoles = rng.standard_normal((len(points), 3)), rng.standard_normal(
        (len(points), 3, 3))
    fields = fmm(charges, dipoles=dipoles, gradient=True)
    assert fields.potential.shape == (len(points), 3)
    assert fields.gradient.shape == (len(points), 3, 3)
    for column in range(3):
        single = fmm(charges[:, column], dipoles=dipoles[:, :, column], gradient=True)
        assert relative_l2(fields.potential[:, column], single.potential) <= COLUMN_BOUND
        assert relative_l2(fields.gradient[:, :, column], single.gradient) <= COLUMN_BOUND
    only_dipoles = fmm(dipoles=dipoles)
    assert only_dipoles.shape == (len(points), 3)
    assert relative_l2(only_dipoles[:, 2], fmm(dipoles=dipoles[:, :, 2])) <= COLUMN_BOUND


def test_complex_kernel_with_several_vectors():
    rng = np.random.default_rng(2)
    points = rng.random((3000, 3))
    fmm = fmmloopy.Fmm(points, kernel="helmholtz:k=3.0", order=6)
    charges = rng.standard_normal((3000, 3)) + 1j * rng.standard_normal((3000, 3))
    potentials = fmm(charges)
    assert potentials.dtype == np.complex128 and potentials.shape == (3000, 3)
    assert_columns_equal_single_calls(fmm, potentials, charges)


@pytest.mark.filterwarnings("ignore:build_tree. max_depth=20 reached:RuntimeWarning")
def test_nested_rows_take_several_vectors():
    """10**4 copies of one point: their leaf is summed by a nested FMM (its merged copies'
    charges added per vector)."""
    rng = np.random.default_rng(4)
    points = np.vstack([np.full((10_000, 3), 0.25), rng.random((2000, 3))])
    fmm = fmmloopy.Fmm(points, n_crit=64)
    assert fmm.nested_rows
    charges = rng.uniform(-1, 1, (len(points), 3))
    assert_columns_equal_single_calls(fmm, fmm(charges), charges)


def test_more_vectors_than_one_pass_and_than_memory_allows(monkeypatch):
    """Passes of at most MAX_VECTORS_PER_PASS (3 here, to build no other kernels), and of
    fewer where a plan for them does not fit in memory beside the FMM."""
    monkeypatch.setattr(fmm_module, "MAX_VECTORS_PER_PASS", 3)
    rng = np.random.default_rng(5)
    points = rng.random((20_000, 3))  # expansions large enough to matter beside the operators
    fmm = fmmloopy.Fmm(points, order=4)
    charges = rng.standard_normal((20_000, 7))  # passes of 3, 3 and 1
    assert fmm.vectors_per_pass(charges.shape[1]) == 3
    assert_columns_equal_single_calls(fmm, fmm(charges), charges)

    one, three = (with_vectors(fmm.memory_estimate, vectors, **fmm.points_setup.sizes)
                  for vectors in (1, 3))
    # A memory limit between what one and three vectors at once need of the host (a CPU
    # device's buffers included): one at a time.
    host_one, host_three = (host_bytes_needed(estimate, fmm.device) for estimate in (one, three))
    assert host_one < host_three
    limited = fmmloopy.Fmm(points, order=4, memory_limit=(host_one + host_three) / 2)
    assert limited.vectors_per_pass(3) == 1
    assert_columns_equal_single_calls(limited, limited(charges[:, :3]), charges[:, :3])
    # A device whose global memory lies between what one and three vectors need of it (a GPU's
    # limit, tried on any device): one at a time too.
    assert one.device_bytes < three.device_bytes
    global_size = (one.device_bytes + three.device_bytes) / 2
    monkeypatch.setattr(resources, "device_memory_limits", lambda device: (global_size, 1e15))
    assert fmm.vectors_per_pass(3) == 1


@pytest.mark.parametrize(("charges", "dipoles", "message"), [
    (np.zeros((50, 0)), None, r"hold no charge vector"),
    (np.zeros((2, 50)), None, r"pass charges\.T"),
    (np.zeros((50, 2, 2)), None, r"must have shape \(50,\) or \(50, k\)"),
    (np.zeros((50, 2)), np.zeros((50, 3, 3)), r"as many strength vectors"),
    (np.zeros(50), np.zeros((50, 3, 1)), r"as many strength vectors"),
    (None, np.zeros((50, 3, 0)), r"hold no strength vector"),
    (np.full((50, 2), np.nan), None, r"not finite|NaN"),
])
def test_bad_strength_vectors_are_named(charges, dipoles, message):
    fmm = fmmloopy.Fmm(np.random.default_rng(6).random((50, 3)))
    with pytest.raises(ValueError, match=message):
        fmm(charges, dipoles=dipoles)


def test_the_check_runs_operators_for_several_vectors(device, default_recipe):
    """``fmmloopy check`` builds every operator for 3 vectors too; a recipe right for one
    vector but storing only the first output fails it there, and an FMM given several vectors
    refuses that recipe at first use."""
    results = list(run_checks(device, operators=["p2m", "m2l", "p2p"],
                              recipes=[default_recipe], production=None))
    batched = [r for r in results if r.fields == "x3"]
    assert {r.operator for r in batched} == {"p2m", "m2l", "p2p"}
    assert all(r.ok for r in results), [r.message for r in results if not r.ok]

    wrong = list(run_checks(device, operators=["p2p"], recipes=["first_output_only"],
                            recipe_sources=[str(WRONG_RECIPES)], production=None,
                            fail_fast=True))
    assert all(r.ok for r in wrong if not r.fields)
    assert [r for r in wrong if r.fields == "x3"]
    assert not any(r.ok for r in wrong if r.fields == "x3")

    ensure_loaded([str(WRONG_RECIPES)])
    rng = np.random.default_rng(7)
    points = rng.random((3000, 3))
    fmm = fmmloopy.Fmm(points, recipes={"p2p": "first_output_only"})
    fmm(rng.random(3000))  # one vector: verified on the tree, and right
    with pytest.raises(RecipeError, match="first_output_only.*differs from 'sequential'"):
        fmm(rng.random((3000, 2)))

"""The Laplace Green's function as data: values, the zero self-interaction, lookup errors."""

import numpy as np
import pytest

from fmmloopy.maths.green import LAPLACE_3D, get_kernel


def test_laplace_values_match_one_over_four_pi_r():
    rng = np.random.default_rng(1)
    offsets = rng.standard_normal((50, 3))
    expected = 1 / (4 * np.pi * np.linalg.norm(offsets, axis=1))
    # Same formula, different evaluation order: a few ulps.
    np.testing.assert_allclose(LAPLACE_3D.evaluate(offsets), expected, rtol=1e-15)


def test_self_interaction_is_exactly_zero():
    values = LAPLACE_3D.evaluate(np.zeros((4, 3)))
    assert np.array_equal(values, np.zeros(4))


def test_homogeneity_degree_is_minus_one():
    offsets = np.array([[0.3, -0.2, 0.7]])
    ratio = LAPLACE_3D.evaluate(2.0 * offsets) / LAPLACE_3D.evaluate(offsets)
    assert LAPLACE_3D.homogeneity == -1.0
    np.testing.assert_allclose(ratio, 2.0 ** LAPLACE_3D.homogeneity, rtol=1e-15)


def test_lookup_by_name_and_unknown_name():
    assert get_kernel("laplace") is LAPLACE_3D
    assert get_kernel(LAPLACE_3D) is LAPLACE_3D
    with pytest.raises(ValueError, match="unknown kernel 'stokeslet'"):
        get_kernel("stokeslet")
    with pytest.raises(ValueError, match="kernel 'helmholtz'.*'k'"):
        get_kernel("helmholtz")  # its wavenumber is missing

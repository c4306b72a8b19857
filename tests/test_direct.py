"""Direct summation on the device (fmmloopy.DirectSum) against the numpy direct sum.

The device sums in float64 with the shipped P2P recipe (relaxed math, ``1/sqrt`` refined to a
few units in the last place): each term is within ~1e-15 of the exact one and the sums of up to
2e4 terms below within ~1e-14 relative of numpy's; 1e-12 leaves room and still catches any
error a reference must not have (a missing pair, a wrong sign, a self term).
"""

import numpy as np
import pytest

import fmmloopy
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.reference import direct_sum

BOUND = 1e-12


def relative(value, reference):
    return float(np.abs(value - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def points():
    return np.random.default_rng(0).standard_normal((20_000, 3))


def test_potentials_gradients_dipoles_and_vectors(points):
    rng = np.random.default_rng(1)
    charges, dipoles = rng.standard_normal(len(points)), rng.standard_normal((len(points), 3))
    targets = np.vstack([points[:200], rng.standard_normal((100, 3))])  # some are sources
    direct = fmmloopy.DirectSum(points, targets)
    green = get_kernel("laplace")
    assert relative(direct(charges), direct_sum(green, points, charges, targets)) <= BOUND
    fields = direct(charges, dipoles=dipoles, gradient=True)
    expected = direct_sum(green.with_fields(("potential", "gradient"), ("charge", "dipole")),
                          points, np.vstack([charges, dipoles.T]), targets)
    assert relative(fields.potential, expected[0]) <= BOUND
    assert relative(fields.gradient, expected[1:].T) <= BOUND
    block = np.stack([charges, -2 * charges, charges[::-1]], axis=1)
    columns = direct(block)
    assert columns.shape == (len(targets), 3)
    for column in range(3):
        assert relative(columns[:, column],
                        direct_sum(green, points, block[:, column], targets)) <= BOUND


def test_helmholtz_and_yukawa(points):
    rng = np.random.default_rng(2)
    targets = rng.standard_normal((150, 3))
    for name, charges in (("helmholtz:k=2.0", rng.standard_normal(len(points))
                           + 1j * rng.standard_normal(len(points))),
                          ("yukawa:kappa=3.0", rng.standard_normal(len(points)))):
        result = fmmloopy.direct(points, charges, targets, kernel=name)
        assert relative(result, direct_sum(get_kernel(name), points, charges, targets)) <= BOUND


def test_far_and_tiny_point_sets_keep_their_digits():
    """Points 1e9 from the origin (the differences are exact in float64 only relative to
    the points' centre) and points 1e-200 apart (distances squared underflow unless scaled)."""
    rng = np.random.default_rng(3)
    green = get_kernel("laplace")
    far = rng.standard_normal((3000, 3)) + 1e9
    charges = rng.standard_normal(3000)
    assert relative(fmmloopy.direct(far, charges, far[:100]),
                    direct_sum(green, far, charges, far[:100])) <= BOUND
    tiny = rng.standard_normal((3000, 3)) * 1e-200
    assert relative(fmmloopy.direct(tiny, charges, tiny[:100]),
                    direct_sum(green, tiny, charges, tiny[:100], scaled=True)) <= BOUND


def test_empty_sides_and_bad_input():
    none = fmmloopy.direct(np.zeros((0, 3)), np.zeros(0), np.ones((4, 3)))
    assert none.shape == (4,) and not none.any()
    assert fmmloopy.direct(np.ones((4, 3)), np.ones(4), np.zeros((0, 3))).shape == (0,)
    with pytest.raises(ValueError, match="charges must have shape"):
        fmmloopy.direct(np.ones((4, 3)), np.ones(5))
    with pytest.raises(ValueError, match="sources"):
        fmmloopy.direct(np.ones((4, 2)), np.ones(4))

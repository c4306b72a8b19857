"""The Ewald sum (``fmmloopy.maths.ewald``), the reference of periodic sums: Madelung constants,
independence of the splitting parameter, the gradient against finite differences, a net charge
and points given outside the cell."""

import math

import numpy as np
import pytest

from fmmloopy.maths.ewald import ewald_sum

#: Madelung constants (per nearest-neighbour distance): NaCl's and CsCl's, to 12 digits
#: (the NaCl value is known to many more: 1.7475645946331821...).
NACL = 1.747564594633
CSCL = 1.762674773070


def _rock_salt():
    """NaCl's conventional cell: side 2, ions on the integer points, charges (-1)^(i+j+k)."""
    points = np.array([[i, j, k] for i in range(2) for j in range(2) for k in range(2)], float)
    return points, np.array([(-1.0) ** int(point.sum()) for point in points])


def test_madelung_constants():
    points, charges = _rock_salt()
    potential = ewald_sum(points, charges, cell=2.0)
    # The potential of a +1 ion is -M / (4 pi a) for G = 1 / (4 pi r) and neighbours a = 1 away.
    assert -4 * np.pi * potential[0] == pytest.approx(NACL, abs=1e-12)
    assert np.allclose(potential * charges, potential[0] * charges[0], rtol=0, atol=1e-14)
    cesium = ewald_sum([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], [1.0, -1.0], cell=1.0)
    assert -4 * np.pi * cesium[0] * math.sqrt(3) / 2 == pytest.approx(CSCL, abs=2e-12)


def test_independent_of_the_splitting_and_of_where_the_points_are_given():
    rng = np.random.default_rng(11)
    sides = np.array([1.0, 1.3, 0.8])
    sources = rng.random((60, 3)) * sides
    charges = rng.uniform(-1, 1, 60)  # a net charge: the neutralising background's convention
    targets = rng.random((20, 3)) * sides
    reference = ewald_sum(sources, charges, targets, sides, gradient=True)
    for alpha in (4.0, 9.0):
        other = ewald_sum(sources, charges, targets, sides, gradient=True, alpha=alpha)
        scale = np.abs(charges).sum()
        assert np.abs(other[0] - reference[0]).max() < 1e-11 * scale
        assert np.abs(other[1] - reference[1]).max() < 1e-10 * scale
    # The same points a lattice vector away: the same sums.
    moved = ewald_sum(sources + sides * rng.integers(-2, 3, (60, 3)), charges,
                      targets - sides, sides, gradient=True)
    assert np.abs(moved[0] - reference[0]).max() < 1e-11 * np.abs(charges).sum()
    assert np.abs(moved[1] - reference[1]).max() < 1e-10 * np.abs(charges).sum()


def test_gradient_is_the_potentials_derivative():
    rng = np.random.default_rng(12)
    sources = rng.random((40, 3))
    charges = rng.uniform(-1, 1, 40)
    charges -= charges.mean()
    target = np.array([[0.3, 0.55, 0.71]])
    _, gradient = ewald_sum(sources, charges, target, gradient=True)
    step = 1e-5
    for axis in range(3):
        shift = np.zeros(3)
        shift[axis] = step
        difference = (ewald_sum(sources, charges, target + shift)
                      - ewald_sum(sources, charges, target - shift)) / (2 * step)
        assert difference[0] == pytest.approx(gradient[0, axis], rel=1e-7, abs=1e-9)


def test_a_target_on_a_source_leaves_that_charge_out():
    """Two opposite charges: at one of them, the other's lattice and its own images only."""
    pair = np.array([[0.2, 0.2, 0.2], [0.7, 0.4, 0.5]])
    at_source = ewald_sum(pair, [1.0, -1.0], pair[:1])[0]
    # Its own images with the other charge: the mean of the sums at two points on either side
    # of it (the rest's slope cancels; its curvature leaves ~1e-8), minus its own 1/r.
    beside = pair[:1] + np.array([[1e-4, 0, 0], [-1e-4, 0, 0]])
    near = ewald_sum(pair, [1.0, -1.0], beside).mean() - 1 / (4 * np.pi * 1e-4)
    assert at_source == pytest.approx(near, abs=1e-7)


def test_bad_cells_and_shapes_are_refused():
    with pytest.raises(ValueError, match="sides must be positive"):
        ewald_sum([[0, 0, 0]], [1.0], cell=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="2 charges for 1 sources"):
        ewald_sum([[0, 0, 0]], [1.0, 2.0])

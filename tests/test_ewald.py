"""The Ewald sum (``fmmloopy.maths.ewald``), the reference of periodic sums: Madelung constants,
independence of the splitting parameter, the gradient against finite differences, a net charge
and points given outside the cell; dipoles against pairs of opposite charges."""

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


def _dipoles(rng, count, sides):
    sources = rng.random((count, 3)) * sides
    return sources, rng.uniform(-1, 1, (count, 3))


def test_dipoles_are_limits_of_opposite_charges():
    """A dipole ``p`` is the limit of charges ``+-|p| / (2 eps)`` at ``x +- eps p / |p|``
    (a neutral pair: no background either way), which differ from it by O(eps^2):
    Richardson's ``(4 D(eps / 2) - D(eps)) / 3`` leaves O(eps^4). At ``eps`` 1e-4: measured
    1.5e-12 (potentials) and 8.5e-13 (gradients) of the largest; the pairs alone 3e-7."""
    rng = np.random.default_rng(13)
    sides = np.array([1.0, 1.2, 0.9])
    sources, dipoles = _dipoles(rng, 30, sides)
    charges = rng.uniform(-1, 1, 30)
    targets = rng.random((15, 3)) * sides
    potential, gradient = ewald_sum(sources, charges, targets, sides, dipoles=dipoles,
                                    gradient=True)
    lengths = np.linalg.norm(dipoles, axis=1)

    def as_pairs(eps):
        offsets = eps * dipoles / lengths[:, None]
        pairs = np.concatenate([sources + offsets, sources - offsets, sources])
        pair_charges = np.concatenate([lengths / (2 * eps), -lengths / (2 * eps), charges])
        return ewald_sum(pairs, pair_charges, targets, sides, gradient=True)

    coarse, fine = as_pairs(1e-4), as_pairs(5e-5)
    for index, value in enumerate((potential, gradient)):
        limit = (4 * fine[index] - coarse[index]) / 3
        assert np.abs(value - limit).max() < 1e-10 * np.abs(limit).max()
    # Dipoles alone: the charges' part is gone, nothing else changes.
    alone = ewald_sum(sources, None, targets, sides, dipoles=dipoles)
    assert np.allclose(alone, potential - ewald_sum(sources, charges, targets, sides),
                       rtol=0, atol=1e-12 * np.abs(potential).max())


def test_dipoles_do_not_depend_on_the_splitting():
    rng = np.random.default_rng(14)
    sources, dipoles = _dipoles(rng, 40, np.ones(3))
    reference = ewald_sum(sources, None, None, 1.0, dipoles=dipoles, gradient=True)
    for alpha in (5.0, 10.0):
        other = ewald_sum(sources, None, None, 1.0, dipoles=dipoles, gradient=True,
                          alpha=alpha)
        assert np.abs(other[0] - reference[0]).max() < 1e-10 * np.abs(reference[0]).max()
        assert np.abs(other[1] - reference[1]).max() < 1e-10 * np.abs(reference[1]).max()


def test_a_target_on_a_dipole_leaves_that_dipole_out():
    """At a dipole's own point, the other dipole and the images only: the mean over six
    points around it (``+-h`` on each axis) of the sums there less that dipole's own field.
    What is left is harmonic there, so the mean differs from its value at the point by
    O(h^4); the dipole's own potential is odd and cancels in the mean, its gradient
    ``(3 (p.r) r / r^5 - p / r^3) / 4 pi`` is even and is taken off (rounding of 1e9 / h^3
    sized terms: about 1e-7)."""
    sources = np.array([[0.2, 0.3, 0.25], [0.7, 0.45, 0.6]])
    dipoles = np.array([[0.3, -0.5, 0.8], [-0.2, 0.1, 0.4]])
    at_source = ewald_sum(sources, None, sources[:1], dipoles=dipoles, gradient=True)
    step = 1e-3
    around = np.concatenate([np.eye(3), -np.eye(3)]) * step
    near = ewald_sum(sources, None, sources[0] + around, dipoles=dipoles, gradient=True)
    own = np.array([3 * (dipoles[0] @ r) * r / step ** 5 - dipoles[0] / step ** 3
                    for r in around]) / (4 * np.pi)
    assert at_source[0][0] == pytest.approx(near[0].mean(), abs=1e-8)
    assert np.allclose(at_source[1][0], (near[1] - own).mean(axis=0), rtol=0, atol=1e-6)


def test_bad_cells_and_shapes_are_refused():
    with pytest.raises(ValueError, match="sides must be positive"):
        ewald_sum([[0, 0, 0]], [1.0], cell=[1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="2 charges for 1 sources"):
        ewald_sum([[0, 0, 0]], [1.0, 2.0])
    with pytest.raises(ValueError, match="charges, dipoles or both"):
        ewald_sum([[0, 0, 0]])
    with pytest.raises(ValueError, match=r"dipoles must be \(N, 3\)"):
        ewald_sum([[0, 0, 0]], dipoles=[1.0, 2.0])

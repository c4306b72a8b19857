"""The slab's Ewald sum (``fmmloopy.maths.slab_ewald``), periodic in x and y: against the
three-dimensional Ewald sum of the slab with vacuum between its copies and the Yeh-Berkowitz
correction, which approaches it as the gap grows; independent of the splitting and of which
lattice copy the points are given in; bad input refused."""

import numpy as np
import pytest

from fmmloopy.maths.ewald import ewald_sum
from fmmloopy.maths.slab_ewald import slab_ewald_sum


def _slab(rng, count):
    """Neutral random charges in the slab ``[0, 1)^2 x [0, 0.5)``."""
    points = rng.random((count, 3)) * [1.0, 1.0, 0.5]
    charges = rng.uniform(-1, 1, count)
    return points, charges - charges.mean()


def _with_vacuum(points, charges, targets, height):
    """The 3-D Ewald sum in a cell ``1 x 1 x height`` plus ``M_z z / V`` (Yeh and Berkowitz
    1999): the slab's sum up to a constant, as the gap grows."""
    dipole = float(charges @ points[:, 2])
    return (ewald_sum(points, charges, targets, [1.0, 1.0, height], tolerance=1e-14)
            + dipole * targets[:, 2] / height)


def test_the_three_dimensional_sum_with_a_growing_gap_approaches_it():
    """Measured: 3.6e-8, 1.3e-13, 4.2e-15 of the largest potential at heights 3, 5 and 7
    (after the constant, 0.0675 / height here)."""
    rng = np.random.default_rng(1)
    points, charges = _slab(rng, 20)
    targets = np.concatenate([points, rng.random((6, 3)) * [1.0, 1.0, 2.0] - [0, 0, 0.75]])
    slab = slab_ewald_sum(points, charges, targets)
    assert np.allclose(slab[:20], slab_ewald_sum(points, charges), rtol=0, atol=1e-15)
    constants = []
    for height, bound in ((5.0, 1e-11), (7.0, 1e-13)):
        difference = _with_vacuum(points, charges, targets, height) - slab
        constants.append(difference.mean())
        assert np.abs(difference - difference.mean()).max() < bound * np.abs(slab).max()
    assert abs(constants[1]) < abs(constants[0])  # the constant goes as the gap grows


def test_independent_of_the_splitting_and_of_the_lattice_copy():
    rng = np.random.default_rng(2)
    points, charges = _slab(rng, 15)
    reference = slab_ewald_sum(points, charges)
    scale = np.abs(reference).max()
    for alpha in (6.0, 12.0):
        assert np.abs(slab_ewald_sum(points, charges, alpha=alpha) - reference).max() \
            < 1e-11 * scale
    targets = rng.random((10, 3)) * [1.0, 1.0, 1.0] - [0, 0, 0.25]
    at_targets = slab_ewald_sum(points, charges, targets)
    moved = points + np.column_stack([rng.integers(-3, 4, (15, 2)), np.zeros(15)])
    assert np.abs(slab_ewald_sum(moved, charges, targets + [2.0, -1.0, 0.0]) - at_targets
                  ).max() < 1e-12 * np.abs(at_targets).max()


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="must be neutral"):
        slab_ewald_sum([[0, 0, 0], [0.5, 0.5, 0.1]], [1.0, 0.5])
    with pytest.raises(ValueError, match="positive and finite"):
        slab_ewald_sum([[0, 0, 0], [0.5, 0.5, 0.1]], [1.0, -1.0], side=0.0)
    with pytest.raises(ValueError, match="2 charges for 1 sources"):
        slab_ewald_sum([[0, 0, 0]], [1.0, -1.0])
    with pytest.raises(ValueError, match="1 dipoles for 2 sources"):
        slab_ewald_sum([[0, 0, 0], [0.5, 0.5, 0.1]], None, dipoles=[[1.0, 0, 0]])


def test_gradients_and_dipoles():
    """The gradient against central differences of the potential (step 1e-5: error ~1e-10
    of it, measured 7e-10 of the largest), a dipole's potential against a pair of charges
    ``+-1/h`` at ``x +- h p / 2``, extrapolated (Richardson, ``h`` 1e-3 and 5e-4: measured
    4.6e-12)."""
    rng = np.random.default_rng(3)
    points, charges = _slab(rng, 20)
    targets = rng.random((5, 3)) * [1.0, 1.0, 1.0] - [0, 0, 0.25]
    potential, gradient = slab_ewald_sum(points, charges, targets, gradient=True)
    step = 1e-5
    differences = np.stack([
        (slab_ewald_sum(points, charges, targets + step * unit)
         - slab_ewald_sum(points, charges, targets - step * unit)) / (2 * step)
        for unit in np.eye(3)], axis=1)
    assert np.abs(differences - gradient).max() < 1e-8 * np.abs(gradient).max()
    dipoles = rng.uniform(-1, 1, (20, 3))
    of_dipoles = slab_ewald_sum(points, None, targets, dipoles=dipoles)

    def pairs(h):
        sources = np.concatenate([points + h / 2 * dipoles, points - h / 2 * dipoles])
        return slab_ewald_sum(sources, np.concatenate([np.ones(20), -np.ones(20)]) / h,
                              targets)

    extrapolated = (4 * pairs(5e-4) - pairs(1e-3)) / 3
    assert np.abs(extrapolated - of_dipoles).max() < 1e-10 * np.abs(of_dipoles).max()
    both = slab_ewald_sum(points, charges, targets, dipoles=dipoles)
    np.testing.assert_allclose(both, potential + of_dipoles, rtol=0, atol=1e-14)


def test_the_gradient_of_dipoles():
    """On sources and off them, against the 3-D Ewald sum with a gap of vacuum (height 7, as
    above; the Yeh-Berkowitz correction's gradient is ``M_z / V`` along z, ``M_z`` the dipoles'
    total z moment; measured 2.5e-15 of the largest) and against central differences of the
    potential off the sources (step 1e-5: measured 2.5e-9); the charges' part unchanged."""
    rng = np.random.default_rng(4)
    points, charges = _slab(rng, 30)
    dipoles = rng.uniform(-1, 1, (30, 3))
    targets = np.concatenate([points[:8], rng.random((6, 3)) - [0, 0, 0.25]])
    potential, gradient = slab_ewald_sum(points, charges, targets, dipoles=dipoles,
                                         gradient=True)
    of_charges = slab_ewald_sum(points, charges, targets, gradient=True)
    of_dipoles = gradient - of_charges[1]
    height = 7.0
    _, expected = ewald_sum(points, None, targets, [1.0, 1.0, height], dipoles=dipoles,
                            gradient=True, tolerance=1e-14)
    expected[:, 2] += dipoles[:, 2].sum() / height
    assert np.abs(of_dipoles - expected).max() < 1e-12 * np.abs(of_dipoles).max()
    step = 1e-5
    off = targets[8:]
    differences = np.stack([
        (slab_ewald_sum(points, None, off + step * unit, dipoles=dipoles)
         - slab_ewald_sum(points, None, off - step * unit, dipoles=dipoles)) / (2 * step)
        for unit in np.eye(3)], axis=1)
    assert np.abs(differences - of_dipoles[8:]).max() < 1e-7 * np.abs(of_dipoles).max()
    np.testing.assert_allclose(potential, of_charges[0] + slab_ewald_sum(
        points, None, targets, dipoles=dipoles), rtol=0, atol=1e-14)

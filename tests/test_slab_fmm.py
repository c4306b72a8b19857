"""Slabs: FMMs periodic along two axes and free along the third (``Fmm(..., periodic=...,
periodic_axes="xy")``) against the slab's Ewald sum (``fmmloopy.maths.slab_ewald``): potentials,
gradients and dipoles, points on the cell's faces and outside it in the plane, the free axis
along x as well as z, separate targets and ``update``; bad input."""

import numpy as np
import pytest
from conftest import PERIODIC_EPS_CASES, assert_periodic_eps_met

from fmmloopy import Fmm
from fmmloopy.maths.slab_ewald import slab_ewald_sum

#: Relative L2 errors at the default order (7) on the charges below (150 random neutral
#: charges, a shifted cell of side 2.5): the bounds are the periodic FMM's promise at its
#: default order (docs/fmm.md: 1e-6 and 2e-6, as for a fully periodic cell); measured 1.4e-7
#: and 3.6e-7.
POTENTIAL_BOUND, GRADIENT_BOUND = 1e-6, 2e-6
#: The potential of dipoles uniform in [-1, 1]^3 with the charges: measured 1.6e-6 at order 7
#: (dipoles' fields fall off a degree faster than charges', their expansions converge slower),
#: 1.5e-8 at order 10; bounds about 2.5 times those.
DIPOLE_BOUNDS = {7: 4e-6, 10: 4e-8}

LOWER, SIDE = np.array([0.3, -1.0, 0.5]), 2.5


def _relative(value, reference):
    return np.linalg.norm(value - reference) / np.linalg.norm(reference)


@pytest.fixture(scope="module")
def slab():
    """Neutral charges and dipoles; some points given in other copies of the cell in the plane
    (wrapped), two on the cell's lower and upper faces along the free axis z; the reference
    potentials, gradients and dipoles' potentials."""
    rng = np.random.default_rng(3)
    count = 150
    points = LOWER + rng.uniform(0, SIDE, (count, 3))
    points[:20, :2] += SIDE * rng.integers(-2, 3, (20, 2))
    points[20, 2], points[21, 2] = LOWER[2], LOWER[2] + SIDE
    charges = rng.uniform(-1, 1, count)
    charges -= charges.mean()
    dipoles = rng.uniform(-1, 1, (count, 3))
    potential, gradient = slab_ewald_sum(points - LOWER, charges, side=SIDE, gradient=True)
    with_dipoles = slab_ewald_sum(points - LOWER, charges, side=SIDE, dipoles=dipoles)
    return points, charges, dipoles, potential, gradient, with_dipoles


@pytest.fixture(scope="module")
def slab_fmm(slab):
    return Fmm(slab[0], periodic=(LOWER, LOWER + SIDE), periodic_axes="xy")


def test_potentials_gradients_and_dipoles_match_the_slab_sum(slab, slab_fmm):
    points, charges, dipoles, potential, gradient, with_dipoles = slab
    assert slab_fmm.order == 7
    fields = slab_fmm(charges, gradient=True)
    assert _relative(fields.potential, potential) < POTENTIAL_BOUND
    assert _relative(fields.gradient, gradient) < GRADIENT_BOUND
    assert _relative(slab_fmm(charges, dipoles=dipoles), with_dipoles) < DIPOLE_BOUNDS[7]
    # Neither free space nor the fully periodic cell: the images in z change every potential.
    for other in (Fmm(points), Fmm(points, periodic=(LOWER, LOWER + SIDE))):
        assert _relative(other(charges), potential) > 1e-2


def test_higher_orders_converge(slab):
    """Order 10 against the same sums: the charges' potential measured 6.7e-10."""
    points, charges, dipoles, potential, _, with_dipoles = slab
    fmm = Fmm(points, periodic=(LOWER, LOWER + SIDE), periodic_axes="xy", order=10)
    assert _relative(fmm(charges), potential) < 2e-9
    assert _relative(fmm(charges, dipoles=dipoles), with_dipoles) < DIPOLE_BOUNDS[10]


@pytest.mark.parametrize("axes", ["yz", "zx"])
def test_the_free_axis_may_be_any(slab, axes):
    """The same slab with its coordinates turned so that the free axis is x or y: the same
    potentials and the gradients turned."""
    points, charges, _, potential, gradient, _ = slab
    free = "xyz".index(next(name for name in "xyz" if name not in axes))
    turn = np.roll(np.arange(3), free - 2)  # new axis `free` holds the old z
    fmm = Fmm(points[:, turn], periodic=(LOWER[turn], LOWER[turn] + SIDE), periodic_axes=axes)
    fields = fmm(charges, gradient=True)
    assert _relative(fields.potential, potential) < POTENTIAL_BOUND
    assert _relative(fields.gradient, gradient[:, turn]) < GRADIENT_BOUND


def test_targets_of_their_own_and_update(slab):
    points, charges = slab[:2]
    rng = np.random.default_rng(4)
    targets = LOWER + rng.uniform(0, SIDE, (40, 3))
    expected = slab_ewald_sum(points - LOWER, charges, targets - LOWER, side=SIDE)
    fmm = Fmm(points, targets, periodic=(LOWER, LOWER + SIDE), periodic_axes="xy")
    assert _relative(fmm(charges), expected) < POTENTIAL_BOUND
    fmm.update(points, targets[::-1])
    assert _relative(fmm(charges), expected[::-1]) < POTENTIAL_BOUND
    moved = points.copy()
    moved[:, :2] += SIDE  # the same slab, one copy over
    fmm.update(moved, targets)
    assert _relative(fmm(charges), expected) < POTENTIAL_BOUND
    # Moved off the cell along the free axis: refused, and the FMM stays as it was.
    with pytest.raises(ValueError, match="free axis z"):
        fmm.update(points + [0.0, 0.0, 0.5 * SIDE], targets)
    assert _relative(fmm(charges), expected) < POTENTIAL_BOUND


@pytest.mark.parametrize(("points", "options", "strengths", "message"), [
    (np.zeros((4, 3)), {"periodic": 1.0, "periodic_axes": ""}, None, "distinct axes"),
    (np.zeros((4, 3)), {"periodic": 1.0, "periodic_axes": "xx"}, None, "distinct axes"),
    (np.zeros((4, 3)), {"periodic": 1.0, "periodic_axes": "xw"}, None, "distinct axes"),
    (np.zeros((4, 3)), {"periodic": 1.0, "periodic_axes": ["x", "x"]}, None, "distinct axes"),
    (np.zeros((4, 3)), {"periodic": 1.0, "periodic_axes": (True, False)}, None, "distinct axes"),
    (np.zeros((4, 3)), {"periodic": 1.0, "periodic_axes": 3}, None, "distinct axes"),
    (np.zeros((4, 3)), {"periodic": 1.0, "periodic_axes": [False] * 3}, None, "no periodic axis"),
    (np.zeros((4, 3)), {"periodic_axes": "xy"}, None, "needs a periodic cell"),
    ([[0.5, 0.5, 1.5], [0.5, 0.5, 0.5]], {"periodic": 1.0, "periodic_axes": "xy"}, None,
     "free axis z"),
    ([[0.5, -0.1, 0.5], [0.5, 0.5, 0.5]], {"periodic": 1.0, "periodic_axes": "xz"}, None,
     "free axis y"),
    ([[0.5, 0.5, 0.2], [0.5, 0.5, 0.5]], {"periodic": 1.0, "periodic_axes": "xy"},
     [1.0, -0.5], "must be neutral"),
])
def test_bad_slabs_are_refused(points, options, strengths, message):
    with pytest.raises(ValueError, match=message):
        fmm = Fmm(np.asarray(points, dtype=np.float64), **options)
        fmm(np.asarray(strengths))


@pytest.mark.parametrize("axes", ["yx", ("x", "y"), (True, True, False), np.array([1, 1, 0],
                                                                                  dtype=bool)])
def test_the_periodic_axes_may_be_named_in_several_ways(axes):
    """Names in any order, a sequence of names, or three booleans (as ASE's ``pbc``)."""
    points = np.array([[0.1, 0.2, 0.3], [0.6, 0.7, 0.2]])
    fmm = Fmm(points, periodic=1.0, periodic_axes=axes)
    assert fmm.periodic.axes == (0, 1)
    assert _relative(fmm(np.array([1.0, -1.0])),
                     slab_ewald_sum(points, np.array([1.0, -1.0]))) < POTENTIAL_BOUND


def test_a_neutral_slab_to_rounding_is_summed():
    """Charges whose sum is rounding only are neutral (the refusal is for a net charge)."""
    points = np.array([[0.1, 0.2, 0.3], [0.6, 0.7, 0.2], [0.4, 0.9, 0.8]])
    charges = np.array([0.1, 0.2, -0.3])  # sums to 5.6e-17 in floating point
    fmm = Fmm(points, periodic=1.0, periodic_axes="xy")
    assert _relative(fmm(charges), slab_ewald_sum(points, charges - charges.mean())) \
        < POTENTIAL_BOUND


@pytest.mark.parametrize(("eps", "eps_for"), PERIODIC_EPS_CASES)
def test_eps_is_met_against_the_slab_sum(eps, eps_for):
    """``eps`` of a slab: the order from the rows measured against the slab's Ewald sum (on
    other point sets: uniform, clustered, targets apart, a lattice, targets in the other half),
    met on a held-out set (a thin Gaussian layer in a shifted cell, wrapped in the plane) for
    the quantities asked for: the relative L2 error over 150 sampled targets (the sum's cost is
    every pair times its waves)."""
    rng = np.random.default_rng(31)
    points = LOWER + SIDE * np.column_stack([
        np.mod(0.3 + 0.2 * rng.standard_normal((1500, 2)), 1.0),
        np.clip(0.6 + 0.05 * rng.standard_normal(1500), 0.0, 1.0)])
    assert_periodic_eps_met(
        points, (LOWER, LOWER + SIDE), "xy", eps, rng,
        lambda at, **given: slab_ewald_sum(points - LOWER, targets=at - LOWER, side=SIDE,
                                           gradient=True, **given), eps_for=eps_for)

"""The wire's sum over images (``fmmloopy.maths.wire_sum``): the alternating chain's Madelung
constant, the same sum at other image counts, its gradient against finite differences of its
potential, points given in other copies of the cell; bad input refused."""

import math

import numpy as np
import pytest

from fmmloopy.maths.wire_sum import wire_image_sum


def _wire(rng, count, side=1.0):
    """Neutral random charges and dipoles in the cell ``[0, side)^3``."""
    points = rng.random((count, 3)) * side
    charges = rng.uniform(-1, 1, count)
    return points, charges - charges.mean(), rng.uniform(-1, 1, (count, 3))


def test_the_alternating_chain_has_its_madelung_constant():
    """Ions +1 and -1 a apart along the axis (a cell of two): the potential at an ion is
    -+2 ln 2 / (4 pi a), its gradient along the axis 0 by symmetry."""
    a = 0.7
    points = np.array([[0.1, 0.2, 0.0], [0.1, 0.2, a]])
    potential, gradient = wire_image_sum(points, np.array([1.0, -1.0]), side=2 * a,
                                         gradient=True)
    np.testing.assert_allclose(potential, [-1, 1] * np.array(2 * math.log(2) / (4 * math.pi * a)),
                               rtol=1e-13)
    assert np.abs(gradient).max() < 1e-13


def test_the_extrapolation_has_converged():
    """Measured: 3e-15 of the largest potential and gradient between 200 and 400 images."""
    rng = np.random.default_rng(1)
    points, charges, dipoles = _wire(rng, 40)
    targets = np.concatenate([points[:10], rng.random((10, 3)) + [0.0, 0.0, 3.3]])
    sums = [wire_image_sum(points, charges, targets, dipoles=dipoles, gradient=True,
                           images=images) for images in (200, 400)]
    for coarse, fine in zip(*sums, strict=True):
        assert np.abs(coarse - fine).max() < 1e-13 * np.abs(fine).max()


def test_the_gradient_is_that_of_the_potential_and_the_copies_are_the_same():
    """Central differences of step 1e-5 (error about 1e-10 of the gradient) at targets away
    from the sources, along every axis; sources moved by whole periods along the axis change
    nothing."""
    rng = np.random.default_rng(2)
    points, charges, dipoles = _wire(rng, 30, side=1.5)
    targets = rng.random((8, 3)) * 1.5 + [0.0, 2.0, 0.0]
    potential, gradient = wire_image_sum(points, charges, targets, side=1.5, axis=0,
                                         dipoles=dipoles, gradient=True)
    step = 1e-5
    differences = np.stack([
        (wire_image_sum(points, charges, targets + step * unit, side=1.5, axis=0,
                        dipoles=dipoles)
         - wire_image_sum(points, charges, targets - step * unit, side=1.5, axis=0,
                          dipoles=dipoles)) / (2 * step) for unit in np.eye(3)], axis=1)
    assert np.abs(differences - gradient).max() < 1e-8 * np.abs(gradient).max()
    moved = points + np.outer(rng.integers(-3, 4, len(points)) * 1.5, [1.0, 0.0, 0.0])
    again = wire_image_sum(moved, charges, targets, side=1.5, axis=0, dipoles=dipoles)
    assert np.abs(again - potential).max() < 1e-12 * np.abs(potential).max()


@pytest.mark.parametrize(("arguments", "message"), [
    ({"charges": np.array([1.0, 0.5])}, "must be neutral"),
    ({"charges": np.array([1.0])}, "1 charges for 2 sources"),
    ({"charges": None, "dipoles": np.ones((3, 3))}, "3 dipoles for 2 sources"),
    ({"charges": None, "side": 0.0}, "period must be positive"),
    ({"charges": None, "axis": 3}, "axis is 0, 1 or 2"),
    ({"charges": None, "images": 10}, "multiple of 4"),
])
def test_bad_input_is_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        wire_image_sum(np.zeros((2, 3)), **arguments)

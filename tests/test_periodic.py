"""The far lattice of periodic FMMs (``fmmloopy.maths.periodic``): its remainder function and
operators against Ewald sums less the near images, and the far images' field through the cell's
children against the same."""

import itertools

import numpy as np
import pytest

from fmmloopy.maths.ewald import ewald_sum
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.periodic import (
    CHILD_OFFSETS,
    lattice_operators,
    lattice_remainder,
    mean_potential_constant,
    near_image_shifts,
    offset_code,
)
from fmmloopy.maths.precompute import DEFAULT_RCOND, check_to_equivalent, kernel_matrix
from fmmloopy.maths.reference import direct_sum
from fmmloopy.maths.slab_ewald import _slab_green

#: Relative L2 error of the far images' field through the children's operators, relative to
#: that field: measured 1.7e-4 and 7.7e-8 at orders 4 and 6 (2000 random charges), with a
#: factor 3.
BOUNDS = {4: 5e-4, 6: 2.5e-7}


def _ewald_less_near(sources, charges, targets):
    near = sum(direct_sum(LAPLACE_3D, sources + shift, charges, targets)
               for shift in near_image_shifts(2.0))
    return ewald_sum(sources, charges, targets, cell=2.0) - near


def test_the_remainder_is_ewald_less_the_near_images():
    rng = np.random.default_rng(0)
    offsets = rng.uniform(-2.4, 2.4, (300, 3))
    offsets[0] = 0.0  # the limit, with the near image at 0 left out
    expected = np.array([ewald_sum(np.zeros((1, 3)), [1.0], offset[None], cell=2.0)[0]
                         - sum(LAPLACE_3D.evaluate((offset - shift)[None, None])[0, 0]
                               for shift in near_image_shifts(2.0))
                         for offset in offsets])
    np.testing.assert_allclose(lattice_remainder(offsets), expected, rtol=0, atol=2e-15)


def test_a_slabs_remainder_is_its_sum_less_the_near_images():
    """A slab's (periodic along x and y) against the slab sum's own Green's function
    (``fmmloopy.maths.slab_ewald``, its own splitting and cutoffs) less the 9 near images."""
    rng = np.random.default_rng(1)
    offsets = rng.uniform(-2.4, 2.4, (300, 3))
    offsets[0] = 0.0
    reach = np.sqrt(-np.log(1e-15)) * 1.1
    green, _, coincident, _ = _slab_green(offsets, 2.0, reach / 1.5, 1.5, reach)
    expected = (green - 2 * (reach / 1.5) / np.sqrt(np.pi) * coincident) / (4 * np.pi)
    for first, second in itertools.product((-2.0, 0.0, 2.0), repeat=2):
        distance = np.linalg.norm(offsets - [first, second, 0.0], axis=1)
        expected -= np.divide(1.0, 4 * np.pi * distance, out=np.zeros_like(distance),
                              where=distance > 0)
    np.testing.assert_allclose(lattice_remainder(offsets, (0, 1)), expected, rtol=0,
                               atol=3e-15)


def test_a_wires_remainder_is_the_sum_over_its_far_images():
    """A wire's (periodic along z) against its definition, ``sum over |n| >= 2 of 1 / |r - n
    L e_z| - 1 / (|n| L)``: summed to 4000 and 8000 images (the outermost at half weight) and
    extrapolated in ``1 / images^2``."""
    rng = np.random.default_rng(2)
    offsets = rng.uniform(-2.4, 2.4, (200, 3))
    offsets[0] = 0.0

    def summed(images):
        n = np.arange(2, images + 1)
        weights = np.where(n == images, 0.5, 1.0)
        total = np.zeros(len(offsets))
        for sign in (1, -1):
            along = offsets[:, 2:3] - sign * 2.0 * n
            across = (offsets[:, :2] ** 2).sum(axis=1)[:, None]
            total += (weights / np.sqrt(along ** 2 + across)).sum(axis=1)
        return (total - (weights / n).sum()) / (4 * np.pi)

    expected = (4 * summed(8000) - summed(4000)) / 3
    np.testing.assert_allclose(lattice_remainder(offsets, (2,)), expected, rtol=0, atol=1e-14)


@pytest.mark.parametrize("axes", [(0, 1, 2), (0, 1), (1, 2), (2,), (0,)],
                         ids=["cell", "slab xy", "slab yz", "wire z", "wire x"])
def test_the_operators_of_every_offset_hold_the_remainder(axes):
    """One offset of each kind is computed (four for a cell, six for a slab or a wire), the
    others carried by the symmetries: each of the 27 against the remainder at its own
    points."""
    order = 3
    operators = lattice_operators(order, axes)
    expansion = Expansion(order)
    check = 0.5 * expansion.surface("downward_check")
    equivalent = 0.5 * expansion.surface("upward_equivalent")
    for code, offset in enumerate(CHILD_OFFSETS):
        assert offset_code(offset) == code
        points = (check.T[:, None, :] - equivalent.T[None, :, :] - offset).reshape(-1, 3)
        np.testing.assert_allclose(operators[code], lattice_remainder(points, axes).reshape(
            operators[code].shape), rtol=0, atol=2e-15)


def _fit(check, equivalent, values):
    first, second = check_to_equivalent(LAPLACE_3D, check, equivalent, DEFAULT_RCOND)
    return second @ (first @ values)


@pytest.mark.parametrize("order", sorted(BOUNDS))
def test_far_images_through_the_children_match_ewald_less_the_near_images(order):
    """The cell (half-width 1) of 2000 random neutral charges: each child's multipole, the
    operators to every child's check potential, its local expansion at targets, plus the
    mean-potential constant; against an Ewald sum less the 27 near images."""
    rng = np.random.default_rng(0)
    sources = rng.uniform(-1, 1, (2000, 3))
    charges = rng.uniform(-1, 1, 2000)
    charges -= charges.mean()
    targets = rng.uniform(-1, 1, (200, 3))
    expected = _ewald_less_near(sources, charges, targets)

    expansion = Expansion(order)
    up_check, up_equivalent, down_check, down_equivalent = (
        0.5 * expansion.surface(name) for name in ("upward_check", "upward_equivalent",
                                                   "downward_check", "downward_equivalent"))
    operators = lattice_operators(order)
    positions = np.array(list(itertools.product((0, 1), repeat=3)))
    centres = positions - 0.5
    child_of_source = np.floor(sources + 1).astype(int)
    child_of_target = np.floor(targets + 1).astype(int)
    densities, density_moment = [], 0.0
    for position, centre in zip(positions, centres, strict=True):
        inside = np.all(child_of_source == position, axis=1)
        density = _fit(up_check, up_equivalent, kernel_matrix(
            LAPLACE_3D, up_check, (sources[inside] - centre).T) @ charges[inside])
        densities.append(density)
        density_moment += density @ ((up_equivalent.T + centre) ** 2).sum(axis=1)
    result = np.zeros(len(targets))
    for position, centre in zip(positions, centres, strict=True):
        check = sum(operators[offset_code(other - position)] @ density
                    for other, density in zip(positions, densities, strict=True))
        local = _fit(down_check, down_equivalent, check)
        inside = np.all(child_of_target == position, axis=1)
        result[inside] = kernel_matrix(LAPLACE_3D, (targets[inside] - centre).T,
                                       down_equivalent) @ local
    result += mean_potential_constant(float(charges @ (sources ** 2).sum(axis=1)),
                                      density_moment)
    error = np.linalg.norm(result - expected) / np.linalg.norm(expected)
    assert error < BOUNDS[order], error
    # Not vacuous: the far images' field is about the whole periodic sum's size here.
    total = ewald_sum(sources, charges, targets, cell=2.0)
    assert np.linalg.norm(expected) > 0.5 * np.linalg.norm(total)


def test_lattice_operators_are_cached_and_checked_when_read():
    """The operators are stored beside the order's operators; a file whose arrays are whole
    but wrong (the checksum cannot tell) fails the recomputed entries and is rebuilt."""
    from fmmloopy.execution import operator_cache, precomputed
    from fmmloopy.maths.green import get_kernel
    from fmmloopy.maths.precompute import DEFAULT_RCOND

    operators = precomputed.get_lattice_operators(3)
    np.testing.assert_array_equal(operators, lattice_operators(3))
    key = operator_cache.operator_key(get_kernel("laplace"), 3, DEFAULT_RCOND) | {
        "part": "periodic lattice"}
    assert operator_cache.cache_path(key).exists()
    operator_cache.store(key, {"lattice": operators * (1 + 1e-9)})
    precomputed.forget_operators()
    with pytest.warns(operator_cache.OperatorCacheWarning, match="remainder recomputed"):
        again = precomputed.get_lattice_operators(3)
    np.testing.assert_array_equal(again, operators)
    precomputed.forget_operators()
    np.testing.assert_array_equal(precomputed.get_lattice_operators(3), operators)  # the file
    # A slab's and a wire's are their own, in files of their own.
    for axes in ((0, 1), (2,)):
        np.testing.assert_array_equal(precomputed.get_lattice_operators(3, axes),
                                      lattice_operators(3, axes))
        assert np.abs(precomputed.get_lattice_operators(3, axes) - operators).max() > 1e-3

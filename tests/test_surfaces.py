"""Tests of the KIFMM surfaces: size, equiangular points on the cube, uniqueness, symmetry,
scaling, the fine surface."""

import numpy as np
import pytest

from fmmloopy.maths.surfaces import (
    DOWNWARD_CHECK_RADIUS,
    DOWNWARD_EQUIVALENT_RADIUS,
    UPWARD_CHECK_RADIUS,
    UPWARD_EQUIVALENT_RADIUS,
    fine_order,
    surface,
    surface_size,
    surface_ticks,
    unit_surface,
)

ORDERS = range(2, 11)


def as_point_set(points: np.ndarray) -> set[tuple[float, ...]]:
    """The columns of a (3, n) array as a set of tuples."""
    return set(map(tuple, points.T.tolist()))


@pytest.mark.parametrize("order", ORDERS)
def test_size_formula(order):
    assert surface_size(order) == 6 * (order - 1) ** 2 + 2 == order**3 - (order - 2) ** 3
    points = unit_surface(order)
    assert points.shape == (3, surface_size(order))
    assert points.dtype == np.float64 and points.flags.c_contiguous


@pytest.mark.parametrize("order", [1, 0, -3, 2.5])
def test_size_rejects_bad_order(order):
    with pytest.raises(ValueError):
        surface_size(order)


@pytest.mark.parametrize("order", ORDERS)
def test_ticks_are_equiangular(order):
    ticks = surface_ticks(order)
    assert ticks[0] == -1.0 and ticks[-1] == 1.0
    np.testing.assert_array_equal(ticks[::-1], -ticks)
    if order % 2:
        assert ticks[order // 2] == 0.0
    # Equal angles as seen from the centre of a face at distance 1.
    np.testing.assert_allclose(np.diff(np.arctan(ticks)), np.pi / 2 / (order - 1), rtol=1e-13)


@pytest.mark.parametrize("order", ORDERS)
def test_points_are_the_grid_points_on_the_cube_surface(order):
    points = unit_surface(order)
    ticks = surface_ticks(order)
    assert np.all(np.abs(points).max(axis=0) == 1.0)
    assert np.isin(points, ticks).all()
    grid = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij")).reshape(3, -1)
    on_boundary = np.abs(grid).max(axis=0) == 1.0
    np.testing.assert_array_equal(points, grid[:, on_boundary])
    assert len(as_point_set(points)) == points.shape[1]


@pytest.mark.parametrize("order", ORDERS)
def test_fine_surface_contains_the_surface(order):
    fine = fine_order(order)
    assert fine == 2 * order - 1
    np.testing.assert_array_equal(surface_ticks(fine)[::2], surface_ticks(order))
    assert as_point_set(unit_surface(order)) <= as_point_set(unit_surface(fine))


@pytest.mark.parametrize("order", ORDERS)
def test_points_are_symmetric(order):
    points = unit_surface(order)
    reference = as_point_set(points)
    assert as_point_set(-points) == reference
    for axis in range(3):
        mirrored = points.copy()
        mirrored[axis] *= -1
        assert as_point_set(mirrored) == reference
    assert as_point_set(points[[1, 2, 0]]) == reference
    assert as_point_set(points[[1, 0, 2]]) == reference


def test_documented_order():
    points = unit_surface(3)
    np.testing.assert_array_equal(points[:, 0], [-1, -1, -1])
    np.testing.assert_array_equal(points[:, 1], [-1, -1, 0])
    np.testing.assert_array_equal(points[:, -1], [1, 1, 1])
    keys = np.searchsorted(surface_ticks(3), points)  # grid indices 0..2
    codes = (keys[0] * 3 + keys[1]) * 3 + keys[2]
    assert np.all(np.diff(codes) > 0)


def test_scaled_surface_and_radii():
    assert (UPWARD_EQUIVALENT_RADIUS, UPWARD_CHECK_RADIUS) == (1.05, 2.95)
    assert (DOWNWARD_EQUIVALENT_RADIUS, DOWNWARD_CHECK_RADIUS) == (2.95, 1.05)
    np.testing.assert_array_equal(surface(4, 2.95), 2.95 * unit_surface(4))

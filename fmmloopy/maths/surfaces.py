"""KIFMM equivalent and check surfaces: equiangular grids on the surface of a cube.

A surface of ``order`` points per edge is the set of points of an ``order x order x order``
tensor grid on ``[-1, 1]^3`` that lie on the cube's boundary, so it has
``order**3 - (order - 2)**3 = 6 (order - 1)**2 + 2`` points. The grid's coordinates along each
axis (:func:`surface_ticks`) are *equiangular*, ``tan(pi/4 * u)`` for ``u`` uniform in
``[-1, 1]``: seen from the centre, neighbouring points on a face are equal angles apart (the
gnomonic equiangular cubed-sphere grid), so the points are spread evenly in direction instead
of crowding towards the corners as a uniform grid does (docs/kifmm.md has the accuracy this
buys). Everything here is for a box of half-width 1 centred at the origin; a box of centre ``c``
and half-width ``h`` uses ``c + h * surface(order, radius)``.

The relative radii are those of PVFMM and exafmm-t: the upward equivalent and the downward check
surfaces hug the box (1.05), the upward check and the downward equivalent surfaces lie beyond its
colleagues' near parts (2.95).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DOWNWARD_CHECK_RADIUS",
    "DOWNWARD_EQUIVALENT_RADIUS",
    "UPWARD_CHECK_RADIUS",
    "UPWARD_EQUIVALENT_RADIUS",
    "fine_order",
    "surface",
    "surface_size",
    "surface_ticks",
    "unit_surface",
]

UPWARD_EQUIVALENT_RADIUS = 1.05
UPWARD_CHECK_RADIUS = 2.95
DOWNWARD_EQUIVALENT_RADIUS = 2.95
DOWNWARD_CHECK_RADIUS = 1.05


def surface_size(order: int) -> int:
    """Number of points ``6 (order - 1)**2 + 2`` of a surface; ValueError for ``order < 2``."""
    if int(order) != order or order < 2:
        raise ValueError(f"surface order must be an integer >= 2, got {order!r}")
    return 6 * (int(order) - 1) ** 2 + 2


def fine_order(order: int) -> int:
    """``2 order - 1``: the surface with a point between each two neighbours of ``order``'s.

    Its grid contains every point of the ``order`` grid (``surface_ticks(fine_order(p))[::2]
    == surface_ticks(p)`` exactly); the precomputation fits equivalent densities to check
    potentials on it by least squares (:mod:`fmmloopy.maths.precompute`).
    """
    surface_size(order)
    return 2 * int(order) - 1


def surface_ticks(order: int) -> np.ndarray:
    """(order,) float64: the grid coordinates along each axis, ``tan(pi/4 * u_i)`` with
    ``u_i = (2 i - (order - 1)) / (order - 1)``.

    Exactly odd (``ticks[::-1] == -ticks``), exactly ``-1`` and ``1`` at the ends (on the cube)
    and ``0`` in the middle of an odd order.
    """
    surface_size(order)
    # Integer numerators, so u is exactly symmetric about 0; tan of |u| mirrored keeps it so.
    u = (2.0 * np.arange(order) - (order - 1)) / (order - 1)
    ticks = np.sign(u) * np.tan(0.25 * np.pi * np.abs(u))
    ticks[0], ticks[-1] = -1.0, 1.0  # tan(pi/4) rounds to 1 - 2**-53
    return ticks


def unit_surface(order: int) -> np.ndarray:
    """(3, n_e) float64 C-contiguous: the grid points on the surface of ``[-1, 1]^3``.

    Order: the grid indices ``(i, j, k)`` in ``0..order-1`` lexicographically (``i`` of x
    slowest, ``k`` of z fastest), keeping those with some index equal to 0 or ``order - 1``;
    coordinate ``surface_ticks(order)[i]``.
    """
    size = surface_size(order)
    ticks = surface_ticks(order)
    index = np.indices((order, order, order)).reshape(3, -1)
    on_boundary = np.any((index == 0) | (index == order - 1), axis=0)
    points = np.ascontiguousarray(ticks[index[:, on_boundary]])
    assert points.shape == (3, size)
    return points


def surface(order: int, radius: float) -> np.ndarray:
    """(3, n_e): ``radius * unit_surface(order)``, for a box of half-width 1 centred at 0."""
    return radius * unit_surface(order)

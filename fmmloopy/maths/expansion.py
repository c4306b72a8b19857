"""The expansion of one FMM: its order, its ``n_e`` surface points and its four surfaces.

A KIFMM expansion of a box is a density on an *equivalent surface*, fitted to the potential on a
*check surface* (:mod:`fmmloopy.maths.surfaces` has the grids). One :class:`Expansion` travels
from the user's ``order`` to everything sized by it: the precomputed matrices, the operators'
surface sizes, the driver's buffers and the memory estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fmmloopy.maths.surfaces import (
    DOWNWARD_CHECK_RADIUS,
    DOWNWARD_EQUIVALENT_RADIUS,
    UPWARD_CHECK_RADIUS,
    UPWARD_EQUIVALENT_RADIUS,
    surface,
    surface_size,
)

#: The four surfaces of a box by name, with their radii relative to the box's half-width.
SURFACE_RADII = {
    "upward_equivalent": UPWARD_EQUIVALENT_RADIUS,
    "upward_check": UPWARD_CHECK_RADIUS,
    "downward_equivalent": DOWNWARD_EQUIVALENT_RADIUS,
    "downward_check": DOWNWARD_CHECK_RADIUS,
}


@dataclass(frozen=True)
class Expansion:
    """Surfaces of ``order`` points per edge: ``n_e = 6 (order - 1)**2 + 2`` points each."""

    order: int

    def __post_init__(self) -> None:
        surface_size(self.order)  # ValueError for a bad order
        object.__setattr__(self, "order", int(self.order))

    @property
    def n_e(self) -> int:
        """Points per surface: the length of every expansion vector."""
        return surface_size(self.order)

    def surface(self, name: str) -> np.ndarray:
        """(3, n_e) float64: surface ``name`` (:data:`SURFACE_RADII`) of the box of half-width 1
        centred at the origin."""
        try:
            radius = SURFACE_RADII[name]
        except KeyError:
            raise ValueError(f"unknown surface {name!r}; surfaces: {sorted(SURFACE_RADII)}"
                             ) from None
        return surface(self.order, radius)

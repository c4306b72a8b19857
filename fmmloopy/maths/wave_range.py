"""How many wavelengths wide a root box the (low-frequency) FMM resolves, for kernels that
oscillate: Helmholtz's, or any :class:`~fmmloopy.maths.green.GreenKernel` with a wavenumber.

:mod:`fmmloopy.maths.green` re-exports the public names.
"""

from __future__ import annotations

import math

#: Wavelengths of root box per unit of order within which the Helmholtz FMM is accurate: the
#: KIFMM here is a low-frequency method (every level's surfaces have ``order`` points a side,
#: one set of translation operators per level, no directional splitting), so the widest box it
#: resolves grows with the order. At ``order / 3`` wavelengths the error measured is within
#: about ten times Laplace's at that order (docs/kernels.md, 'Helmholtz').
WAVELENGTHS_PER_ORDER = 1 / 3
#: The highest order the range was measured at; higher orders get its range.
RANGE_MEASURED_TO_ORDER = 10


def max_root_wavelengths(order: int) -> float:
    """The widest root box, in wavelengths, over which the Helmholtz FMM of ``order`` is
    accurate: ``order / 3`` (orders above 10: 10 / 3)."""
    return min(order, RANGE_MEASURED_TO_ORDER) * WAVELENGTHS_PER_ORDER


def wavelength(kernel) -> float | None:
    """The wavelength ``2 pi / k`` of ``kernel`` (a :class:`~fmmloopy.maths.green.GreenKernel`)
    with a :attr:`~fmmloopy.maths.green.GreenKernel.wavenumber` ``k`` (``inf`` at ``k = 0``),
    None for the others."""
    if kernel.wavenumber is None:
        return None
    k = abs(dict(kernel.parameters)[kernel.wavenumber])
    return 2 * math.pi / k if k > 0 else math.inf


def check_wave_range(kernel, root_side: float, order: int) -> None:
    """ValueError, with the numbers, where ``kernel`` oscillates too fast for the FMM of
    ``order`` over a root box of side ``root_side`` (more than :func:`max_root_wavelengths`
    wavelengths)."""
    length = wavelength(kernel)
    if length is None:
        return
    across, limit = root_side / length, max_root_wavelengths(order)
    if across <= limit:
        return
    needed = math.ceil(across / WAVELENGTHS_PER_ORDER - 1e-9)
    remedy = (f"raise the order to {needed}, lower k or split the points into smaller groups"
              if needed <= RANGE_MEASURED_TO_ORDER else
              "lower k or split the points into smaller groups")
    raise ValueError(
        f"kernel {kernel.spec}: the points' root box (side {root_side:.4g}) is {across:.3g} "
        f"wavelengths wide (wavelength {length:.4g}); at order {order} this FMM (a "
        f"low-frequency KIFMM) is accurate up to {limit:.3g} wavelengths (order / 3; "
        f"docs/kernels.md, 'Helmholtz'): {remedy}")

"""The sum over a wire's images in numpy: charges periodic along one axis, free along the other
two, the reference for sums over a lattice periodic in one direction.

The potential at ``x`` of neutral charges ``q_j`` and dipoles ``p_j`` at ``x_j`` repeated along
``e`` (the periodic axis) with period ``L`` is

    phi(x) = sum over n in Z of sum_j [q_j G(x - x_j - n L e) - p_j . grad G(x - x_j - n L e)],

``G(d) = 1 / (4 pi |d|)``, leaving out ``j`` at ``n = 0`` where ``x = x_j``. For a neutral cell
the sum converges: the pair of images ``+-n`` of the cell falls as ``n^-3`` (its monopole
cancels, its dipole cancels between the two). This module sums it plainly, with no splitting:
the images ``|n| <= M`` with the outermost pair at half weight (the trapezoidal rule), whose
error is then a series in even powers of ``1 / M`` (Euler-Maclaurin on the pair's expansion in
odd powers of ``1 / n``), at ``M / 4``, ``M / 2`` and ``M`` from one pass, extrapolated twice
(Richardson) so that the error left falls as ``M^-6``. ``tests/test_wire_sum.py`` holds it to
the alternating chain's Madelung constant ``2 ln 2``, to the sums at other ``M`` (measured:
3e-15 of the largest potential and gradient between ``M`` = 200 and 400) and to finite
differences of itself. The cost is that of every (target, source) pair times
``2 M + 1`` images: a reference for a few hundred targets, not a solver.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["wire_image_sum"]

#: Targets summed at once (a block of targets times every source fits in the caches' reach).
_TARGET_BLOCK = 16


def wire_image_sum(sources, charges, targets=None, side: float = 1.0, axis: int = 2, *,
                   dipoles=None, gradient: bool = False, images: int = 200):
    """The potential at ``targets`` (``(M, 3)``; default the sources) of neutral ``charges``
    ``(N,)`` (or None) and ``dipoles`` ``(N, 3)`` (or None) at ``sources`` ``(N, 3)``, periodic
    along ``axis`` with period ``side``, as the module docstring defines it; with ``gradient``,
    ``(potential, gradient (M, 3))``. ``images``: the ``M`` of the module docstring (a multiple
    of 4, at least 8 times the points' extent across the axis in periods)."""
    sources = np.asarray(sources, dtype=np.float64).reshape(-1, 3)
    charges = (np.zeros(len(sources)) if charges is None
               else np.asarray(charges, dtype=np.float64).reshape(-1))
    if len(charges) != len(sources):
        raise ValueError(f"{len(charges)} charges for {len(sources)} sources")
    dipoles = (np.zeros((len(sources), 3)) if dipoles is None
               else np.asarray(dipoles, dtype=np.float64).reshape(-1, 3))
    if len(dipoles) != len(sources):
        raise ValueError(f"{len(dipoles)} dipoles for {len(sources)} sources")
    side = float(side)
    if not (math.isfinite(side) and side > 0):
        raise ValueError(f"the wire's period must be positive and finite, got {side}")
    if axis not in (0, 1, 2):
        raise ValueError(f"the wire's axis is 0, 1 or 2, not {axis!r}")
    if images < 8 or images % 4:
        raise ValueError(f"images must be a multiple of 4 and at least 8, got {images}")
    if abs(charges.sum()) > 1e-12 * max(np.abs(charges).sum(), 1e-300):
        raise ValueError(f"a wire's charges must be neutral (net charge {charges.sum():.3g}): "
                         "the potential of a charged periodic line grows without bound")
    targets = sources if targets is None else np.asarray(targets, dtype=np.float64).reshape(-1, 3)
    potential = np.empty(len(targets))
    field = np.empty((len(targets), 3))
    for start in range(0, len(targets), _TARGET_BLOCK):
        block = slice(start, start + _TARGET_BLOCK)
        partial = _partial_sums(targets[block], sources, charges, dipoles, side, axis, images)
        # Errors c2 / M^2 + c4 / M^4 + ...: eliminate the M^-2 term, then the M^-4 one.
        quarter, half, whole = partial
        total = (16 * (4 * whole - half) / 3 - (4 * half - quarter) / 3) / 15
        potential[block], field[block] = total[:, 0], total[:, 1:]
    potential /= 4 * np.pi
    field /= 4 * np.pi
    return (potential, field) if gradient else potential


def _partial_sums(targets, sources, charges, dipoles, side, axis, images):
    """The trapezoidal sums over the images ``|n| <= M / 4, M / 2, M`` (``M = images``), each
    ``(T, 4)``: ``4 pi`` times the potential and the gradient at ``targets``."""
    offsets = targets[:, None, :] - sources[None, :, :]
    # The nearest copy along the axis: the images then reach as far on both sides.
    offsets[..., axis] -= side * np.round(offsets[..., axis] / side)
    across = sum(offsets[..., other] ** 2 for other in range(3) if other != axis)
    along_dipoles = np.einsum("tsa,sa->ts", offsets, dipoles)
    sums, running = [], np.zeros((len(targets), 4))
    ends = {images // 4, images // 2, images}
    for n in range(images + 1):
        pair = sum(_image_terms(offsets, across, along_dipoles, charges, dipoles, shift * side,
                                axis) for shift in ((0,) if n == 0 else (n, -n)))
        running += pair
        if n in ends:
            sums.append(running - 0.5 * pair)  # the outermost pair at half weight
    return sums


def _image_terms(offsets, across, along_dipoles, charges, dipoles, shift, axis):
    """``(T, 4)``: ``4 pi`` times the potential and gradient at the targets of the sources'
    image at ``shift`` along ``axis`` (a target on a source leaves that pair out)."""
    along = offsets[..., axis] - shift
    squared = across + along * along
    inverse = np.divide(1.0, np.sqrt(squared), out=np.zeros_like(squared), where=squared > 0)
    cube = inverse ** 3
    # A dipole p's potential is -p . grad G = p . d / |d|^3 (d the offset to the image).
    projection = along_dipoles - shift * dipoles[:, axis]
    result = np.empty((len(offsets), 4))
    result[:, 0] = inverse @ charges + np.einsum("ts,ts->t", cube, projection)
    # The gradient: -q d / |d|^3 for a charge, (p - 3 (p . d) d / |d|^2) / |d|^3 for a dipole.
    weight = -cube * charges - 3 * cube * inverse * inverse * projection
    for component in range(3):
        d = along if component == axis else offsets[..., component]
        result[:, 1 + component] = (np.einsum("ts,ts->t", weight, d)
                                    + cube @ dipoles[:, component])
    return result

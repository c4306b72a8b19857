"""What a periodic FMM's error is measured against: its lattice's own sum at a few targets.

A periodic Laplace FMM sums the cell's charges and dipoles over the images of a cubic cell
(three axes: the Ewald sum, tin-foil, a net charge's uniform background; a slab: the slab's
Ewald sum, vacuum on both sides; a wire: the plain sum over the images). Their references are
numpy sums in :mod:`fmmloopy.maths` (:func:`~fmmloopy.maths.ewald.ewald_sum`,
:func:`~fmmloopy.maths.slab_ewald.slab_ewald_sum`, :func:`~fmmloopy.maths.wire_sum.
wire_image_sum`) whose cost is every (target, source) pair times their images and waves:
:func:`lattice_sum` evaluates them at the sampled targets of ``Fmm.estimate_error``.
"""

from __future__ import annotations

import numpy as np

from fmmloopy.api.units import Fields
from fmmloopy.maths.ewald import ewald_sum
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.slab_ewald import slab_ewald_sum
from fmmloopy.maths.wire_sum import wire_image_sum

__all__ = ["check_lattice_reference", "lattice_sum"]


def check_lattice_reference(fmm, charges, dipoles) -> None:
    """ValueError where :func:`lattice_sum` has no reference for ``fmm``'s call: periodic
    Stokes flow (its reference is :func:`~fmmloopy.maths.hasimoto.hasimoto_sum`, not built
    into the estimate) or several strength vectors at once."""
    if fmm.kernel.base != LAPLACE_3D:
        raise ValueError("estimate_error of a periodic FMM is built for the Laplace kernel; "
                         "compare periodic Stokes flow with fmmloopy.maths.hasimoto."
                         "hasimoto_sum on sampled targets")
    if any(values is not None and np.ndim(values) > (1 if name == "charges" else 2)
           for name, values in (("charges", charges), ("dipoles", dipoles))):
        raise ValueError("estimate_error of a periodic FMM takes one strength vector (charges "
                         "(N,), dipoles (N, 3)); estimate each column apart")


def lattice_sum(cell, sources: np.ndarray, at: np.ndarray, charges, dipoles,
                gradient: bool):
    """The potential (with ``gradient``: :class:`~fmmloopy.api.units.Fields`) at the points
    ``at`` ``(m, 3)`` of ``charges`` and ``dipoles`` at ``sources``, summed over the images of
    ``cell`` (its ``lower`` corner, ``side`` and periodic ``axes``, as
    :class:`~fmmloopy.api.periodic.PeriodicCell` holds them) by its lattice's reference (module
    docstring)."""
    charges = None if charges is None else np.asarray(charges, dtype=np.float64)
    dipoles = None if dipoles is None else np.asarray(dipoles, dtype=np.float64)
    if len(cell.axes) == 3:
        result = ewald_sum(sources - cell.lower, charges, at - cell.lower, cell.side,
                           dipoles=dipoles, gradient=True)
    elif len(cell.axes) == 1:
        result = wire_image_sum(sources, charges, at, cell.side, cell.axes[0], dipoles=dipoles,
                                gradient=True)
    else:  # the slab's sum is periodic in x and y: the free axis goes last
        order = [*cell.axes, next(axis for axis in range(3) if axis not in cell.axes)]
        potential, field = slab_ewald_sum(
            (sources - cell.lower)[:, order], charges, (at - cell.lower)[:, order], cell.side,
            dipoles=None if dipoles is None else dipoles[:, order], gradient=True)
        result = potential, field[:, np.argsort(order)]
    return Fields(*result) if gradient else result[0]

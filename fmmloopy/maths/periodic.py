"""Periodic lattices' far field for the KIFMM: the far images of the root, folded into one operator.

A periodic FMM sums the charges of a cell and of all its images under a lattice of spacing the
cell's side ``L`` (the root box: half-width ``h = L / 2``). The images split in two: the near
ones, ``|n|_inf <= 1`` (the cell and its 26 neighbours), which the tree's lists reach as any
other boxes, and the far ones, ``|n|_inf >= 2``. Seen from the root, each far image is an M2L
source at the separation of the FMM's own V list or more (centres ``2 L = 4 h`` apart and up),
so its multipole (the root's upward equivalent density, shifted by ``n L``) reaches the root's
downward check surface through the kernel; summed over the whole far lattice, that is one
``n_e x n_e`` matrix per order and kernel, :func:`far_lattice_operator`, computed once:

    T[i, j] = sum over |n|_inf >= 2 of K(c_i - e_j - n L)
            = P(c_i - e_j) - sum over |n|_inf <= 1 of K(c_i - e_j - n L),

``c_i`` the downward check points, ``e_j`` the upward equivalent points, ``P`` the periodic
Green's function (:func:`fmmloopy.maths.ewald.ewald_sum` of a unit charge: the tin-foil
convention, a uniform background for its charge). The background's potential, the same for
every source, cancels for densities that sum to zero: the operator is for neutral cells.

One number the exterior field does not carry: the tin-foil sum's potential has mean 0 over the
cell, and for a neutral cell that fixes a constant through the charges' second moment
``sum q |x - c|^2`` (``c`` the root's centre), which an equivalent density with the same
exterior field does not share. The far images' potential through ``T`` differs from the Ewald
sum's by :func:`mean_potential_constant`, added to every target (measured: the difference is
that constant to 1e-8 of it, at order 8; ``tests/test_periodic.py``).
"""

from __future__ import annotations

import itertools

import numpy as np

from fmmloopy.maths.ewald import ewald_sum
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.green import GreenKernel, get_kernel
from fmmloopy.maths.precompute import kernel_matrix

__all__ = ["NEAR_IMAGES", "far_lattice_operator", "mean_potential_constant", "near_image_shifts"]

#: The near images: lattice vectors ``n`` with ``|n|_inf <=`` this (the cell and its 26
#: neighbours), summed by the tree's own lists.
NEAR_IMAGES = 1


def near_image_shifts(cell: float) -> np.ndarray:
    """``(27, 3)``: the lattice vectors ``n L`` of the near images, ``|n|_inf <= 1``."""
    steps = range(-NEAR_IMAGES, NEAR_IMAGES + 1)
    return cell * np.array(list(itertools.product(steps, steps, steps)), dtype=np.float64)


def far_lattice_operator(kernel: GreenKernel | str, order: int) -> np.ndarray:
    """``(n_e, n_e)``: the root's downward check potential from the far images
    (``|n|_inf >= 2``) of its upward equivalent density, for a root box of half-width 1 (the
    lattice's spacing 2), in the module docstring's convention. Laplace only (its periodic
    sum is :mod:`~fmmloopy.maths.ewald`'s); a root of half-width ``h`` scales it by ``1 / h``."""
    kernel = get_kernel(kernel)
    if kernel.name != "laplace" or kernel.n_outputs != 1 or kernel.n_inputs != 1:
        raise ValueError(f"periodic lattices need the Laplace potential kernel, got "
                         f"{kernel.label!r}")
    expansion = Expansion(order)
    check = expansion.surface("downward_check")        # (3, n_e)
    equivalent = expansion.surface("upward_equivalent")
    cell = 2.0
    offsets = (check.T[:, None, :] - equivalent.T[None, :, :]).reshape(-1, 3)
    # One source and n_e^2 targets: a long real-space reach (two cells) and few waves.
    periodic = ewald_sum(np.zeros((1, 3)), [1.0], offsets, cell, alpha=1.5).reshape(
        check.shape[1], equivalent.shape[1])
    near = sum(kernel_matrix(kernel, check, equivalent + shift[:, None])
               for shift in near_image_shifts(cell))
    return periodic - near


def mean_potential_constant(second_moment: float, density: np.ndarray, order: int,
                            half_width: float = 1.0) -> float:
    """What to add to every target's potential through :func:`far_lattice_operator` for the
    tin-foil sum's (module docstring): ``(sum_s q_s |x_s - c|^2 - sum_j d_j |e_j - c|^2) / (6 V)``
    for the cell's charges' ``second_moment`` about the root's centre ``c``, the root's upward
    equivalent ``density`` ``d`` (``e_j`` its points, at ``half_width``) and ``V = (2 h)^3``."""
    equivalent = half_width * Expansion(order).surface("upward_equivalent")
    density_moment = float(np.real(np.asarray(density) @ (equivalent ** 2).sum(axis=0)))
    return (second_moment - density_moment) / (6 * (2 * half_width) ** 3)

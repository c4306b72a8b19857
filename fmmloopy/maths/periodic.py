"""Periodic lattices' far field for the KIFMM: the far images folded into one set of operators.

A periodic FMM sums the charges of a cubic cell of side ``L`` and of all its images ``n L``. The
images split in two: the near ones, ``|n|_inf <= 1`` (the cell and its 26 neighbours), which the
tree's lists reach as any other boxes (:mod:`fmmloopy.tree.periodic`), and the far ones,
``|n|_inf >= 2``, whose field in the cell is smooth: it comes through the multipoles of the
cell's eight children (the boxes of half-width ``L / 4``) into their downward check potentials,

    T_d[i, j] = sum over |n|_inf >= 2 of K(c_i - e_j - d - n L),

``c_i`` a child's downward check points, ``e_j`` the upward equivalent points of the child at
offset ``d`` from it (``d`` in ``{-1, 0, 1}^3`` child widths: 27 operators,
:func:`lattice_operators`, computed once per order). At the children rather than at the cell:
the nearest far image of a child is three child widths away, against two for the cell's own,
and the error of the far field drops about a hundredfold at order 6 (measured: 9.6e-6 -> 7.7e-8
of it, for 2000 random charges).

The sum is the Ewald sum's (:mod:`fmmloopy.maths.ewald`: tin-foil boundary, a uniform
background neutralising a net charge) less the near images, :func:`lattice_remainder`. One
number the exterior field does not carry: the tin-foil potential has mean 0 over the cell, and
that fixes a constant through the charges' second moment ``sum q |x - c|^2`` (``c`` the cell's
centre), which equivalent densities with the same exterior field do not share; every potential
gets :func:`mean_potential_constant` (measured: the far images' field through the operators
differs from Ewald less the near images by that constant to 1e-8 of it).

Everything here is for the Laplace kernel ``1 / (4 pi r)`` and a cell of half-width 1 (side 2);
a cell of half-width ``h`` scales the operators by ``1 / h``.
"""

from __future__ import annotations

import functools
import itertools
import math

import numpy as np

from fmmloopy.base.optional import optional_module
from fmmloopy.maths.expansion import Expansion
from fmmloopy.maths.surfaces import surface_ticks, unit_surface

__all__ = ["CHILD_OFFSETS", "NEAR_IMAGES", "lattice_entries", "lattice_operators",
           "lattice_remainder",
           "mean_potential_constant", "near_image_shifts", "offset_code"]

#: The near images: lattice vectors ``n`` with ``|n|_inf <=`` this (the cell and its 26
#: neighbours), summed by the tree's own lists.
NEAR_IMAGES = 1
#: The cell's side in the units of this module (half-width 1).
_SIDE = 2.0
#: Child offsets ``d`` (source child's centre less the target child's, in child widths), in the
#: order of :func:`offset_code`.
CHILD_OFFSETS = np.array(list(itertools.product((-1, 0, 1), repeat=3)), dtype=np.int64)

# The Ewald splitting of lattice_remainder: erfc(alpha r) and the waves' Gaussian both below
# 1e-17 of their first term at the cutoffs; alpha balances the images against the waves.
_ALPHA = 2.0
_REACH = math.sqrt(-math.log(1e-17))
_REAL_CUTOFF = _REACH / _ALPHA
_WAVE_CUTOFF = 2.0 * _ALPHA * _REACH
_CHUNK = 4096


def offset_code(offsets: np.ndarray) -> np.ndarray:
    """The index into :data:`CHILD_OFFSETS` of each offset ``(..., 3)`` in ``{-1, 0, 1}``."""
    offsets = np.asarray(offsets, dtype=np.int64)
    return 9 * (offsets[..., 0] + 1) + 3 * (offsets[..., 1] + 1) + (offsets[..., 2] + 1)


def near_image_shifts(cell: float) -> np.ndarray:
    """``(27, 3)``: the lattice vectors ``n L`` of the near images, ``|n|_inf <= 1``."""
    steps = range(-NEAR_IMAGES, NEAR_IMAGES + 1)
    return cell * np.array(list(itertools.product(steps, steps, steps)), dtype=np.float64)


def lattice_remainder(offsets: np.ndarray, free_axis: int | None = None) -> np.ndarray:
    """``F(r)``: the periodic Green's function of a unit charge in the cell of side 2 less its
    near images, ``(M,)`` at ``offsets`` ``(M, 3)`` (``|r|_inf`` up to about 2.5 along the
    periodic axes, where ``F`` is smooth: its nearest singularities are the far images at
    ``|r|_inf = 4``). At ``r = 0`` it is the limit (the near image at 0 left out with its
    singularity).

    ``free_axis`` None: periodic along the three axes, the Ewald sum's convention (27 near
    images). An axis: periodic along the other two only (a slab, free along ``free_axis``: 9
    near images), the slab sum's Green's function (:mod:`fmmloopy.maths.slab_ewald`: no
    background, no constant to fix; it grows as ``-|z| / (2 A)`` away from the plane, the
    field of a charged sheet, which a neutral cell's sum cancels)."""
    offsets = np.asarray(offsets, dtype=np.float64).reshape(-1, 3)
    reach = int(np.ceil((_REAL_CUTOFF + 2.5) / _SIDE))
    steps = range(-reach, reach + 1)
    lattice = np.array(list(itertools.product(steps, steps, steps)), dtype=np.int64)
    if free_axis is not None:
        lattice = lattice[lattice[:, free_axis] == 0]
    near = np.abs(lattice).max(axis=1) <= NEAR_IMAGES
    near_shifts, far_shifts = _SIDE * lattice[near], _SIDE * lattice[~near]
    waves = _cell_waves if free_axis is None else functools.partial(_slab_waves,
                                                                      free_axis=free_axis)
    result = np.empty(len(offsets))
    for start in range(0, len(offsets), _CHUNK):
        r = offsets[start:start + _CHUNK]
        result[start:start + _CHUNK] = (_images_real_part(r, near_shifts, far_shifts)
                                        + waves(r)) / (4 * np.pi)
    return result


def _images_real_part(r: np.ndarray, near_shifts: np.ndarray,
                      far_shifts: np.ndarray) -> np.ndarray:
    """Ewald's real-space sum at offsets ``r`` ``(P, 3)``: ``erfc(alpha rho) / rho`` of the far
    images, ``-erf(alpha rho) / rho`` of the near ones (their ``erfc`` term less their
    ``1 / rho``; at ``rho = 0`` its limit)."""
    special = optional_module("scipy.special", "scipy", "fmmloopy.maths.periodic")
    rho = np.linalg.norm(r[:, None, :] - near_shifts[None], axis=-1)
    safe = np.where(rho > 0, rho, 1.0)
    real = np.where(rho > 0, -special.erf(_ALPHA * safe) / safe,
                    -2 * _ALPHA / math.sqrt(math.pi)).sum(axis=1)
    # The far images within reach, a few per offset, found by squared distances from one
    # product (|r - s|^2 = |r|^2 - 2 r.s + |s|^2; rounding far below the reach's margin).
    squared = ((r ** 2).sum(axis=1)[:, None] - 2 * (r @ far_shifts.T)
               + (far_shifts ** 2).sum(axis=1)[None])
    rows, columns = np.nonzero(squared < _REAL_CUTOFF ** 2)
    rho = np.linalg.norm(r[rows] - far_shifts[columns], axis=1)
    return real + np.bincount(rows, weights=special.erfc(_ALPHA * rho) / rho, minlength=len(r))


def _wave_modes() -> tuple[np.ndarray, np.ndarray]:
    """The modes ``m`` of one axis within the waves' cutoff, and their ``k = 2 pi m / side``."""
    extent = int(np.floor(_WAVE_CUTOFF * _SIDE / (2 * np.pi)))
    modes = np.arange(-extent, extent + 1)
    return modes, 2 * np.pi * modes / _SIDE


def _cell_waves(r: np.ndarray) -> np.ndarray:
    """The fully periodic sum's waves and background at offsets ``r`` ``(P, 3)``: ``cos(k .
    r)`` weighted, summed axis by axis (``sum_m w_m e^{i kx x} e^{i ky y} e^{i kz z}``)."""
    volume = _SIDE ** 3
    modes, axis_waves = _wave_modes()
    waves = np.stack(np.meshgrid(axis_waves, axis_waves, axis_waves, indexing="ij"), -1)
    squared = (waves ** 2).sum(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        weights = np.where((squared > 0) & (squared < _WAVE_CUTOFF ** 2),
                           (4 * np.pi / volume) * np.exp(-squared / (4 * _ALPHA ** 2))
                           / squared, 0.0)
    phases = [np.exp(1j * np.outer(r[:, axis], axis_waves)) for axis in range(3)]
    inner = (phases[2] @ weights.reshape(-1, len(modes)).T).reshape(len(r), len(modes),
                                                                      len(modes))
    inner = np.einsum("txy,ty->tx", inner, phases[1])
    background = -np.pi / (_ALPHA ** 2 * volume)
    return np.einsum("tx,tx->t", inner, phases[0]).real + background


def _slab_waves(r: np.ndarray, free_axis: int) -> np.ndarray:
    """The slab sum's waves (Parry's, :mod:`fmmloopy.maths.slab_ewald`) and its ``k = 0``
    term at offsets ``r`` ``(P, 3)``, free along ``free_axis``. A wave's factor along the free
    axis depends on ``|k|`` alone: it is evaluated once per distinct ``|k|`` and gathered
    onto the plane's modes, summed axis by axis as in :func:`_cell_waves`."""
    special = optional_module("scipy.special", "scipy", "fmmloopy.maths.periodic")
    area = _SIDE ** 2
    first, second = (axis for axis in range(3) if axis != free_axis)
    z = r[:, free_axis]
    modes, axis_waves = _wave_modes()
    squares = modes[:, None] ** 2 + modes[None, :] ** 2
    inside = (squares > 0) & (squares * (2 * np.pi / _SIDE) ** 2 < _WAVE_CUTOFF ** 2)
    distinct, where = np.unique(squares[inside], return_inverse=True)
    k = 2 * np.pi / _SIDE * np.sqrt(distinct)
    u = k / (2 * _ALPHA)
    alpha_z = _ALPHA * z[:, None]
    # e^(+-k z) erfc(u +- alpha z) = erfcx(u +- alpha z) e^(-u^2 - alpha^2 z^2)
    factors = (np.pi / (area * k)) * (special.erfcx(u + alpha_z) + special.erfcx(u - alpha_z)
                                      ) * np.exp(-u * u - alpha_z ** 2)
    weights = np.zeros((len(r), len(modes), len(modes)))
    weights[:, inside] = factors[:, where.reshape(-1)]
    phases = [np.exp(1j * np.outer(r[:, axis], axis_waves)) for axis in (first, second)]
    waves = np.einsum("txy,tx,ty->t", weights, phases[0], phases[1]).real
    gaussian = np.exp(-(_ALPHA * z) ** 2)
    sheet = -(2 * math.sqrt(math.pi) / area) * (gaussian / _ALPHA + math.sqrt(math.pi) * z
                                                 * special.erf(_ALPHA * z))
    return waves + sheet


def _grid_indices(points: np.ndarray, order: int) -> np.ndarray:
    """``(n, 3)``: the grid index of each coordinate of unit-surface ``points`` ``(3, n)``."""
    ticks = surface_ticks(order)
    index = np.searchsorted(ticks, points.T)
    if not np.array_equal(ticks[index], points.T):
        raise AssertionError("surface points off their grid")
    return index


def _symmetries(free_axis: int | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """The symmetries of the cube as (axis permutation, signs), ``x -> signs * x[perm]``: the
    48 of a lattice periodic along every axis; of a slab's (``free_axis``), the 16 that keep
    the free axis (the square's 8, each with the free axis flipped or not)."""
    return [(np.array(perm), np.array(signs))
            for perm in itertools.permutations(range(3))
            for signs in itertools.product((1, -1), repeat=3)
            if free_axis is None or perm[free_axis] == free_axis]


def lattice_operators(order: int, free_axis: int | None = None) -> np.ndarray:
    """``(27, n_e, n_e)``: :math:`T_d` (module docstring) for each offset of
    :data:`CHILD_OFFSETS`, children of half-width 1/2 in a cell of half-width 1, periodic
    along every axis or, with ``free_axis``, a slab's (:func:`lattice_remainder`).

    ``F`` is computed for one offset of each kind (for a fully periodic lattice the child
    itself, a face, an edge and a corner neighbour; a slab's six) and carried to the others by
    the symmetries ``F``, the lattice and the surfaces share: ``T_{g d}[g i, g j] = T_d[i,
    j]``."""
    expansion = Expansion(order)
    check = 0.5 * expansion.surface("downward_check")
    equivalent = 0.5 * expansion.surface("upward_equivalent")
    # Both surfaces are a radius times the unit grid: one index table serves both.
    check_index = _grid_indices(unit_surface(order), order)
    lookup = {tuple(index): number for number, index in enumerate(check_index)}
    n_e = check.shape[1]
    operators = np.empty((len(CHILD_OFFSETS), n_e, n_e))
    done = np.zeros(len(CHILD_OFFSETS), dtype=bool)
    for representative in CHILD_OFFSETS:
        if done[offset_code(representative)]:
            continue
        offsets = check.T[:, None, :] - equivalent.T[None, :, :] - representative
        block = lattice_remainder(offsets.reshape(-1, 3), free_axis).reshape(n_e, n_e)
        for perm, signs in _symmetries(free_axis):
            image = offset_code(signs * representative[perm])
            if done[image]:
                continue
            moved = _moved_indices(check_index, perm, signs, order)
            permutation = np.array([lookup[tuple(index)] for index in moved])
            operators[image][np.ix_(permutation, permutation)] = block
            done[image] = True
    return operators


def _moved_indices(index: np.ndarray, perm: np.ndarray, signs: np.ndarray,
                   order: int) -> np.ndarray:
    """The grid indices ``(n, 3)`` of the points ``g s`` for ``g = (perm, signs)``."""
    moved = index[:, perm]
    return np.where(signs[None] > 0, moved, order - 1 - moved)


def lattice_entries(order: int, operators: np.ndarray, samples: int = 16, seed: int = 0,
                    free_axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(stored, recomputed)``: ``samples`` entries of ``operators`` (as
    :func:`lattice_operators` gives them at ``order`` and ``free_axis``) at random (offset,
    row, column), and the same from :func:`lattice_remainder` (the check of operators read
    from a file)."""
    expansion = Expansion(order)
    check = 0.5 * expansion.surface("downward_check")
    equivalent = 0.5 * expansion.surface("upward_equivalent")
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, len(CHILD_OFFSETS), samples)
    rows, columns = rng.integers(0, check.shape[1], (2, samples))
    offsets = check.T[rows] - equivalent.T[columns] - CHILD_OFFSETS[codes]
    return operators[codes, rows, columns], lattice_remainder(offsets, free_axis)


def mean_potential_constant(second_moment: float, density_moment: float,
                            half_width: float = 1.0) -> float:
    """What to add to every potential through :func:`lattice_operators` (module docstring):
    ``(sum_s q_s |x_s - c|^2 - sum_j d_j |e_j - c|^2) / (6 V)``, from the charges'
    ``second_moment`` and the equivalent densities' ``density_moment`` about the cell's centre
    ``c``, and ``V = (2 h)^3``."""
    return (second_moment - density_moment) / (6 * (2 * half_width) ** 3)

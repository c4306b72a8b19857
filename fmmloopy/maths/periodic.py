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

A slab (periodic along two axes, free along the third) or a wire (periodic along one) has the
same 27 operators with its own sum: its near images are its 9 or 3 with ``|n|_inf <= 1``, and
``F`` is the slab's Green's function (Parry's sum, :mod:`fmmloopy.maths.slab_ewald`) or the
wire's plain sum over ``|n| >= 2`` less those (:func:`lattice_remainder`). Both are plain sums
over the images for a neutral cell: no constant to fix, and each child's exact charge enters
as in three dimensions (a constant per unit charge in the wire's ``F`` cancels in a neutral
cell's sum). Measured: the slab FMM against :func:`~fmmloopy.maths.slab_ewald.slab_ewald_sum`
shows no constant in its error (300 random charges at order 10: the error's mean 1.0e-10 of
the potentials' RMS, its relative L2 norm 9.0e-10).

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

__all__ = ["ALL_AXES", "CHILD_OFFSETS", "NEAR_IMAGES", "free_axes", "lattice_entries",
           "lattice_operators", "lattice_remainder", "mean_potential_constant",
           "near_image_shifts", "offset_code"]

#: The periodic axes of a cell periodic along every axis.
ALL_AXES = (0, 1, 2)
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
#: A wire's images summed one by one (``2 <= |n| <=`` this); beyond, the Legendre series to
#: degree ``_WIRE_DEGREE``: its terms fall as ``(|r| / (n L))^l``, below 1e-18 for ``|r| <
#: 4.5`` at ``n = 9``.
_WIRE_IMAGES = 8
_WIRE_DEGREE = 30


def offset_code(offsets: np.ndarray) -> np.ndarray:
    """The index into :data:`CHILD_OFFSETS` of each offset ``(..., 3)`` in ``{-1, 0, 1}``."""
    offsets = np.asarray(offsets, dtype=np.int64)
    return 9 * (offsets[..., 0] + 1) + 3 * (offsets[..., 1] + 1) + (offsets[..., 2] + 1)


def near_image_shifts(cell: float) -> np.ndarray:
    """``(27, 3)``: the lattice vectors ``n L`` of the near images, ``|n|_inf <= 1``."""
    steps = range(-NEAR_IMAGES, NEAR_IMAGES + 1)
    return cell * np.array(list(itertools.product(steps, steps, steps)), dtype=np.float64)


def lattice_remainder(offsets: np.ndarray, axes: tuple[int, ...] = ALL_AXES) -> np.ndarray:
    """``F(r)``: the periodic Green's function of a unit charge in the cell of side 2 less its
    near images, ``(M,)`` at ``offsets`` ``(M, 3)`` (``|r|_inf`` up to about 2.5, where ``F``
    is smooth: its nearest singularities are the far images, 4 away along a periodic axis). At
    ``r = 0`` it is the limit (the near image at 0 left out with its singularity).

    ``axes``: the periodic axes. All three: the Ewald sum's convention (27 near images). Two
    (a slab, 9 near images): the slab sum's Green's function (:mod:`fmmloopy.maths.
    slab_ewald`: no background, no constant to fix; it grows as ``-|z| / (2 A)`` away from
    the plane, the field of a charged sheet, which a neutral cell's sum cancels). One (a wire,
    3 near images): the plain sum over the far images, each less its value ``1 / (4 pi |n|
    L)`` at the origin (:func:`_wire_remainder`; a constant per unit charge, which a neutral
    cell's sum cancels)."""
    offsets = np.asarray(offsets, dtype=np.float64).reshape(-1, 3)
    axes = tuple(axes)
    if len(axes) == 1:
        return _wire_remainder(offsets, axes[0])
    reach = int(np.ceil((_REAL_CUTOFF + 2.5) / _SIDE))
    steps = range(-reach, reach + 1)
    lattice = np.array(list(itertools.product(steps, steps, steps)), dtype=np.int64)
    lattice = lattice[np.all(lattice[:, free_axes(axes)] == 0, axis=1)]
    near = np.abs(lattice).max(axis=1) <= NEAR_IMAGES
    near_shifts, far_shifts = _SIDE * lattice[near], _SIDE * lattice[~near]
    waves = _cell_waves if len(axes) == 3 else functools.partial(
        _slab_waves, free_axis=free_axes(axes)[0])
    result = np.empty(len(offsets))
    for start in range(0, len(offsets), _CHUNK):
        r = offsets[start:start + _CHUNK]
        result[start:start + _CHUNK] = (_images_real_part(r, near_shifts, far_shifts)
                                        + waves(r)) / (4 * np.pi)
    return result


def free_axes(axes: tuple[int, ...]) -> list[int]:
    """The axes not in ``axes`` (the periodic ones): a slab's one, a wire's two."""
    return [axis for axis in ALL_AXES if axis not in axes]


def _wire_remainder(offsets: np.ndarray, axis: int) -> np.ndarray:
    """A wire's ``F`` (:func:`lattice_remainder`), periodic along ``axis``:

        4 pi F(r) = sum over |n| >= 2 of (1 / |r - n L e| - 1 / (|n| L)),

    ``L = 2``, ``e`` the axis. The images up to :data:`_WIRE_IMAGES` are summed; beyond, the
    pair ``+-n`` expanded in Legendre polynomials: ``1 / |r - n L e| + 1 / |r + n L e| -
    2 / (n L) = 2 sum over even l >= 2 of |r|^l P_l(cos t) / (n L)^(l + 1)`` (``cos t`` the
    axis's share of ``r``), each degree's sum over ``n`` a Hurwitz zeta value."""
    special = optional_module("scipy.special", "scipy", "fmmloopy.maths.periodic")
    along = offsets[:, axis]
    total = np.zeros(len(offsets))
    for n in range(2, _WIRE_IMAGES + 1):
        for sign in (1, -1):
            shifted = offsets.copy()
            shifted[:, axis] -= sign * n * _SIDE
            total += 1.0 / np.linalg.norm(shifted, axis=1)
        total -= 2.0 / (n * _SIDE)
    # |r|^l P_l(cos t) by Bonnet's recurrence on the homogeneous polynomials:
    # (l + 1) Q_(l+1) = (2 l + 1) a Q_l - l |r|^2 Q_(l-1), Q_0 = 1, Q_1 = a.
    squared = (offsets ** 2).sum(axis=1)
    previous, current = np.ones(len(offsets)), along
    for degree in range(1, _WIRE_DEGREE):
        previous, current = current, ((2 * degree + 1) * along * current
                                      - degree * squared * previous) / (degree + 1)
        if degree % 2:  # current is Q_(degree + 1), an even degree
            total += 2 * current * special.zeta(degree + 2, _WIRE_IMAGES + 1) \
                / _SIDE ** (degree + 2)
    return total / (4 * np.pi)


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


def _symmetries(axes: tuple[int, ...] = ALL_AXES) -> list[tuple[np.ndarray, np.ndarray]]:
    """The symmetries of the cube that keep the periodic ``axes`` periodic, as (axis
    permutation, signs), ``x -> signs * x[perm]``: all 48 for a cell periodic along every
    axis, 16 for a slab or a wire (the square's 8 about the odd axis out, each with it flipped
    or not)."""
    return [(np.array(perm), np.array(signs))
            for perm in itertools.permutations(range(3))
            for signs in itertools.product((1, -1), repeat=3)
            if all(perm[axis] in axes for axis in axes)]


def lattice_operators(order: int, axes: tuple[int, ...] = ALL_AXES) -> np.ndarray:
    """``(27, n_e, n_e)``: :math:`T_d` (module docstring) for each offset of
    :data:`CHILD_OFFSETS`, children of half-width 1/2 in a cell of half-width 1, periodic
    along ``axes`` (:func:`lattice_remainder`).

    ``F`` is computed for one offset of each kind (for a fully periodic lattice the child
    itself, a face, an edge and a corner neighbour; a slab's or a wire's six) and carried to
    the others by the symmetries ``F``, the lattice and the surfaces share: ``T_{g d}[g i, g
    j] = T_d[i, j]``."""
    axes = tuple(axes)
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
        block = lattice_remainder(offsets.reshape(-1, 3), axes).reshape(n_e, n_e)
        for perm, signs in _symmetries(axes):
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
                    axes: tuple[int, ...] = ALL_AXES) -> tuple[np.ndarray, np.ndarray]:
    """``(stored, recomputed)``: ``samples`` entries of ``operators`` (as
    :func:`lattice_operators` gives them at ``order`` and ``axes``) at random (offset,
    row, column), and the same from :func:`lattice_remainder` (the check of operators read
    from a file)."""
    expansion = Expansion(order)
    check = 0.5 * expansion.surface("downward_check")
    equivalent = 0.5 * expansion.surface("upward_equivalent")
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, len(CHILD_OFFSETS), samples)
    rows, columns = rng.integers(0, check.shape[1], (2, samples))
    offsets = check.T[rows] - equivalent.T[columns] - CHILD_OFFSETS[codes]
    return operators[codes, rows, columns], lattice_remainder(offsets, axes)


def mean_potential_constant(second_moment: float, density_moment: float,
                            half_width: float = 1.0) -> float:
    """What to add to every potential through :func:`lattice_operators` (module docstring):
    ``(sum_s q_s |x_s - c|^2 - sum_j d_j |e_j - c|^2) / (6 V)``, from the charges'
    ``second_moment`` and the equivalent densities' ``density_moment`` about the cell's centre
    ``c``, and ``V = (2 h)^3``."""
    return (second_moment - density_moment) / (6 * (2 * half_width) ** 3)

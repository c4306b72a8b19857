"""Ewald sums in numpy: potentials and gradients of charges and dipoles in a periodic box, the
reference periodic FMMs are compared with.

The potential at ``x`` of charges ``q_j`` at ``x_j`` in an orthorhombic cell of sides ``L`` is

    phi(x) = sum over n in Z^3 of sum_j q_j G(x - x_j - n L),    G(d) = 1 / (4 pi |d|),

leaving out ``j`` at ``n = 0`` where ``x = x_j`` (a charge does not act on itself; its images
do). The lattice sum converges only conditionally; Ewald's split gives it the meaning of the
**tin-foil** boundary condition (the infinite lattice embedded in a conductor: no surface
term), and a net charge ``Q`` is neutralised by a uniform background of charge ``-Q`` spread
over the cell (the ``k = 0`` term left out). With ``erfc`` splitting at ``alpha``:

    4 pi phi(x) = sum_n sum_j q_j erfc(alpha r) / r                     (r = |x - x_j - n L|)
                + (4 pi / V) sum_(k != 0) exp(-k^2 / 4 alpha^2) / k^2 Re(S(k) e^(i k x))
                - 2 alpha / sqrt(pi) q_self - pi Q / (alpha^2 V),

``S(k) = sum_j q_j exp(-i k x_j)``, ``k = 2 pi m / L``. A dipole ``p_j`` acts as ``-p_j . grad``
of its point's terms: ``-p_j . grad erfc(alpha r) / r`` in real space, ``q_j`` becomes
``q_j - i k . p_j`` in ``S(k)``, and its own Gaussian's field, ``4 alpha^3 / (3 sqrt(pi)) p``, is
taken from the gradient at a target on it (its potential there is 0); dipoles carry no net
charge. ``alpha`` and the two cutoffs are chosen
so that each part's truncation is below ``tolerance`` relative to the sum of ``|q|``; the result
does not depend on ``alpha`` (``tests/test_ewald.py`` checks it, and NaCl's and CsCl's Madelung
constants).

This is a reference for tests and benchmarks, not a solver: its waves cost O((N + M) / tolerance
-ish) per wave and it sums ``N + M`` times several thousand of them (10^5 charges at a few
hundred targets: about a minute). The real-space pairs come from SciPy's periodic k-d tree
where the cutoff is below half the cell (one image per pair). It needs SciPy (the ``scipy``
extra).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator

import numpy as np

from fmmloopy.base.optional import optional_module

__all__ = ["ewald_sum"]

#: Index and offset blocks of the real-space pairs: ``(target rows, source columns,
#: offsets (n, 3))``.
_Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]

#: ``sqrt(-ln(tolerance))`` is where ``erfc`` and the reciprocal Gaussian fall below
#: ``tolerance``; the cutoffs take this many times more (their tails' prefactors are below 1).
_CUTOFF_FACTOR = 1.1

#: Pairs (target, source, image) evaluated at once.
_CHUNK = 2 ** 21


def ewald_sum(sources, charges=None, targets=None, cell=1.0, *, dipoles=None,
              gradient: bool = False, tolerance: float = 1e-13, alpha: float | None = None):
    """The periodic potential at ``targets`` (``(M, 3)``; default the sources) of ``charges``
    ``(N,)`` and/or ``dipoles`` ``(N, 3)`` at ``sources`` ``(N, 3)`` in the cell ``[0, L)^3``
    (``cell``: ``L``, a number or three sides), as the module docstring defines it; with
    ``gradient``, ``(potential, gradient)``, the gradient ``(M, 3)`` with respect to the
    target. Points may lie outside the cell (the lattice is the same). ``alpha``: the splitting
    parameter (default balanced for ``tolerance`` with a real-space cutoff of half the shortest
    side)."""
    special = optional_module("scipy.special", "scipy", "fmmloopy.maths.ewald")
    sources = np.asarray(sources, dtype=np.float64).reshape(-1, 3)
    if charges is None and dipoles is None:
        raise ValueError("give charges, dipoles or both")
    charges = (np.zeros(len(sources)) if charges is None
               else np.asarray(charges, dtype=np.float64).reshape(-1))
    if len(charges) != len(sources):
        raise ValueError(f"{len(charges)} charges for {len(sources)} sources")
    if dipoles is not None:
        dipoles = np.asarray(dipoles, dtype=np.float64)
        if dipoles.shape != sources.shape:
            raise ValueError(f"dipoles must be (N, 3) for {len(sources)} sources, got shape "
                             f"{dipoles.shape}")
    targets = sources if targets is None else np.asarray(targets, dtype=np.float64).reshape(-1, 3)
    sides = np.broadcast_to(np.asarray(cell, dtype=np.float64), (3,)).copy()
    if not (np.all(np.isfinite(sides)) and np.all(sides > 0)):
        raise ValueError(f"the cell's sides must be positive and finite, got {sides.tolist()}")
    volume = float(np.prod(sides))
    reach = math.sqrt(-math.log(tolerance)) * _CUTOFF_FACTOR
    cutoff = 0.5 * float(sides.min())
    alpha = reach / cutoff if alpha is None else float(alpha)
    cutoff = reach / alpha
    k_cutoff = 2 * alpha * reach

    # Real space: every image within the cutoff (targets and sources wrapped into the cell,
    # so that the images to visit do not depend on where the points were given).
    wrapped_sources = np.mod(sources, sides)
    wrapped_targets = np.mod(targets, sides)
    wrapped_sources[wrapped_sources >= sides] = 0.0  # mod of a tiny negative number
    wrapped_targets[wrapped_targets >= sides] = 0.0
    if cutoff <= 0.5 * float(sides.min()):
        parts = _nearest_images(wrapped_targets, wrapped_sources, sides, cutoff)
    else:
        parts = _all_images(wrapped_targets, wrapped_sources, sides, cutoff)
    potential = np.zeros(len(targets))
    field = np.zeros((len(targets), 3))
    on_source = np.zeros(len(targets))  # the charge of a source (image) at each target
    dipole_on_source = np.zeros((len(targets), 3))  # and its dipole
    gaussian = 2 * alpha / math.sqrt(math.pi)
    for rows, columns, offsets in parts:
        distance = np.linalg.norm(offsets, axis=-1)
        # A target on a source (at n = 0 after wrapping) leaves that pair out.
        inside = (distance > 0) & (distance < cutoff)
        r = np.where(inside, distance, 1.0)
        screened = np.where(inside, special.erfc(alpha * r) / r, 0.0)
        weights = charges[columns]
        potential += np.bincount(rows, screened * weights, len(targets))
        on_source += np.bincount(rows, (distance == 0) * weights, len(targets))
        if not gradient and dipoles is None:
            continue
        # f = erfc(alpha r) / r: grad f = radial * offset, its Hessian
        # radial I + curvature * offset offset^T.
        decay = np.where(inside, gaussian * np.exp(-(alpha * r) ** 2), 0.0)
        radial = -(screened + decay) / r ** 2
        if dipoles is not None:
            moments = dipoles[columns]
            along = (moments * offsets).sum(axis=1)  # p . offset
            potential -= np.bincount(rows, radial * along, len(targets))
            for axis in range(3):
                dipole_on_source[:, axis] += np.bincount(rows, (distance == 0)
                                                         * moments[:, axis], len(targets))
            if gradient:
                curvature = (3 * screened + decay * (3 + 2 * (alpha * r) ** 2)) / r ** 4
                for axis in range(3):
                    field[:, axis] -= np.bincount(
                        rows, radial * moments[:, axis] + curvature * offsets[:, axis] * along,
                        len(targets))
        if gradient:
            for axis in range(3):
                field[:, axis] += np.bincount(rows, radial * offsets[:, axis] * weights,
                                              len(targets))

    # Reciprocal space: every k = 2 pi m / L with 0 < |k| < k_cutoff, summed axis by axis:
    # e^(i k . x) is the product of one phase per axis, so the structure factors and the sums
    # at the targets are products of small per-axis tables (matrix products, not one
    # exponential per point and wave).
    extent = np.floor(k_cutoff * sides / (2 * np.pi)).astype(int)
    axis_waves = [2 * np.pi * np.arange(-e, e + 1) / side for e, side in zip(extent, sides,
                                                                             strict=True)]
    grids = np.meshgrid(*axis_waves, indexing="ij")
    squared = sum(grid ** 2 for grid in grids)
    with np.errstate(divide="ignore"):
        weights = np.where((squared > 0) & (squared < k_cutoff ** 2),
                           (4 * np.pi / volume) * np.exp(-squared / (4 * alpha ** 2))
                           / np.where(squared > 0, squared, 1.0), 0.0)
    rows = max(1, _CHUNK // weights[:, :, 0].size)
    # S(k) = sum_j (q_j - i k . p_j) e^(-i k x_j)
    structure = _structure(sources, charges, axis_waves, rows)
    if dipoles is not None:
        for axis, grid in enumerate(grids):
            structure -= 1j * grid * _structure(sources, dipoles[:, axis], axis_waves, rows)
    weighted = weights * structure
    terms = [weighted] + ([1j * grid * weighted for grid in grids] if gradient else [])
    for start in range(0, len(targets), rows):
        part = slice(start, start + rows)
        phases = _axis_phases(targets[part], axis_waves, 1)
        sums = [np.einsum("txy,tx,ty->t", np.tensordot(phases[2], term, axes=([1], [2])),
                          phases[0], phases[1]).real for term in terms]
        potential[part] += sums[0]
        if gradient:
            field[part] += np.column_stack(sums[1:])

    # A target on a source: that source's own Gaussian, which the reciprocal sum holds.
    potential -= gaussian * on_source
    field -= (4 * alpha ** 3 / (3 * math.sqrt(math.pi))) * dipole_on_source
    potential -= math.pi * float(charges.sum()) / (alpha ** 2 * volume)  # the background
    potential /= 4 * np.pi
    if not gradient:
        return potential
    return potential, field / (4 * np.pi)


def _structure(sources: np.ndarray, weights: np.ndarray, axis_waves: list[np.ndarray],
               rows: int) -> np.ndarray:
    """``sum_j w_j e^(-i k x_j)`` on the grid of ``axis_waves``, ``rows`` sources at a time."""
    structure = np.zeros(tuple(len(waves) for waves in axis_waves), dtype=complex)
    for start in range(0, len(sources), rows):
        part = slice(start, start + rows)
        phases = _axis_phases(sources[part], axis_waves, -1)
        pairs = weights[part, None, None] * phases[0][:, :, None] * phases[1][:, None, :]
        structure += np.tensordot(pairs, phases[2], axes=([0], [0]))
    return structure


def _nearest_images(targets: np.ndarray, sources: np.ndarray, sides: np.ndarray,
                    cutoff: float) -> Iterator[_Pairs]:
    """The pairs closer than ``cutoff`` (below half the cell: each through one image), by a
    periodic k-d tree, in one block; offsets ``target - source - n L``."""
    spatial = optional_module("scipy.spatial", "scipy", "fmmloopy.maths.ewald")
    source_tree = spatial.cKDTree(sources, boxsize=sides)
    target_tree = spatial.cKDTree(targets, boxsize=sides)
    pairs = target_tree.sparse_distance_matrix(source_tree, cutoff, output_type="coo_matrix")
    rows, columns = pairs.row.astype(np.int64), pairs.col.astype(np.int64)  # coincident
    # points too, at distance 0
    offsets = targets[rows] - sources[columns]
    offsets -= sides * np.round(offsets / sides)
    yield rows, columns, offsets


def _all_images(targets: np.ndarray, sources: np.ndarray, sides: np.ndarray,
                cutoff: float) -> Iterator[_Pairs]:
    """Every (target, source, image) within reach of the cell, in blocks."""
    reach_cells = np.ceil(cutoff / sides).astype(int) + 1
    shifts = np.array(list(itertools.product(*(range(-r, r + 1) for r in reach_cells)))) * sides
    rows_per_block = max(1, _CHUNK // max(1, len(sources) * len(shifts)))
    pair_sources = np.repeat(np.arange(len(sources)), len(shifts))
    for start in range(0, len(targets), rows_per_block):
        block = np.arange(start, min(start + rows_per_block, len(targets)))
        offsets = (targets[block, None, None, :] - sources[None, :, None, :]
                   - shifts[None, None, :, :]).reshape(-1, 3)
        rows = np.repeat(block, len(sources) * len(shifts))
        columns = np.tile(pair_sources, len(block))
        yield rows, columns, offsets


def _axis_phases(points: np.ndarray, axis_waves: list[np.ndarray], sign: int
                 ) -> list[np.ndarray]:
    """``e^(sign i k_a x_a)`` per axis ``a``: ``(n, waves along a)`` each."""
    return [np.exp(sign * 1j * np.outer(points[:, axis], axis_waves[axis]))
            for axis in range(3)]

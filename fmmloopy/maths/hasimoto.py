"""The Stokeslet summed over a cubic lattice: Hasimoto's Ewald sum, and the far images' part of it.

Units: ``S(d) = (I / r + d d^T / r^3) / (4 pi)`` (``2 mu`` times the Stokeslet of
:func:`~fmmloopy.maths.flow_kernels.stokeslet_fields`, the velocity of
:mod:`fmmloopy.maths.harmonic`'s Laplace sums before their ``1 / (2 mu)``) and the pressure row
``P(d) = d / (4 pi r^3)`` (the Stokeslet's, independent of ``mu``).

**The convention** (Hasimoto 1959): the velocity and the pressure are periodic with mean 0 over
the cell, and a net force ``F`` of the cell's point forces is balanced by a uniform body force
``-F / V`` (a mean pressure gradient ``F / V``): ``mu lap u - grad p = -sum f delta + F / V``.
In Fourier, ``S^(k) = 2 (I - k k^T / k^2) / k^2`` and ``P^(k) = -i k / k^2`` summed over the
lattice's waves ``k != 0``.

**The splitting** (Hasimoto's): the waves are weighted by ``(1 + k^2 / (4 xi^2)) e^{-k^2 / (4
xi^2)}`` (velocity) and ``e^{-k^2 / (4 xi^2)}`` (pressure); what they leave is, in space (the
biharmonic ``-r / (8 pi)`` less its smoothed part, differentiated),

    S_R(d) = [(erfc(xi r) / r - g) I + (erfc(xi r) / r + g) d d^T / r^2] / (4 pi),
    P_R(d) = d [erfc(xi r) / r + g] / (4 pi r^2),      g = 2 xi e^{-xi^2 r^2} / sqrt(pi),

which falls as a Gaussian. A pair at ``r = 0`` (a target on a source: the FMM leaves the pair
out) keeps only ``S_R - S``, whose limit is ``-4 xi I / (4 pi sqrt(pi))`` (``P_R - P``: 0).

:func:`hasimoto_sum` is the reference the periodic Stokes FMM is tested against;
:func:`stokes_lattice_remainder` is the far images' sum the FMM applies
(:mod:`fmmloopy.maths.periodic_stokes`): the lattice sum less its near images ``|n|_inf <=
1`` at offsets within a cell of half-width 1, where it is smooth.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from fmmloopy.base.optional import optional_module

__all__ = ["hasimoto_sum", "stokes_lattice_remainder"]

#: ``erfc`` and the waves' Gaussian fall below about 1e-17 of their first term at ``xi r`` and
#: ``k / (2 xi)`` of this (the velocity's waves carry ``k^2`` more: the waves' reach is this
#: plus a margin).
_REACH = math.sqrt(-math.log(1e-17))
_WAVE_REACH = _REACH + 0.6
_CHUNK = 2048


def _real_terms(d: np.ndarray, xi: float, less_singular: bool
                ) -> tuple[np.ndarray, np.ndarray]:
    """``(S_R (Q, 3, 3), P_R (Q, 3))`` at offsets ``d`` ``(Q, 3)`` (module docstring); with
    ``less_singular`` the same less ``S`` and ``P`` (their limits at ``r = 0``)."""
    special = optional_module("scipy.special", "scipy", "fmmloopy.maths.hasimoto")
    r = np.linalg.norm(d, axis=1)
    safe = np.where(r > 0, r, 1.0)
    gauss = 2 * xi / math.sqrt(math.pi) * np.exp(-(xi * r) ** 2)
    if less_singular:
        a = np.where(r > 0, -special.erf(xi * safe) / safe, -2 * xi / math.sqrt(math.pi))
    else:
        a = special.erfc(xi * safe) / safe
    unit = d / safe[:, None]
    along = np.where(r > 0, a + gauss, 0.0)
    s = (a - gauss)[:, None, None] * np.eye(3) + along[:, None, None] * (
        unit[:, :, None] * unit[:, None, :])
    p = unit * (along / safe)[:, None]
    return s / (4 * np.pi), p / (4 * np.pi)


def _waves(side: float, xi: float) -> np.ndarray:
    """``(K, 3)``: the lattice's waves ``k = 2 pi m / side``, ``0 < |k| <`` the reach."""
    cutoff = 2 * xi * _WAVE_REACH
    extent = int(np.floor(cutoff * side / (2 * np.pi)))
    steps = np.arange(-extent, extent + 1)
    modes = np.array(list(itertools.product(steps, steps, steps)), dtype=np.float64)
    waves = 2 * np.pi * modes / side
    norm = np.linalg.norm(waves, axis=1)
    return waves[(norm > 0) & (norm < cutoff)]


def _wave_weights(waves: np.ndarray, xi: float, volume: float
                  ) -> tuple[np.ndarray, np.ndarray]:
    """``(velocity (K, 3, 3), pressure (K, 3))``: each wave's ``S^`` and ``-i P^`` with their
    weights, over the volume (the velocity's cosine and the pressure's sine coefficients)."""
    squared = (waves ** 2).sum(axis=1)
    gauss = np.exp(-squared / (4 * xi ** 2))
    velocity = (2 * (1 + squared / (4 * xi ** 2)) * gauss / squared)[:, None, None] * (
        np.eye(3) - waves[:, :, None] * waves[:, None, :] / squared[:, None, None])
    pressure = waves * (gauss / squared)[:, None]
    return velocity / volume, pressure / volume


def hasimoto_sum(sources: np.ndarray, forces: np.ndarray, targets: np.ndarray, side: float,
                 mu: float = 1.0, xi: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(velocity (M, 3), pressure (M,))`` at ``targets`` ``(M, 3)`` of point ``forces``
    ``(N, 3)`` at ``sources`` ``(N, 3)`` and all their images in the cubic lattice of ``side``
    (module docstring: Hasimoto's convention), in viscosity ``mu``. A target on a source
    leaves that pair out (its images stay). ``xi``: the splitting (default ``8 / side``; the
    sum does not depend on it but through rounding). Pairs by SciPy's k-d tree, waves by
    structure factors: a reference for thousands of points."""
    spatial = optional_module("scipy.spatial", "scipy", "fmmloopy.maths.hasimoto")
    sources = np.asarray(sources, np.float64).reshape(-1, 3)
    forces = np.asarray(forces, np.float64).reshape(-1, 3)
    targets = np.asarray(targets, np.float64).reshape(-1, 3)
    xi = 8.0 / side if xi is None else float(xi)
    cutoff = _REACH / xi
    lower = sources.min(axis=0) if len(sources) else np.zeros(3)
    # Every image of a source within the cutoff of the targets' box, as a point of its own.
    reach = int(np.ceil((cutoff + np.ptp(np.vstack([sources, targets]), axis=0).max())
                        / side)) + 1
    steps = range(-reach, reach + 1)
    shifts = side * np.array(list(itertools.product(steps, steps, steps)), dtype=np.float64)
    low, high = targets.min(axis=0) - cutoff, targets.max(axis=0) + cutoff
    images, owners = [], []
    for shift in shifts:
        moved = sources + shift
        kept = np.all((moved >= low) & (moved <= high), axis=1)
        images.append(moved[kept])
        owners.append(np.flatnonzero(kept))
    images, owners = np.concatenate(images), np.concatenate(owners)
    pairs = spatial.cKDTree(targets).query_ball_tree(spatial.cKDTree(images), cutoff)
    rows = np.repeat(np.arange(len(targets)), [len(p) for p in pairs])
    columns = np.fromiter(itertools.chain.from_iterable(pairs), dtype=np.int64,
                          count=len(rows))
    velocity = np.zeros((len(targets), 3))
    pressure = np.zeros(len(targets))
    for start in range(0, len(rows), 65536):
        row, column = rows[start:start + 65536], columns[start:start + 65536]
        d = targets[row] - images[column]
        s, p = _real_terms(d, xi, less_singular=False)
        coincident = ~np.any(d, axis=1)
        if coincident.any():  # the pair left out: its S_R less S
            s[coincident], p[coincident] = _real_terms(d[coincident], xi, less_singular=True)
        force = forces[owners[column]]
        np.add.at(velocity, row, np.einsum("qij,qj->qi", s, force))
        np.add.at(pressure, row, np.einsum("qi,qi->q", p, force))
    waves = _waves(side, xi)
    velocity_weights, pressure_weights = _wave_weights(waves, xi, side ** 3)
    for start in range(0, len(waves), _CHUNK):
        k = waves[start:start + _CHUNK]
        factor = np.exp(-1j * ((sources - lower) @ k.T)).T @ forces  # (K, 3)
        phase = np.exp(1j * ((targets - lower) @ k.T))  # (M, K)
        velocity += np.real(phase @ np.einsum("kij,kj->ki", velocity_weights[start:start + _CHUNK],
                                              factor))
        # -i k . A e^{i k x}: the real part of -i (phase @ (k . A)).
        pressure += np.real(-1j * (phase @ np.einsum(
            "ki,ki->k", pressure_weights[start:start + _CHUNK], factor)))
    return velocity / (2 * mu), pressure


#: The cell of :func:`stokes_lattice_remainder`: half-width 1 (side 2), its splitting.
_SIDE = 2.0
_XI = 1.25  # the fastest of 1.0-2.0 (measured: 0.63 s per 2*10^4 offsets at 1.2)


def stokes_lattice_remainder(offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(S (P, 3, 3), P (P, 3))``: the lattice sums of ``S`` and ``P`` (module docstring,
    Hasimoto's convention) over the cubic lattice of side 2, less the near images ``|n|_inf
    <= 1``, at ``offsets`` ``(P, 3)`` (``|r|_inf`` up to about 2.5, where they are smooth;
    at ``r = 0`` the limit). The mass sources of :mod:`fmmloopy.maths.periodic_stokes` take
    ``-P`` (``grad L = -P``; their net is 0, no background to count)."""
    offsets = np.asarray(offsets, dtype=np.float64).reshape(-1, 3)
    cutoff = _REACH / _XI
    reach = int(np.ceil((cutoff + 2.5 * math.sqrt(3)) / _SIDE))
    steps = range(-reach, reach + 1)
    lattice = np.array(list(itertools.product(steps, steps, steps)), dtype=np.int64)
    near = np.abs(lattice).max(axis=1) <= 1
    near_shifts, far_shifts = _SIDE * lattice[near], _SIDE * lattice[~near]
    waves = _waves(_SIDE, _XI)
    velocity_weights, pressure_weights = _wave_weights(waves, _XI, _SIDE ** 3)
    cosine_weights = velocity_weights.reshape(len(waves), 9)
    s_total = np.empty((len(offsets), 3, 3))
    p_total = np.empty((len(offsets), 3))
    for start in range(0, len(offsets), _CHUNK):
        r = offsets[start:start + _CHUNK]
        count = len(r)
        s, p = _real_terms((r[:, None, :] - near_shifts[None]).reshape(-1, 3), _XI, True)
        s_sum = s.reshape(count, -1, 3, 3).sum(axis=1)
        p_sum = p.reshape(count, -1, 3).sum(axis=1)
        squared = ((r ** 2).sum(axis=1)[:, None] - 2 * (r @ far_shifts.T)
                   + (far_shifts ** 2).sum(axis=1)[None])
        rows, columns = np.nonzero(squared < cutoff ** 2)
        s, p = _real_terms(r[rows] - far_shifts[columns], _XI, False)
        s_sum += np.stack([np.bincount(rows, weights=s[:, i, j], minlength=count)
                           for i in range(3) for j in range(3)], axis=1).reshape(count, 3, 3)
        p_sum += np.stack([np.bincount(rows, weights=p[:, i], minlength=count)
                           for i in range(3)], axis=1)
        phase = r @ waves.T
        s_sum += (np.cos(phase) @ cosine_weights).reshape(count, 3, 3)
        p_sum += np.sin(phase) @ pressure_weights
        s_total[start:start + count], p_total[start:start + count] = s_sum, p_sum
    return s_total, p_total

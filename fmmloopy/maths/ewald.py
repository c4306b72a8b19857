"""Ewald sums in numpy: potentials and gradients of charges in a periodic box, the reference
periodic FMMs are compared with.

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

``S(k) = sum_j q_j exp(-i k x_j)``, ``k = 2 pi m / L``. ``alpha`` and the two cutoffs are chosen
so that each part's truncation is below ``tolerance`` relative to the sum of ``|q|``; the result
does not depend on ``alpha`` (``tests/test_ewald.py`` checks it, and NaCl's and CsCl's Madelung
constants).

This is an O(N M) reference for tests and benchmarks (10^3-10^4 charges), not a solver. It
needs SciPy (``erfc``; the ``scipy`` extra).
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from fmmloopy.base.optional import optional_module

__all__ = ["ewald_sum"]

#: ``sqrt(-ln(tolerance))`` is where ``erfc`` and the reciprocal Gaussian fall below
#: ``tolerance``; the cutoffs take this many times more (their tails' prefactors are below 1).
_CUTOFF_FACTOR = 1.1

#: Pairs (target, source, image) evaluated at once.
_CHUNK = 2 ** 21


def ewald_sum(sources, charges, targets=None, cell=1.0, *, gradient: bool = False,
              tolerance: float = 1e-13, alpha: float | None = None):
    """The periodic potential at ``targets`` (``(M, 3)``; default the sources) of ``charges``
    ``(N,)`` at ``sources`` ``(N, 3)`` in the cell ``[0, L)^3`` (``cell``: ``L``, a number or
    three sides), as the module docstring defines it; with ``gradient``, ``(potential,
    gradient)``, the gradient ``(M, 3)`` with respect to the target. Points may lie outside the
    cell (the lattice is the same). ``alpha``: the splitting parameter (default balanced for
    ``tolerance`` with a real-space cutoff of half the shortest side)."""
    special = optional_module("scipy.special", "scipy", "fmmloopy.maths.ewald")
    sources = np.asarray(sources, dtype=np.float64).reshape(-1, 3)
    charges = np.asarray(charges, dtype=np.float64).reshape(-1)
    if len(charges) != len(sources):
        raise ValueError(f"{len(charges)} charges for {len(sources)} sources")
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

    # Real space: every image within the cutoff of the cell (targets and sources wrapped into
    # it, so that the images to visit do not depend on where the points were given).
    wrapped_sources = np.mod(sources, sides)
    wrapped_targets = np.mod(targets, sides)
    reach_cells = np.ceil(cutoff / sides).astype(int) + 1
    shifts = np.array(list(itertools.product(*(range(-r, r + 1) for r in reach_cells)))) * sides
    potential = np.zeros(len(targets))
    field = np.zeros((len(targets), 3))
    on_source = np.zeros(len(targets))  # the charge of a source (image) at each target
    rows = max(1, _CHUNK // max(1, len(sources) * len(shifts)))
    for start in range(0, len(targets), rows):
        block = slice(start, start + rows)
        offsets = (wrapped_targets[block, None, None, :] - wrapped_sources[None, :, None, :]
                   - shifts[None, None, :, :])
        distance = np.linalg.norm(offsets, axis=-1)
        # A target on a source (at n = 0 after wrapping) leaves that pair out.
        inside = (distance > 0) & (distance < cutoff)
        r = np.where(inside, distance, 1.0)
        screened = np.where(inside, special.erfc(alpha * r) / r, 0.0)
        potential[block] = np.einsum("tsi,s->t", screened, charges)
        on_source[block] = np.einsum("tsi,s->t", distance == 0, charges)
        if gradient:
            radial = np.where(inside, -(screened + 2 * alpha / math.sqrt(math.pi)
                                        * np.exp(-(alpha * r) ** 2)) / r ** 2, 0.0)
            field[block] = np.einsum("tsi,tsia,s->ta", radial, offsets, charges)

    # Reciprocal space: every k = 2 pi m / L with 0 < |k| < k_cutoff.
    extent = np.floor(k_cutoff * sides / (2 * np.pi)).astype(int)
    grid = np.array(list(itertools.product(*(range(-e, e + 1) for e in extent))))
    waves = 2 * np.pi * grid / sides
    squared = (waves ** 2).sum(axis=1)
    keep = (squared > 0) & (squared < k_cutoff ** 2)
    waves, squared = waves[keep], squared[keep]
    weights = (4 * np.pi / volume) * np.exp(-squared / (4 * alpha ** 2)) / squared
    per_wave = max(1, _CHUNK // max(1, len(sources) + len(targets)))
    for start in range(0, len(waves), per_wave):
        part = slice(start, start + per_wave)
        structure = np.exp(-1j * (sources @ waves[part].T)).T @ charges  # S(k)
        phases = np.exp(1j * (targets @ waves[part].T)) * (weights[part] * structure)
        potential += phases.real.sum(axis=1)
        if gradient:
            field += -phases.imag @ waves[part]

    # A target on a source: that source's own Gaussian, which the reciprocal sum holds.
    potential -= 2 * alpha / math.sqrt(math.pi) * on_source
    potential -= math.pi * float(charges.sum()) / (alpha ** 2 * volume)  # the background
    potential /= 4 * np.pi
    if not gradient:
        return potential
    return potential, field / (4 * np.pi)

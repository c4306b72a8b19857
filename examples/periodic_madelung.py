"""Periodic boundaries (``fmmloopy.Fmm(points, periodic=L)``): ionic crystals' Madelung
constants, a layer's in a slab and a chain's in a wire, and a random neutral system against an
Ewald sum.

* NaCl (rock salt) and CsCl: a crystal of ``--cells``^3 conventional cells, every ion's
  potential times ``-4 pi r0 / q`` (``r0`` the nearest-neighbour distance) against the known
  constants (1.747564594633182 and 1.762674773070; Madelung, Ewald);
* a square layer of alternating charges (rock salt's (001) plane alone), periodic along x and
  y only (``periodic_axes="xy"``, a slab), against its constant 1.615542626712826 (Borwein,
  Glasser, McPhedran, Wan and Zucker, *Lattice Sums Then and Now*, 2013; also
  :func:`fmmloopy.maths.slab_ewald.slab_ewald_sum`'s to all 16 digits), and a chain of
  alternating charges periodic along z only (``periodic_axes="z"``, a wire), against
  ``2 ln 2``;
* ``--n`` random charges (net charge 0) in a cell: the relative L2 error of the potentials and
  gradients against :func:`fmmloopy.maths.ewald.ewald_sum` on ``--samples`` targets, and the
  FMM's evaluation time beside the free-space FMM's on the same points.

Exit status 1 when an error exceeds what the order is known to reach (docs/fmm.md, "Periodic
boundaries"). ``python examples/periodic_madelung.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import fmmloopy
from fmmloopy.maths.ewald import ewald_sum

NACL = 1.747564594633182  # Madelung constant of rock salt, nearest-neighbour distance
CSCL = 1.762674773070  # of cesium chloride (12 digits)
SQUARE = 1.615542626712826  # of a square layer of alternating charges (two dimensions)
CHAIN = 2 * np.log(2.0)  # of a chain of alternating charges (one dimension)
#: Madelung constants' error the order reaches (measured: below 1e-11 at order 10).
MADELUNG_TOLERANCE = {10: 1e-9, 12: 1e-10}
#: Random charges: the potentials' relative L2 error the order reaches (docs/fmm.md: measured
#: 4.4e-7 at order 7 and 2.3e-9 at order 10 on 10^3-10^4 charges), with a margin.
RANDOM_TOLERANCE = {6: 2e-5, 7: 1e-6, 8: 5e-7, 10: 1e-8, 12: 1e-9}


def rock_salt(cells: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Ions of ``cells``^3 conventional NaCl cells of side 1 (ions every 1/2, charges
    ``(-1)^(i+j+k)``): ``(points, charges, nearest-neighbour distance)``."""
    ticks = np.arange(2 * cells) / 2.0
    points = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3)
    charges = (-1.0) ** np.round(2 * points.sum(axis=1))
    return points, charges, 0.5


def cesium_chloride(cells: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Ions of ``cells``^3 CsCl cells of side 1 (Cs at the corners, Cl at the centres)."""
    ticks = np.arange(cells, dtype=float)
    corners = np.stack(np.meshgrid(ticks, ticks, ticks, indexing="ij"), -1).reshape(-1, 3)
    points = np.concatenate([corners, corners + 0.5])
    charges = np.concatenate([np.ones(len(corners)), -np.ones(len(corners))])
    return points, charges, np.sqrt(3) / 2


def square_layer(cells: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Ions of ``cells``^2 squares of side 1 in the plane z = 0 (ions every 1/2, charges
    ``(-1)^(i+j)``), periodic along x and y."""
    ticks = np.arange(2 * cells) / 2.0
    x, y = np.meshgrid(ticks, ticks, indexing="ij")
    points = np.column_stack([x.ravel(), y.ravel(), np.zeros(x.size)])
    return points, (-1.0) ** np.round(2 * points.sum(axis=1)), 0.5


def chain(cells: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Ions every 1/2 along the z axis over ``cells`` periods of 1, alternating in sign,
    periodic along z."""
    points = np.zeros((2 * cells, 3))
    points[:, 2] = np.arange(2 * cells) / 2.0
    return points, (-1.0) ** np.arange(2 * cells), 0.5


#: Each crystal's periodic axes.
AXES = {rock_salt: "xyz", cesium_chloride: "xyz", square_layer: "xy", chain: "z"}


def madelung(crystal, cells: int, order: int) -> tuple[float, float]:
    """``(constant, spread)``: the mean over the ions of ``-4 pi r0 phi / q`` and its largest
    departure from that mean."""
    points, charges, nearest = crystal(cells)
    # The crystal moved off the boxes' faces (its ions at the centres of the boxes of side
    # 1/4): the constant does not depend on where the lattice sits, the FMM's accuracy does
    # (points on the faces of the leaves lie nearest to their equivalent surfaces).
    points = points + 0.125
    potentials = fmmloopy.Fmm(points, order=order, periodic=float(cells),
                              periodic_axes=AXES[crystal])(charges)
    constants = -4 * np.pi * nearest * potentials / charges
    return float(constants.mean()), float(np.abs(constants - constants.mean()).max())


def random_system(n: int, order: int, samples: int, seed: int) -> dict[str, float]:
    """Errors and times of ``n`` random neutral charges in the unit cell."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 1, (n, 3))
    charges = rng.uniform(-1, 1, n)
    charges -= charges.mean()
    fmm = fmmloopy.Fmm(points, order=order, periodic=1.0)
    fmm(charges, gradient=True)  # first call: buffers
    clock = time.perf_counter()
    fields = fmm(charges, gradient=True)
    periodic_seconds = time.perf_counter() - clock
    free = fmmloopy.Fmm(points, order=order)
    free(charges, gradient=True)
    clock = time.perf_counter()
    free(charges, gradient=True)
    free_seconds = time.perf_counter() - clock
    sampled = rng.choice(n, size=min(samples, n), replace=False)
    clock = time.perf_counter()
    potential, gradient = ewald_sum(points, charges, points[sampled], cell=1.0, gradient=True)
    ewald_seconds = time.perf_counter() - clock
    return {
        "potential error": float(np.linalg.norm(fields.potential[sampled] - potential)
                                 / np.linalg.norm(potential)),
        "gradient error": float(np.linalg.norm(fields.gradient[sampled] - gradient)
                                / np.linalg.norm(gradient)),
        "periodic seconds": periodic_seconds, "free-space seconds": free_seconds,
        "ewald seconds": ewald_seconds, "n_crit": fmm.n_crit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--order", type=int, default=10,
                        help="order of the Madelung FMMs (default 10)")
    parser.add_argument("--cells", type=int, default=2, help="crystal cells per axis (2)")
    parser.add_argument("--n", type=int, default=10000, help="random charges (10000; 0: none)")
    parser.add_argument("--random-order", type=int, default=7,
                        help="order of the random system's FMM (7, a periodic FMM's default)")
    parser.add_argument("--samples", type=int, default=200,
                        help="targets the Ewald sum checks (200)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    failed = False
    for name, crystal, exact in (("NaCl", rock_salt, NACL), ("CsCl", cesium_chloride, CSCL),
                                 ("square layer (slab)", square_layer, SQUARE),
                                 ("chain (wire)", chain, CHAIN)):
        ions = len(crystal(args.cells)[0])
        constant, spread = madelung(crystal, args.cells, args.order)
        error = abs(constant - exact)
        bound = MADELUNG_TOLERANCE.get(args.order)
        verdict = "" if bound is None else (" (ok)" if error <= bound else
                                            f" (ABOVE {bound:g})")
        failed |= bound is not None and error > bound
        print(f"{name}: Madelung constant {constant:.12f}, known {exact:.12f}, error "
              f"{error:.2e}{verdict}; spread over the {ions} ions {spread:.1e} (order "
              f"{args.order})")
    if args.n:
        result = random_system(args.n, args.random_order, args.samples, args.seed)
        bound = RANDOM_TOLERANCE.get(args.random_order)
        error = result["potential error"]
        failed |= bound is not None and error > bound
        print(f"{args.n} random neutral charges, order {args.random_order} (n_crit "
              f"{result['n_crit']}), against an Ewald sum at {min(args.samples, args.n)} "
              f"targets: potential error {error:.2e}, gradient error "
              f"{result['gradient error']:.2e}"
              + ("" if bound is None else (" (ok)" if error <= bound else
                                           f" (ABOVE {bound:g})")))
        print(f"evaluation with gradients: periodic {result['periodic seconds']:.3f} s, "
              f"free space {result['free-space seconds']:.3f} s (ratio "
              f"{result['periodic seconds'] / result['free-space seconds']:.2f}); the Ewald "
              f"sum at the sampled targets {result['ewald seconds']:.1f} s")
    if failed:
        print("error above what the order reaches", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

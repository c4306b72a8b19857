"""Points that move: a self-gravitating Plummer sphere stepped in time with the FMM.

    python examples/time_stepping.py [--n 100000] [--steps 10] [--dt 0.002] [--order 6] [--json]

N equal masses (total mass 1, gravitational constant 1) start from a Plummer sphere at rest and
fall inwards; kick-drift-kick leapfrog moves them. Every step needs the accelerations at the new
positions: ``fmm.update(positions)`` sorts the moved points into the tree's boxes where they
still fit them (else rebuilds the tree, lists and plan) and keeps the rest (operators, kernels,
n_crit), then one call gives potentials and gradients.

fmmloopy's Laplace kernel is ``1 / (4 pi r)``, so with ``phi`` the FMM's potential of the masses,
the gravitational potential is ``-4 pi phi``, the acceleration ``4 pi grad phi`` and the
potential energy ``-2 pi sum_i m_i phi_i`` (each pair counted once). Leapfrog conserves the
total energy up to ``O(dt^2)`` and the FMM's error; the example prints it every step and exits
with status 1 when it drifted by more than ``--max-drift`` (relative).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import plummer


def accelerations(fmm: fmmloopy.Fmm, masses: np.ndarray) -> tuple[np.ndarray, float]:
    """Accelerations at the FMM's points and the potential energy of the masses."""
    phi, grad_phi = fmm(masses, gradient=True)
    return 4 * np.pi * grad_phi, float(-2 * np.pi * np.dot(masses, phi))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--dt", type=float, default=0.002)
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--max-drift", type=float, default=1e-3,
                        help="largest relative change of the total energy accepted")
    parser.add_argument("--json", action="store_true", help="print a JSON report only")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    positions = plummer(args.n, rng)
    velocities = np.zeros_like(positions)
    masses = np.full(args.n, 1.0 / args.n)

    clock = time.perf_counter()
    fmm = fmmloopy.Fmm(positions, order=args.order)
    first_setup = time.perf_counter() - clock
    acceleration, potential = accelerations(fmm, masses)
    energy0 = potential  # at rest
    rows, update_seconds, eval_seconds = [], [], []
    for step in range(1, args.steps + 1):
        velocities += 0.5 * args.dt * acceleration
        positions = positions + args.dt * velocities
        clock = time.perf_counter()
        fmm.update(positions)
        update_seconds.append(time.perf_counter() - clock)
        clock = time.perf_counter()
        acceleration, potential = accelerations(fmm, masses)
        eval_seconds.append(time.perf_counter() - clock)
        velocities += 0.5 * args.dt * acceleration
        kinetic = float(0.5 * np.dot(masses, np.einsum("ij,ij->i", velocities, velocities)))
        energy = kinetic + potential
        rows.append({"step": step, "time": step * args.dt, "kinetic": kinetic,
                     "potential": potential, "energy": energy,
                     "relative_drift": abs(energy - energy0) / abs(energy0)})
        if not args.json:
            row = rows[-1]
            print(f"step {step:3d}  t {row['time']:.4f}  kinetic {kinetic:.6e}  potential "
                  f"{potential:.8e}  energy {energy:.8e}  drift {row['relative_drift']:.2e}  "
                  f"update {update_seconds[-1]:.3f} s  evaluation {eval_seconds[-1]:.3f} s",
                  flush=True)
    drift = max(row["relative_drift"] for row in rows) if rows else 0.0
    report = {"n": args.n, "order": args.order, "n_crit": fmm.n_crit, "dt": args.dt,
              "initial_potential": energy0,
              "first_setup_seconds": first_setup, "update_seconds": update_seconds,
              "evaluation_seconds": eval_seconds, "max_relative_drift": drift, "steps": rows}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"{args.n} masses, order {args.order}, n_crit {fmm.n_crit}: first set-up "
              f"{first_setup:.2f} s; per step update {np.median(update_seconds):.3f} s and "
              f"evaluation {np.median(eval_seconds):.3f} s (medians); largest energy drift "
              f"{drift:.2e}")
    if drift > args.max_drift:
        print(f"the energy drifted by {drift:.2e} > {args.max_drift:g}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

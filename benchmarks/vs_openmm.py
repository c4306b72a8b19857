"""fmmloopy's periodic FMM against OpenMM's PME (CPU platform) on the same charges, side by side.

Usage::

    pip install openmm        # not a dependency of fmmloopy
    python benchmarks/vs_openmm.py [--n 100000] [--orders 5 6 7] [--tolerances 1e-4 1e-5 1e-6]
        [--threads 2] [--samples 200] [--repeats 3]

What is compared. ``--n`` random charges in ``[-1, 1]`` (net charge removed) uniform in a cubic
cell; the quantity both compute is the Coulomb force on every charge under the same convention
(tin-foil, Ewald), OpenMM through a ``NonbondedForce`` with ``PME`` (its real-space cutoff
``--cutoff`` in cell units, its ``ewaldErrorTolerance`` each of ``--tolerances``; no
Lennard-Jones: every epsilon 0), fmmloopy through ``Fmm(points, order=..., periodic=L)`` with
``gradient=True`` (the force is ``-q grad phi``, in OpenMM's units ``138.935456 * 4 pi`` times
ours). Accuracy: the relative L2 error of the forces on ``--samples`` random charges against
:func:`fmmloopy.maths.ewald.ewald_sum` at its 1e-13 settings. Time: the best of ``--repeats``
evaluations after a first one (OpenMM: ``getState(getForces=True)``; fmmloopy: one call), the
set-up (context; tree, lists and plan) reported apart. Pair each PME tolerance with the FMM
order of the same error to read the ratio at the same accuracy.

Without OpenMM installed the script says so and exits 0 (skipped).
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

import fmmloopy
from fmmloopy.maths.ewald import ewald_sum

#: OpenMM's Coulomb constant (kJ nm / (mol e^2)); its energy is this times sum q q / r.
ONE_4PI_EPS0 = 138.935456


def reference_forces(points, charges, side, sampled):
    """Forces on the ``sampled`` charges from an Ewald sum (in fmmloopy's units)."""
    _, gradient = ewald_sum(points, charges, points[sampled], cell=side, gradient=True)
    return -charges[sampled, None] * gradient


def relative(value, reference) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def openmm_forces(openmm, points, charges, side, tolerance, cutoff, threads, repeats):
    """``(forces in fmmloopy's units, seconds per evaluation, set-up seconds)``."""
    unit = openmm.unit
    system = openmm.System()
    system.setDefaultPeriodicBoxVectors(*(openmm.Vec3(*(side * row)) for row in np.eye(3)))
    force = openmm.NonbondedForce()
    force.setNonbondedMethod(openmm.NonbondedForce.PME)
    force.setCutoffDistance(cutoff * side)
    force.setEwaldErrorTolerance(tolerance)
    force.setUseDispersionCorrection(False)
    for charge in charges:
        system.addParticle(1.0)
        force.addParticle(float(charge), 1.0, 0.0)
    system.addForce(force)
    platform = openmm.Platform.getPlatformByName("CPU")
    clock = time.perf_counter()
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), platform,
                             {"Threads": str(threads)})
    context.setPositions(points * unit.nanometer)
    state = context.getState(getForces=True)
    setup = time.perf_counter() - clock
    best = math.inf
    for _ in range(repeats):
        clock = time.perf_counter()
        state = context.getState(getForces=True)
        best = min(best, time.perf_counter() - clock)
    forces = state.getForces(asNumpy=True).value_in_unit(unit.kilojoule_per_mole / unit.nanometer)
    return np.asarray(forces) / (ONE_4PI_EPS0 * 4 * np.pi), best, setup


def fmm_forces(points, charges, side, order, repeats):
    clock = time.perf_counter()
    fmm = fmmloopy.Fmm(points, order=order, periodic=side)
    fields = fmm(charges, gradient=True)
    setup = time.perf_counter() - clock
    best = math.inf
    for _ in range(repeats):
        clock = time.perf_counter()
        fields = fmm(charges, gradient=True)
        best = min(best, time.perf_counter() - clock)
    return -charges[:, None] * fields.gradient, best, setup


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100000)
    parser.add_argument("--side", type=float, default=None,
                        help="cell side in nm (default: 100 charges per nm^3, as water's atoms)")
    parser.add_argument("--orders", type=int, nargs="+", default=[5, 6, 7])
    parser.add_argument("--tolerances", type=float, nargs="+", default=[1e-4, 1e-5, 1e-6])
    parser.add_argument("--cutoff", type=float, default=None,
                        help="PME real-space cutoff in nm (default 1.0, at most 0.4 cell)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        import openmm
    except ImportError:
        print("skipped: OpenMM is not installed (pip install openmm)")
        return 0
    side = args.side or (args.n / 100.0) ** (1 / 3)
    cutoff = min(args.cutoff or 1.0, 0.4 * side) / side
    rng = np.random.default_rng(args.seed)
    points = rng.uniform(0, side, (args.n, 3))
    charges = rng.uniform(-1, 1, args.n)
    charges -= charges.mean()
    sampled = rng.choice(args.n, size=min(args.samples, args.n), replace=False)
    clock = time.perf_counter()
    reference = reference_forces(points, charges, side, sampled)
    print(f"{args.n} charges in a cell of side {side:.3f} nm; Ewald reference at "
          f"{len(sampled)} charges: {time.perf_counter() - clock:.1f} s")
    print(f"{'method':<34}{'force error':>12}{'seconds':>10}{'set-up s':>10}")
    for tolerance in args.tolerances:
        forces, seconds, setup = openmm_forces(openmm, points, charges, side, tolerance,
                                               cutoff, args.threads, args.repeats)
        print(f"{f'OpenMM PME tol {tolerance:g} ({args.threads} thr)':<34}"
              f"{relative(forces[sampled], reference):>12.2e}{seconds:>10.3f}{setup:>10.2f}",
              flush=True)
    for order in args.orders:
        forces, seconds, setup = fmm_forces(points, charges, side, order, args.repeats)
        print(f"{f'fmmloopy periodic order {order}':<34}"
              f"{relative(forces[sampled], reference):>12.2e}{seconds:>10.3f}{setup:>10.2f}",
              flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A cloud of sedimenting spheres: Rotne-Prager-Yamakawa mobilities by ``fmmloopy.Fmm(...,
kernel="rpy")``, a few time steps, against direct sums and the settling of a viscous drop.

``N`` spheres of radius ``a`` lie at random in a ball of radius ``R`` (some overlap: the RPY
tensor has a form for that), each pulled down by the same force ``F`` through fluid of
viscosity ``mu``. Their velocities are the mobility times the forces,
``v_i = sum_j M(x_i - x_j) F`` (with each sphere's own ``F / (6 pi mu a)``); a step moves
them by ``v dt`` (forward Euler) and ``Fmm.update`` sorts the new positions into the tree's
boxes where they fit (else rebuilds the tree), keeping the kernels and operators.

Checks: at every step the velocities against a direct sum of the RPY tensor over all pairs
(``fmmloopy.DirectSum``); and the cloud as a whole. Many small spheres in a ball settle like a
drop of the suspension (a fluid sphere of the same viscosity), whose speed is
Hadamard and Rybczynski's ``U = (6 / 5) N F / (6 pi mu R)``; the mean velocity of the spheres
in a translating drop is the drop's (the volume integral of a divergence-free flow is fixed by
its normal velocity on the boundary), and each sphere adds its own ``F / (6 pi mu a)``. The
continuum is approached as ``N`` grows (here within a few per cent).

Usage::

    python examples/sedimenting_spheres.py [--n 100000] [--fraction 0.05] [--steps 3] [--json]

Exits with status 1 where an FMM error exceeds ``--tolerance`` (1e-6) or the mean velocity
misses the drop's by more than ``--drop-tolerance`` (5 per cent).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

import fmmloopy


def random_ball(rng, n: int, radius: float) -> np.ndarray:
    """``n`` points uniform in the ball of ``radius`` about 0."""
    directions = rng.standard_normal((n, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions * radius * rng.random((n, 1)) ** (1.0 / 3.0)


def relative(value, reference) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="spheres (default 100000)")
    parser.add_argument("--fraction", type=float, default=0.05,
                        help="the spheres' volume fraction of the cloud (default 0.05)")
    parser.add_argument("--mu", type=float, default=1.0, help="viscosity (default 1)")
    parser.add_argument("--steps", type=int, default=3, help="time steps (default 3)")
    parser.add_argument("--order", type=int, default=None,
                        help="the FMM's order (default: a Stokes FMM's, 9)")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--drop-tolerance", type=float, default=0.05)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n, mu, cloud = args.n, args.mu, 1.0
    a = cloud * (args.fraction / n) ** (1.0 / 3.0)
    force = np.array([0.0, 0.0, -1.0])
    forces = np.broadcast_to(force, (n, 3)).copy()
    rng = np.random.default_rng(0)
    points = random_ball(rng, n, cloud)
    drop = 1.2 * n * force / (6 * np.pi * mu * cloud) + force / (6 * np.pi * mu * a)
    dt = 0.02 * cloud / np.linalg.norm(drop)  # the cloud moves 2% of its radius a step

    kernel = f"rpy:mu={mu},radius={a}"
    clock = time.perf_counter()
    fmm = fmmloopy.Fmm(points, kernel=kernel, order=args.order)
    setup = time.perf_counter() - clock
    steps = []
    for step in range(args.steps + 1):
        if step:
            clock = time.perf_counter()
            fmm.update(points)
            setup = time.perf_counter() - clock
        clock = time.perf_counter()
        velocity = fmm(forces)
        evaluation = time.perf_counter() - clock
        clock = time.perf_counter()
        exact = fmmloopy.DirectSum(points, kernel=kernel)(forces)
        direct = time.perf_counter() - clock
        mean = velocity.mean(axis=0)
        steps.append({"step": step, "time": step * dt, "setup_seconds": setup,
                      "evaluation_seconds": evaluation, "direct_seconds": direct,
                      "error": relative(velocity, exact),
                      "overlapping_pairs": int(np.sum(fmm.points_setup.overlaps.sources
                                                      != fmm.points_setup.overlaps.targets)),
                      "mean_velocity": mean.tolist(),
                      "drop_error": relative(mean, drop)})
        points = points + dt * velocity
    report = {"spheres": n, "radius": a, "volume_fraction": args.fraction, "mu": mu,
              "order": fmm.order, "tree_levels": fmm.tree.nlevels, "dt": dt,
              "drop_velocity": drop.tolist(), "steps": steps,
              "max_error": max(step["error"] for step in steps),
              "max_drop_error": max(step["drop_error"] for step in steps)}
    report["ok"] = bool(report["max_error"] <= args.tolerance
                        and report["max_drop_error"] <= args.drop_tolerance)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{n} sedimenting spheres (radius {a:.4g}, volume fraction {args.fraction}, "
              f"mu = {mu}) in a ball of radius {cloud}: RPY, order {fmm.order}, "
              f"{fmm.tree.nlevels} levels; drop velocity (Hadamard-Rybczynski + own) "
              f"{drop[2]:.4g}")
        for step in steps:
            print(f"  step {step['step']}: set-up {step['setup_seconds']:.3f} s, evaluation "
                  f"{step['evaluation_seconds']:.3f} s (direct {step['direct_seconds']:.2f} s),"
                  f" error {step['error']:.1e}, {step['overlapping_pairs']} overlapping "
                  f"pairs, mean velocity {step['mean_velocity'][2]:.4g} "
                  f"({100 * step['drop_error']:.1f}% from the drop's)")
        print("ok" if report["ok"] else "FAILED: an error above its tolerance")
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

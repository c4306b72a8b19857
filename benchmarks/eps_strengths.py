"""One point set, several kinds of strengths: how much the order that meets eps depends on them.

Usage: ``python benchmarks/eps_strengths.py [--n 20000] [--set sphere] [--max-order 9]``.

``Fmm(eps=...)`` chooses its order when it is built, before any strengths, so the order must
serve every strength vector passed later. This measures, at every order from 3 to
``--max-order``, the relative L2 error of the dipoles' potential at every point (against
:class:`fmmloopy.DirectSum`) for unit moments drawn at random, all along z, and along the
outward direction from the set's centre (on the sphere: the normal, a double layer), with the
evaluation's seconds (best of three), and the orders ``eps = 1e-3`` and ``1e-6`` choose. The
cheapest order meeting ``eps`` differs between the kinds: what an order chosen from the points
alone must pay for (docs/kernels.md, "Why no order chosen at construction meets the 1.3x").
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from calibrate_eps import unit_box

import fmmloopy
from fmmloopy.base.distributions import DISTRIBUTIONS


def moments(points: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Dipole moments of three kinds: random, along z, outward from the centre (unit)."""
    outward = points - points.mean(axis=0)
    return {"random": rng.uniform(-1, 1, points.shape),
            "along z": np.tile([0.0, 0.0, 1.0], (len(points), 1)),
            "outward": outward / np.linalg.norm(outward, axis=1, keepdims=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--set", default="sphere", choices=sorted(DISTRIBUTIONS))
    parser.add_argument("--max-order", type=int, default=9)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    points = unit_box(DISTRIBUTIONS[args.set](args.n, rng))
    kinds = moments(points, rng)
    direct = fmmloopy.DirectSum(points)
    references = {name: direct(dipoles=values) for name, values in kinds.items()}
    for eps in (1e-3, 1e-6):
        chosen = fmmloopy.Fmm(points, eps=eps, eps_for="dipoles").order
        print(f"eps {eps:g}: order {chosen}")
    print("| order | " + " | ".join(kinds) + " | evaluation |")
    print("|---:|" + "---:|" * (len(kinds) + 1))
    for order in range(3, args.max_order + 1):
        fmm = fmmloopy.Fmm(points, order=order)
        errors, seconds = [], np.inf
        for name, values in kinds.items():
            fmm(dipoles=values)  # the first call builds what the later ones reuse
            for _ in range(3):
                clock = time.perf_counter()
                result = fmm(dipoles=values)
                seconds = min(seconds, time.perf_counter() - clock)
            reference = references[name]
            errors.append(np.linalg.norm(result - reference) / np.linalg.norm(reference))
        print(f"| {order} | " + " | ".join(f"{error:.2e}" for error in errors)
              + f" | {seconds:.3f} s |", flush=True)


if __name__ == "__main__":
    main()

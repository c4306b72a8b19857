"""P2P near field (CSR over the U list of a real octree): pairs per second for each recipe.

Usage: ``python benchmarks/bench_p2p.py [--n 200000] [--dist sphere|cube] [--n-crit 150]
[--repeats 5] [--recipes sequential generic cpu]``. Times the
``p2p`` launch of an :class:`fmmloopy.Fmm` plan alone (median of the repeats after a warm-up);
pairs are counted on the host from the lists. All recipes run in one process on the same
points, so their ratios are comparable.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import sphere_surface, uniform_cube

DISTRIBUTIONS = {"sphere": sphere_surface, "cube": uniform_cube}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--dist", choices=sorted(DISTRIBUTIONS), default="sphere")
    parser.add_argument("--n-crit", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--recipes", nargs="+", default=["sequential", "generic", "cpu"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    points = DISTRIBUTIONS[args.dist](args.n, rng)
    charges = rng.uniform(-1, 1, args.n)
    rows, reference = [], None
    for recipe in args.recipes:
        # Order 2: the cheapest expansions; only the p2p launch is timed.
        fmm = fmmloopy.Fmm(points, order=2, n_crit=args.n_crit, recipes={"p2p": recipe})
        fmm(charges)
        plan = fmm.plan
        plan.buffers["potential"].fill(0.0)
        plan.run_step("p2p")  # warm-up
        plan.buffers["potential"].fill(0.0)
        times = [plan.run_step("p2p")]
        result = plan.buffers["potential"].get()
        times += [plan.run_step("p2p") for _ in range(args.repeats - 1)]
        if reference is None:
            reference = result
        seconds = float(np.median(times))
        pairs = plan.work("p2p")
        rows.append({"recipe": recipe, "seconds": seconds, "pairs": pairs,
                     "pairs_per_second": pairs / seconds,
                     "max_rel_diff_to_first": float(np.abs(result - reference).max()
                                                    / np.abs(reference).max())})
    base = rows[0]["seconds"]
    if args.json:
        print(json.dumps(rows))
        return
    print(f"P2P over U, {args.n} points ({args.dist}), n_crit {args.n_crit}, "
          f"{rows[0]['pairs']:.3e} pairs, median of {args.repeats}")
    for row in rows:
        print(f"{row['recipe']:12s} {row['seconds'] * 1e3:9.2f} ms "
              f"{row['pairs_per_second'] / 1e6:8.0f} M pairs/s  x{base / row['seconds']:5.1f} "
              f"vs {rows[0]['recipe']}  max rel diff {row['max_rel_diff_to_first']:.1e}")


if __name__ == "__main__":
    main()

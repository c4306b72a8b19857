"""P2P near field (CSR over the U list of a real octree): pairs per second for each recipe.

Usage: ``python benchmarks/bench_p2p.py [--n 200000] [--n-crit 150] [--repeats 5]``. Kernel time
only (the median of the repeats after a warm-up call); pairs are counted on the host from the
lists. All recipes run in one process on the same tree, so their ratios are comparable.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from fmmloopy.distributions import sphere_surface
from fmmloopy.near_field import NearField


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--n-crit", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--recipes", nargs="+", default=["sequential", "generic", "cpu"])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    points = sphere_surface(args.n, rng)
    charges = rng.uniform(-1, 1, args.n)
    rows, reference = [], None
    for recipe in args.recipes:
        near = NearField(points, n_crit=args.n_crit, recipe=recipe)
        times = []
        for _ in range(args.repeats):
            result = near(charges)
            times.append(near.last_kernel_seconds)
        if reference is None:
            reference = result
        seconds = float(np.median(times))
        rows.append({"recipe": recipe, "seconds": seconds, "pairs": near.npairs,
                     "pairs_per_second": near.npairs / seconds,
                     "max_rel_diff_to_first": float(np.abs(result - reference).max()
                                                    / np.abs(reference).max())})
    base = rows[0]["seconds"]
    if args.json:
        print(json.dumps(rows))
        return
    print(f"P2P over U, {args.n} points on the sphere, n_crit {args.n_crit}, "
          f"{rows[0]['pairs']:.3e} pairs, median of {args.repeats}")
    for row in rows:
        print(f"{row['recipe']:12s} {row['seconds'] * 1e3:9.2f} ms "
              f"{row['pairs_per_second'] / 1e6:8.0f} M pairs/s  x{base / row['seconds']:5.1f} "
              f"vs {rows[0]['recipe']}  max rel diff {row['max_rel_diff_to_first']:.1e}")


if __name__ == "__main__":
    main()

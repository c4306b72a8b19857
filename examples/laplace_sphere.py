"""N random charges on the unit sphere: what fmmloopy computes today, timed and checked.

Until the full FMM lands (issue #4) this evaluates the near field -- P2P over the U list of an
adaptive octree, the leaf pass of the FMM -- and compares it with the same sum done in numpy on
sampled targets. Run ``python examples/laplace_sphere.py --help`` for the options.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from fmmloopy.check_problems import sphere_surface
from fmmloopy.near_field import NearField


def _list_sizes(starts: np.ndarray, rows: np.ndarray) -> dict[str, float]:
    sizes = np.diff(starts)[rows]
    return {"mean": float(sizes.mean()), "max": int(sizes.max())}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=200_000, help="number of charges")
    parser.add_argument("--n-crit", type=int, default=150, help="most points per leaf")
    parser.add_argument("--device", default=None, help="'cpu', 'gpu' or part of a device name")
    parser.add_argument("--recipe", default=None, help="recipe name (default: the device's)")
    parser.add_argument("--check-targets", type=int, default=1000,
                        help="targets sampled for the comparison with numpy")
    parser.add_argument("--repeats", type=int, default=3, help="timed evaluations (best kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    points = sphere_surface(args.n, rng)
    charges = rng.uniform(-1.0, 1.0, args.n)

    near = NearField(points, n_crit=args.n_crit, device=args.device, recipe=args.recipe)
    seconds = []
    for _ in range(args.repeats):
        potentials = near(charges)
        seconds.append(near.last_seconds)
    sample = rng.choice(args.n, size=min(args.check_targets, args.n), replace=False)
    reference = near.reference(charges, sample)
    error = float(np.linalg.norm(potentials[sample] - reference) / np.linalg.norm(reference))

    tree, leaves = near.tree, near.tree.leaf_boxes
    report = {
        "n": args.n, "n_crit": args.n_crit, "device": near.device.name,
        "recipe": near.p2p.recipe.name, "depth": tree.nlevels - 1, "nleaves": len(leaves),
        "list_sizes": {"U": _list_sizes(near.lists.u_starts, leaves)},
        "setup_seconds": near.setup_seconds,
        "eval_seconds": {"p2p": min(seconds), "total": min(seconds)},
        "p2p_pairs": near.npairs, "p2p_pairs_per_second": near.npairs / min(seconds),
        "rel_l2_error": error,
    }
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"{args.n} charges on the unit sphere, n_crit {args.n_crit}, device "
          f"{report['device']}, recipe {report['recipe']!r}")
    print(f"tree: depth {report['depth']}, {report['nleaves']} leaves, U list mean "
          f"{report['list_sizes']['U']['mean']:.1f} / max {report['list_sizes']['U']['max']}")
    print("setup: " + ", ".join(f"{k} {v:.3f} s" for k, v in near.setup_seconds.items()))
    print(f"near field (P2P over U): {min(seconds):.4f} s, {near.npairs:.3e} pairs, "
          f"{report['p2p_pairs_per_second'] / 1e6:.0f} M pairs/s")
    print(f"relative L2 error against numpy on {len(sample)} targets: {error:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

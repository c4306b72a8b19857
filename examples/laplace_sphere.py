"""N random charges on the unit sphere's surface (the PyExaFMM benchmark), through fmmloopy.Fmm.

Prints the tree (depth, leaves, list sizes), set-up and evaluation times, time per operator and
the relative L2 error against direct summation on sampled targets. ``--json`` prints one JSON
object instead. ``python examples/laplace_sphere.py --help`` lists the options.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

import fmmloopy
from fmmloopy.distributions import sphere_surface
from fmmloopy.interaction_lists import list_size_summary
from fmmloopy.kernels import LAPLACE_3D
from fmmloopy.reference import direct_sum


def run(n: int, order: int, n_crit: int, device: str | None, recipe: str | None,
        check_targets: int, repeats: int, seed: int) -> dict:
    """Build the FMM, evaluate it ``repeats`` times, compare with direct summation."""
    rng = np.random.default_rng(seed)
    points = sphere_surface(n, rng)
    charges = rng.uniform(-1.0, 1.0, n)

    fmm = fmmloopy.Fmm(points, order=order, n_crit=n_crit, device=device, recipes=recipe)
    best = None
    for _ in range(repeats):
        potential = fmm(charges)
        if best is None or fmm.eval_seconds["total"] < best["total"]:
            best = fmm.eval_seconds
    sample = rng.choice(n, size=min(check_targets, n), replace=False)
    expected = direct_sum(LAPLACE_3D, points, charges, points[sample])
    error = np.linalg.norm(potential[sample] - expected) / np.linalg.norm(expected)
    return {
        "n": n, "order": order, "n_crit": n_crit, "device": fmm.device.name,
        "depth": fmm.tree.nlevels - 1, "nleaves": int(fmm.tree.box_is_leaf.sum()),
        "list_sizes": list_size_summary(fmm.tree, fmm.lists),
        "setup_seconds": fmm.setup_seconds,
        "eval_seconds": best,
        "rel_l2_error": float(error), "check_targets": len(sample),
    }


def print_report(report: dict) -> None:
    print(f"{report['n']} charges on the unit sphere, order {report['order']}, "
          f"n_crit {report['n_crit']}, device {report['device']}")
    sizes = ", ".join(f"{name} {s['mean']:.1f}/{s['max']}"
                      for name, s in report["list_sizes"].items())
    print(f"tree: depth {report['depth']}, {report['nleaves']} leaves; list sizes mean/max: "
          f"{sizes}")
    print("setup: " + ", ".join(f"{k} {v:.3f} s" for k, v in report["setup_seconds"].items()))
    seconds = report["eval_seconds"]
    total = seconds["total"]
    print(f"evaluation: {total:.3f} s")
    for step, value in seconds.items():
        if step != "total":
            print(f"  {step:14s} {value:8.4f} s  {100 * value / total:5.1f} %")
    print(f"relative L2 error against direct summation on {report['check_targets']} targets: "
          f"{report['rel_l2_error']:.2e}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=100_000, help="number of charges")
    parser.add_argument("--order", type=int, default=6, help="points per surface edge")
    parser.add_argument("--n-crit", type=int, default=150, help="most points per leaf")
    parser.add_argument("--device", default=None, help="'cpu', 'gpu' or part of a device name")
    parser.add_argument("--recipe", default=None, help="recipe for every operator "
                                                       "(default: the device's own)")
    parser.add_argument("--check-targets", type=int, default=1000,
                        help="targets sampled for the comparison with direct summation")
    parser.add_argument("--repeats", type=int, default=2, help="evaluations (fastest reported)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.n < 1 or args.check_targets < 1 or args.repeats < 1:
        parser.error("--n, --check-targets and --repeats must be at least 1")

    report = run(args.n, args.order, args.n_crit, args.device, args.recipe,
                 args.check_targets, args.repeats, args.seed)
    if args.json:
        print(json.dumps(report))
    else:
        print_report(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

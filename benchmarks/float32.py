"""float32 against float64: evaluation time, error and P2P rate of fmmloopy.Fmm, order by order.

Usage: ``python benchmarks/float32.py [--n 1000000] [--orders 3 4 5 6] [--repeats 3]
[--csv benchmarks/results/float32.csv]``: N points on the unit sphere (charges uniform in
[-1, 1), seed 0), one FMM per order and precision on the same points; the evaluation time is the
best of ``--repeats`` calls, the error the relative L2 error at ``--check-targets`` sampled
targets against the float64 direct sum (:class:`fmmloopy.DirectSum`), and against the float64
direct sum of the charges rounded to float32 (what a float32 FMM is given; it stores each point
relative to its leaf's centre, so the points move by float32's unit at the leaf's width only),
the P2P rate the near field's pairs over its seconds in the best call. It also prints how much
rounding the points as they are (absolute coordinates in float32) would move the potential.
"""

from __future__ import annotations

import argparse
import csv
import os

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import sphere_surface


def _relative(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value.astype(np.float64) - reference)
                 / np.linalg.norm(reference))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 4, 5, 6])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--check-targets", type=int, default=1000)
    parser.add_argument("--csv", default=None, help="write the table here too")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    points = sphere_surface(args.n, rng)
    charges = rng.uniform(-1.0, 1.0, args.n)
    sample = np.random.default_rng(1).choice(args.n, min(args.check_targets, args.n),
                                             replace=False)
    # Coincident points are left out of the direct sum, as of the FMM: no self term.
    reference = fmmloopy.DirectSum(points, points[sample])(charges)
    rounded_charges = charges.astype(np.float32).astype(np.float64)
    rounded = fmmloopy.DirectSum(points, points[sample])(rounded_charges)
    rounded_points = points.astype(np.float32).astype(np.float64)
    absolute = fmmloopy.DirectSum(rounded_points, rounded_points[sample])(rounded_charges)
    print(f"rounding the charges to float32 moves the potential by "
          f"{_relative(rounded, reference):.3e}, rounding the points as they are too by "
          f"{_relative(absolute, reference):.3e} (relative L2)")
    rows = []
    print(f"{args.n} points on the sphere; best of {args.repeats} calls; error at "
          f"{len(sample)} targets against the float64 direct sum")
    print("order  dtype    eval s   float32/float64   rel L2 error   vs rounded charges  "
          "P2P pairs/s   n_crit")
    for order in args.orders:
        seconds64 = None
        for dtype in (np.float64, np.float32):
            fmm = fmmloopy.Fmm(points, order=order, dtype=dtype)
            best, potential, p2p = np.inf, None, 0.0
            for _ in range(args.repeats):
                result = fmm(charges)
                if fmm.eval_seconds["total"] < best:
                    best, potential = fmm.eval_seconds["total"], result
                    p2p = fmm.plan.work("p2p") / fmm.eval_seconds["p2p"]
            error = _relative(potential[sample], reference)
            own = _relative(potential[sample], rounded)
            name = np.dtype(dtype).name
            if dtype == np.float64:
                seconds64 = best
            ratio = best / seconds64
            print(f"{order:5d}  {name:7s} {best:7.3f}   {ratio:15.2f}   {error:12.3e}   "
                  f"{own:17.3e}   {p2p:11.3e}   {fmm.n_crit:6d}", flush=True)
            rows.append([order, name, f"{best:.4f}", f"{ratio:.3f}", f"{error:.4e}",
                         f"{own:.4e}", f"{p2p:.4e}", fmm.n_crit])
            del fmm
    if args.csv:
        os.makedirs(os.path.dirname(args.csv) or ".", exist_ok=True)
        with open(args.csv, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["order", "dtype", "eval_seconds", "time_vs_float64",
                             "relative_l2_error", "error_vs_rounded_charges",
                             "p2p_pairs_per_second", "n_crit"])
            writer.writerows(rows)


if __name__ == "__main__":
    main()

"""Relative L2 error of fmmloopy.Fmm against direct summation as the order rises.

Usage: ``python benchmarks/accuracy_vs_order.py [--n 20000] [--orders 2 3 ... 10]``: N random
charges on the unit sphere's surface, error on every target (direct summation in numpy, O(N^2)).
"""

from __future__ import annotations

import argparse

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.reference import direct_sum


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--n-crit", type=int, default=150)
    parser.add_argument("--orders", type=int, nargs="+", default=list(range(2, 11)))
    parser.add_argument("--distribution", choices=sorted(DISTRIBUTIONS), default="sphere")
    parser.add_argument("--gradient", action="store_true",
                        help="the gradient's error too (the example's --gradient bound)")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    points = DISTRIBUTIONS[args.distribution](args.n, rng)
    charges = rng.uniform(-1, 1, args.n)
    kernel = LAPLACE_3D.with_fields(("potential", "gradient") if args.gradient
                                    else ("potential",))
    expected = np.atleast_2d(direct_sum(kernel, points, charges, points))
    print(f"{args.n} points ({args.distribution}), n_crit {args.n_crit}, all targets")
    print("order   n_e   rel L2 error" + ("   gradient" if args.gradient else "") + "   eval s")
    for order in args.orders:
        fmm = fmmloopy.Fmm(points, order=order, n_crit=args.n_crit)
        result = fmm(charges, gradient=args.gradient)
        potential = result.potential if args.gradient else result
        error = np.linalg.norm(potential - expected[0]) / np.linalg.norm(expected[0])
        gradient = ""
        if args.gradient:
            gradient = "   {:9.3e}".format(np.linalg.norm(result.gradient - expected[1:].T)
                                          / np.linalg.norm(expected[1:]))
        seconds = fmm.eval_seconds["total"]
        print(f"{order:5d} {fmm.operators.n_e:5d}   {error:12.3e}{gradient}   {seconds:6.3f}",
              flush=True)


if __name__ == "__main__":
    main()

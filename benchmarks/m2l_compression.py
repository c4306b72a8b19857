"""The compressed M2L: its ranks, its time and the error of the whole FMM, per order.

Usage: ``python benchmarks/m2l_compression.py [--n 40000] [--orders 3 4 6 8] [--dist sphere cube]
[--charges positive mixed] [--n-crit 150] [--repeats 3]``: N points, charges in [0, 1)
(``positive``, the PyExaFMM/exafmm-t protocol) or [-1, 1) (``mixed``), relative L2 error against
direct summation on 400 sampled targets, seconds of the M2L launches (``m2l_compress``, ``m2l``,
``m2l_expand``; best of ``--repeats`` evaluations) and of the whole evaluation. Run it on two
checkouts (``PYTHONPATH=<checkout>``) to compare with the dense M2L of an earlier version: it
prints the ranks where the operators have them, ``dense`` where not.
"""

from __future__ import annotations

import argparse

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.reference import direct_sum

M2L_OPERATORS = ("m2l_compress", "m2l", "m2l_expand")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=40_000)
    parser.add_argument("--n-crit", type=int, default=150)
    parser.add_argument("--orders", type=int, nargs="+", default=[3, 4, 6, 8])
    parser.add_argument("--dist", nargs="+", default=["sphere", "cube"],
                        choices=sorted(DISTRIBUTIONS))
    parser.add_argument("--charges", nargs="+", default=["positive"],
                        choices=["positive", "mixed"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samples", type=int, default=400)
    args = parser.parse_args()

    print("dist    charges  order  n_e  M2L ranks (by class)  m2l s   eval s   rel L2 error")
    for dist in args.dist:
        rng = np.random.default_rng(0)
        points = DISTRIBUTIONS[dist](args.n, rng)
        sample = rng.choice(args.n, min(args.samples, args.n), replace=False)
        for kind in args.charges:
            charges = (rng.uniform(0, 1, args.n) if kind == "positive"
                       else rng.uniform(-1, 1, args.n))
            expected = direct_sum(LAPLACE_3D, points, charges, points[sample])
            for order in args.orders:
                fmm = fmmloopy.Fmm(points, order=order, n_crit=args.n_crit)
                best = None
                for _ in range(args.repeats):
                    potential = fmm(charges)
                    seconds = fmm.eval_seconds
                    m2l = sum(seconds.get(name, 0.0) for name in M2L_OPERATORS)
                    if best is None or seconds["total"] < best[1]:
                        best = (m2l, seconds["total"])
                error = (np.linalg.norm(potential[sample] - expected)
                         / np.linalg.norm(expected))
                ranks = fmm.operators.ranks()
                ranks = ("/".join(str(rank) for name, rank in ranks.items()
                                  if name.startswith("m2l_"))
                         if isinstance(ranks, dict) else "dense")
                print(f"{dist:7s} {kind:8s} {order:5d} {fmm.operators.n_e:4d}  {ranks:>20s}  "
                      f"{best[0]:6.3f}  {best[1]:7.3f}   {error:.3e}", flush=True)


if __name__ == "__main__":
    main()

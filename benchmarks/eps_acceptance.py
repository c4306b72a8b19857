"""``Fmm(eps=...)`` against fixed orders: is eps met, and at what cost?

Usage: ``python benchmarks/eps_acceptance.py [--n 20000] [--eps 1e-3 1e-6 1e-9]
[--case laplace-charges ...] [--sets sphere cube plummer shell] [--max-order 11]``.

For each case (kernel and quantity) and point set (drawn with another seed than the
calibration's, ``benchmarks/calibrate_eps.py``), it measures the relative L2 error at every
target against :class:`fmmloopy.DirectSum` and the evaluation's seconds (best of
``--repeats``) at every order from 3 to ``--max-order``, then for each eps: the order
``Fmm(eps=...)`` chooses, its error, and its time over that of the cheapest fixed order whose
error is within eps. It prints one markdown row per (case, set, eps).
"""

from __future__ import annotations

import argparse
import math

import numpy as np

# calibrate_eps's point sets and strengths (the same shapes, other draws).
from calibrate_eps import point_set, relative_error, strengths

import fmmloopy
from fmmloopy.maths.accuracy import kernel_at
from fmmloopy.tree.octree import root_box_side

#: name -> (family, parameter, strength kind, gradient)
CASES = {
    "laplace-charges": ("laplace", 0.0, "charges", False),
    "laplace-dipoles": ("laplace", 0.0, "dipoles", False),
    "laplace-gradient": ("laplace", 0.0, "charges", True),
    "yukawa-kappaL1": ("yukawa", 1.0, "charges", False),
    "yukawa-kappaL10": ("yukawa", 10.0, "charges", False),
    "helmholtz-0.5wl": ("helmholtz", 0.5, "charges", False),
    "helmholtz-1wl": ("helmholtz", 1.0, "charges", False),
    "helmholtz-2wl": ("helmholtz", 2.0, "charges", False),
}


def measure(sources, targets, kernel, order, call, reference, repeats):
    """Error (worst over the fields) and best evaluation seconds at ``order``."""
    fmm = fmmloopy.Fmm(sources, targets, kernel=kernel, order=order)
    seconds = math.inf
    for _ in range(repeats):
        result = call(fmm)
        seconds = min(seconds, fmm.eval_seconds["total"])
    if isinstance(result, fmmloopy.Fields):
        error = max(relative_error(result.potential, reference.potential),
                    relative_error(result.gradient, reference.gradient))
    else:
        error = relative_error(result, reference)
    return error, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--eps", type=float, nargs="+", default=[1e-3, 1e-6, 1e-9])
    parser.add_argument("--case", action="append", choices=sorted(CASES))
    parser.add_argument("--sets", nargs="+", default=["sphere", "cube", "plummer", "shell"])
    parser.add_argument("--max-order", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()

    print("| case | points | eps | order chosen | its error | within eps | cheapest order "
          "within eps | time / its time |")
    print("|---|---|---:|---:|---:|---|---:|---:|")
    for name in args.case or list(CASES):
        family, parameter, kind, gradient = CASES[name]
        for set_name in args.sets:
            rng = np.random.default_rng([args.seed, list(CASES).index(name)])
            sources, targets = point_set(set_name, args.n, rng)
            charges, dipoles = strengths(len(sources), family == "helmholtz", rng)
            kernel = kernel_at(family, parameter, root_box_side(sources, targets))
            values = {"charges": charges} if kind == "charges" else {"dipoles": dipoles}
            eps_for = (kind,) + ("gradient",) * gradient
            reference = fmmloopy.DirectSum(sources, targets, kernel=kernel)(
                **values, gradient=gradient)

            def call(fmm, values=values, gradient=gradient):
                return fmm(**values, gradient=gradient)
            by_order = {}
            for order in range(3, args.max_order + 1):
                try:
                    by_order[order] = measure(sources, targets, kernel, order, call, reference,
                                              args.repeats)
                except ValueError:  # Helmholtz beyond the order's range
                    continue
            for eps in args.eps:
                try:
                    chosen = fmmloopy.Fmm(sources, targets, kernel=kernel, eps=eps,
                                          eps_for=eps_for).order
                except ValueError as exc:
                    print(f"| {name} | {set_name} | {eps:g} | refused: {str(exc)[:60]}... "
                          "| | | | |", flush=True)
                    continue
                within = [order for order, (error, _) in by_order.items() if error <= eps]
                cheapest = min(within, key=lambda order: by_order[order][1]) if within else None
                if chosen not in by_order:
                    print(f"| {name} | {set_name} | {eps:g} | {chosen} | (above --max-order) "
                          f"| | {cheapest} | |", flush=True)
                    continue
                error, seconds = by_order[chosen]
                ratio = f"{seconds / by_order[cheapest][1]:.2f}" if cheapest else ""
                print(f"| {name} | {set_name} | {eps:g} | {chosen} | {error:.2e} | "
                      f"{'yes' if error <= eps else '**no**'} | {cheapest} | {ratio} |",
                      flush=True)


if __name__ == "__main__":
    main()

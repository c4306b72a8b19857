"""The cost of a gradient: one FMM evaluation of the potential alone against the potential and
its gradient (and with dipoles), on the same points and tree.

Usage: ``python benchmarks/gradient_cost.py [--n 1000000] [--distribution sphere] [--repeats 3]``.
Charges (and dipole components) uniform in [0, 1); the best of ``--repeats`` calls of each; errors
are relative L2 over 200 sampled targets against a numpy direct sum.
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
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--distribution", default="sphere", choices=sorted(DISTRIBUTIONS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    points = DISTRIBUTIONS[args.distribution](args.n, rng)
    charges, dipoles = rng.random(args.n), rng.random((args.n, 3))
    sample = rng.choice(args.n, 200, replace=False)
    fmm = fmmloopy.Fmm(points, order=args.order)
    print(f"{args.n} points ({args.distribution}), order {args.order}, n_crit {fmm.n_crit}; "
          f"best of {args.repeats}; errors on {len(sample)} targets")
    cases = [("potential of charges", dict(charges=charges), False),
             ("potential + gradient of charges", dict(charges=charges), True),
             ("potential + gradient of charges and dipoles",
              dict(charges=charges, dipoles=dipoles), True)]
    alone = None
    for label, given, gradient in cases:
        fmm(**given, gradient=gradient)  # builds the plan of these fields
        best, steps = np.inf, {}
        for _ in range(args.repeats):
            result = fmm(**given, gradient=gradient)
            if fmm.eval_seconds["total"] < best:
                best, steps = fmm.eval_seconds["total"], fmm.eval_seconds
        alone = alone or best
        inputs = ("charge",) + (("dipole",) if "dipoles" in given else ())
        kernel = LAPLACE_3D.with_fields(("potential", "gradient"), inputs)
        strengths = np.concatenate([charges[None]] + ([dipoles.T] if "dipoles" in given else []))
        expected = direct_sum(kernel, points, strengths, points[sample])
        potential = result.potential if gradient else result
        errors = [np.linalg.norm(potential[sample] - expected[0]) / np.linalg.norm(expected[0])]
        if gradient:
            errors.append(np.linalg.norm(result.gradient[sample] - expected[1:].T)
                          / np.linalg.norm(expected[1:]))
        near = {step: round(steps[step], 4) for step in ("p2p", "l2p", "m2p", "p2m", "p2l")
                if step in steps}
        print(f"{label:45s} {best:7.3f} s  {best / alone:5.2f}x  errors "
              + " / ".join(f"{e:.2e}" for e in errors) + f"  {near}", flush=True)


if __name__ == "__main__":
    main()

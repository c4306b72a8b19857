"""Relative L2 errors of potentials and gradients against direct summation, by order.

Usage: ``python benchmarks/kernel_accuracy.py [--n 20000] [--orders 4 6 8 10]
[--distributions sphere cube] [--targets 2000] [--kernel laplace] [--wavelengths W]``.

For each distribution and order one ``fmmloopy.Fmm`` is built and called with charges, with
dipoles and with both, each with ``gradient=True``; strengths are uniform in [0, 1) (charges and
every dipole component: the PyExaFMM/exafmm-t protocol). Errors are relative L2 over ``--targets``
targets sampled once per distribution, against a numpy direct sum
(:func:`fmmloopy.maths.reference.direct_sum`) computed once and reused for every order; the
charges' and the dipoles' contributions are summed separately, so "both" is their sum.

A complex kernel (Helmholtz) gets complex strengths, real and imaginary parts uniform in [0, 1).
``--wavelengths W`` (Helmholtz) sets ``k`` so that the root box of each distribution (the cube
the FMM's tree starts from) is ``W`` wavelengths wide; ``--beyond-range`` lets ``Fmm`` past its
limit (``order / 3`` wavelengths, :func:`fmmloopy.maths.green.max_root_wavelengths`) to measure
what lies there.

Each distribution's line also gives the *conditioning* of the reference sums, potential /
gradient: ``|| sum_i |G_i q_i| || / || sum_i G_i q_i ||`` over the sampled targets
(:func:`~fmmloopy.maths.reference.direct_sum` with ``magnitudes=True``). Where the terms cancel
it exceeds 1, and an error of ``eps`` relative to each term (the far field's) shows as up to that
many times ``eps`` relative to the sum.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.maths import green as green_module
from fmmloopy.maths.green import get_kernel
from fmmloopy.maths.reference import direct_sum

CASES = ("charges", "dipoles", "both")


def relative_error(value: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(value - reference) / np.linalg.norm(reference))


def conditioning(magnitudes: np.ndarray, sums: np.ndarray) -> float:
    """``||magnitudes|| / ||sums||``: how much the terms of the sums cancel."""
    return float(np.linalg.norm(magnitudes) / np.linalg.norm(sums))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--orders", type=int, nargs="+", default=[4, 6, 8, 10])
    parser.add_argument("--distributions", nargs="+", default=["sphere", "cube"],
                        choices=sorted(DISTRIBUTIONS))
    parser.add_argument("--targets", type=int, default=2000)
    parser.add_argument("--kernel", default="laplace")
    parser.add_argument("--wavelengths", type=float, default=None,
                        help="Helmholtz: k such that the root box is this many wavelengths wide")
    parser.add_argument("--beyond-range", action="store_true",
                        help="lift Fmm's limit on the root box in wavelengths (to measure the "
                             "errors that set it)")
    args = parser.parse_args()
    if args.beyond_range:
        green_module.WAVELENGTHS_PER_ORDER = np.inf

    print(f"{args.kernel}: {args.n} points, strengths in [0, 1), errors on {args.targets} "
          "sampled targets; columns: potential / gradient")
    print("distribution order " + " ".join(f"{case:>21s}" for case in CASES) + "   eval s")
    for distribution in args.distributions:
        rng = np.random.default_rng(0)
        points = DISTRIBUTIONS[distribution](args.n, rng)
        green = get_kernel(args.kernel)
        if args.wavelengths is not None:
            side = fmmloopy.root_box_side(points)
            green = fmmloopy.helmholtz(2 * np.pi * args.wavelengths / side)
            print(f"{distribution}: root box side {side:.4g}, {green.spec}")
        charges, dipoles = rng.random(args.n), rng.random((args.n, 3))
        if green.is_complex:
            charges = charges + 1j * rng.random(args.n)
            dipoles = dipoles + 1j * rng.random((args.n, 3))
        sample = rng.choice(args.n, size=min(args.targets, args.n), replace=False)
        fields = ("potential", "gradient")
        from_charges = direct_sum(green.with_fields(fields, ("charge",)), points,
                                  charges[None], points[sample])
        from_dipoles = direct_sum(green.with_fields(fields, ("dipole",)), points, dipoles.T,
                                  points[sample])
        expected = {"charges": from_charges, "dipoles": from_dipoles,
                    "both": from_charges + from_dipoles}
        magnitudes = {case: direct_sum(green.with_fields(fields, (field,)), points, strengths,
                                       points[sample], magnitudes=True)
                      for case, field, strengths in (("charges", "charge", charges[None]),
                                                     ("dipoles", "dipole", dipoles.T))}
        magnitudes["both"] = magnitudes["charges"] + magnitudes["dipoles"]
        print(f"{distribution}: conditioning of the sums, potential / gradient: " + ", ".join(
            f"{case} {conditioning(magnitudes[case][0], expected[case][0]):.3g} / "
            f"{conditioning(magnitudes[case][1:], expected[case][1:]):.3g}"
            for case in CASES), flush=True)
        for order in args.orders:
            fmm = fmmloopy.Fmm(points, kernel=green, order=order)
            columns, seconds = [], []
            for case in CASES:
                given = {"charges": charges if case != "dipoles" else None,
                         "dipoles": dipoles if case != "charges" else None}
                clock = time.perf_counter()
                result = fmm(**given, gradient=True)
                seconds.append(time.perf_counter() - clock)
                reference = expected[case]
                columns.append(
                    f"{relative_error(result.potential[sample], reference[0]):9.2e} / "
                    f"{relative_error(result.gradient[sample], reference[1:].T):9.2e}")
            print(f"{distribution:12s} {order:5d} " + " ".join(f"{c:>21s}" for c in columns)
                  + f"   {min(seconds):6.3f}", flush=True)


if __name__ == "__main__":
    main()

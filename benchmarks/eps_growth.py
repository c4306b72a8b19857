"""The accuracy table's margin: the error of a large FMM against the table's 10^4-point rows.

Usage: ``python benchmarks/eps_growth.py [--n 1000000] [--orders 6 9]
[--sets sphere cube plummer] [--samples 1000]``.

For each point set of ``benchmarks/calibrate_eps.py`` (drawn with another seed, ``--n``
points) and each order it builds ``fmmloopy.Fmm(points, order=p)`` on the cost model's tree (as
a user's), evaluates the potential and gradient of charges uniform in [-1, 1], estimates the
relative L2 error over every target with ``Fmm.estimate_error`` (``--samples`` targets, 95 %
interval) and prints it beside the table's error for that set and order and the worst over the
sets whose targets are their sources (what ``eps`` takes for them). ``MARGIN`` in
``fmmloopy/maths/accuracy.py`` must cover the ratio.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from calibrate_eps import point_set, strengths

import fmmloopy
from fmmloopy.maths.accuracy import CALIBRATION_FILE, SELF_TARGET_SETS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--orders", type=int, nargs="+", default=[6, 9])
    parser.add_argument("--sets", nargs="+", default=list(SELF_TARGET_SETS),
                        choices=SELF_TARGET_SETS)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=77)
    args = parser.parse_args()

    rows = {row["order"]: row for row in json.loads(CALIBRATION_FILE.read_text())["rows"]
            if row["family"] == "laplace"}
    for name in args.sets:
        rng = np.random.default_rng([args.seed, 1])
        sources, _ = point_set(name, args.n, rng)
        charges, _ = strengths(args.n, False, rng)
        for order in args.orders:
            clock = time.perf_counter()
            fmm = fmmloopy.Fmm(sources, order=order)
            fields = fmm(charges, gradient=True)
            estimate = fmm.estimate_error(charges, gradient=True, result=fields,
                                          samples=args.samples)
            table = rows[order]["sets"]
            cells = []
            for field in ("potential", "gradient"):
                quantity = f"charge {field}"
                mine = table[name]["errors"][quantity]
                worst = max(table[other]["errors"][quantity] for other in SELF_TARGET_SETS)
                value = estimate[field].relative_l2
                cells.append(f"{field} {estimate[field]} (table: {mine:.2e} for {name}, "
                             f"ratio {value / mine:.2f}; worst set {worst:.2e})")
            print(f"{name} n={args.n} order {order} n_crit {fmm.n_crit}: " + "; ".join(cells)
                  + f"  ({time.perf_counter() - clock:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

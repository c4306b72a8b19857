"""Benchmark: how the set-up of ``fmmloopy.Fmm`` grows with the number of points.

Usage: ``python benchmarks/setup_scaling.py [--sizes 100000 1000000 10000000]
[--distribution cube] [--n-crit auto] [--repeats 2] [--order 6] [--json]``.

One process: a small FMM first (the kernels and operators are then in the process, as after a
first call), then for each size the best of ``--repeats`` set-ups with the defaults, its stages
(``Fmm.setup_seconds``), the ``n_crit`` chosen and the boxes. ``--n-crit`` given (a number),
every size is set up with it; ``auto`` (the default), each chooses its own. Prints
microseconds per point and each size's set-up against linear growth from the first size
(``1.00``: exactly linear; ``1.15``: 15 % more per point than the first size), and the
process's peak resident memory per point so far (the sizes ascend: at the largest, its
set-ups' peak).
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import time

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import DISTRIBUTIONS


def measure(points: np.ndarray, order: int, repeats: int, n_crit: int | str) -> dict:
    """The best of ``repeats`` set-ups of ``points`` (the previous FMM freed first)."""
    best = None
    for _ in range(repeats):
        gc.collect()
        clock = time.perf_counter()
        fmm = fmmloopy.Fmm(points, order=order, n_crit=n_crit)
        seconds = time.perf_counter() - clock
        if best is None or seconds < best["seconds"]:
            best = {"seconds": seconds, "stages": dict(fmm.setup_seconds),
                    "n_crit": fmm.n_crit, "boxes": fmm.tree.nboxes}
        del fmm
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=lambda text: int(float(text)), nargs="+",
                        default=[100_000, 1_000_000, 10_000_000], help="e.g. 1e5 1e6 1e7")
    parser.add_argument("--distribution", choices=sorted(DISTRIBUTIONS), default="cube")
    parser.add_argument("--n-crit", default="auto",
                        help="the most points per leaf, or auto (default)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if min(args.sizes) < 1 or args.repeats < 1:
        parser.error("--sizes and --repeats must be >= 1")
    n_crit = args.n_crit if args.n_crit == "auto" else int(args.n_crit)
    rng = np.random.default_rng(0)
    fmmloopy.Fmm(DISTRIBUTIONS[args.distribution](20_000, rng), order=args.order)  # warm-up
    results = []
    for n in args.sizes:
        points = DISTRIBUTIONS[args.distribution](n, np.random.default_rng(n))
        result = measure(points, args.order, args.repeats, n_crit) | {"n": n}
        result["us_per_point"] = 1e6 * result["seconds"] / n
        result["vs_linear"] = result["us_per_point"] / (results or [result])[0]["us_per_point"]
        # The process's peak resident memory so far (the sizes ascend: this size's set-ups and
        # its points), per point.
        result["peak_bytes_per_point"] = 1024 * resource.getrusage(
            resource.RUSAGE_SELF).ru_maxrss / n
        results.append(result)
        if not args.json:
            stages = " ".join(f"{name} {seconds:.2f}" for name, seconds
                              in result["stages"].items())
            print(f"{n:>9} {result['seconds']:7.3f} s {result['us_per_point']:6.3f} us/point "
                  f"x{result['vs_linear']:.2f} of linear  n_crit {result['n_crit']:>4} "
                  f"boxes {result['boxes']:>8} peak {result['peak_bytes_per_point']:5.0f} B/point "
                  f"({stages})", flush=True)
        del points
    if args.json:
        print(json.dumps({"distribution": args.distribution, "order": args.order,
                          "n_crit": args.n_crit,
                          "results": results}, indent=1))


if __name__ == "__main__":
    main()

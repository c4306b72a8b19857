"""Benchmark: points that move. Per step, a new ``Fmm`` with the defaults and one evaluation, a
new ``Fmm`` given the ``n_crit`` and one evaluation, and ``Fmm.update`` and one evaluation,
interleaved in one process.

Usage: ``python benchmarks/moving_points.py [--n 1000000] [--distribution sphere|cube|plummer]
[--steps 3] [--order 6]``. Each step moves every point by a small random displacement (a time
step); both ways see the same positions. Prints the seconds of each step's set-up (and its
stages) and evaluation, the best of the steps, and the ratios of the totals. The last two use
the ``n_crit`` the first ``Fmm`` chose (``update`` keeps it), so they build the same trees; the
defaults choose it again at every step (``n_crit="auto"``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import DISTRIBUTIONS


def stages(fmm: fmmloopy.Fmm) -> str:
    return " ".join(f"{name} {seconds:.2f}" for name, seconds in fmm.setup_seconds.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--distribution", choices=sorted(DISTRIBUTIONS), default="sphere")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--order", type=int, default=6)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    points = DISTRIBUTIONS[args.distribution](args.n, rng)
    charges = rng.uniform(-1, 1, args.n)
    moving = fmmloopy.Fmm(points, order=args.order)  # warms kernels and operators for both
    moving(charges)
    n_crit = moving.n_crit
    print(f"{args.n} points, {args.distribution}, order {args.order}, n_crit {n_crit} "
          f"(chosen by the first Fmm)")
    best = {"defaults": np.inf, "new": np.inf, "update": np.inf}
    for step in range(args.steps):
        points = points + 1e-3 * rng.standard_normal(points.shape)
        start = time.perf_counter()
        fresh = fmmloopy.Fmm(points, order=args.order)
        built = time.perf_counter()
        fresh(charges)
        defaults = (built - start, time.perf_counter() - built)
        print(f"step {step}: new Fmm (defaults) {defaults[0]:.2f} s + eval {defaults[1]:.2f} s "
              f"({stages(fresh)})")
        best["defaults"] = min(best["defaults"], sum(defaults))
        del fresh
        start = time.perf_counter()
        fresh = fmmloopy.Fmm(points, order=args.order, n_crit=n_crit)
        built = time.perf_counter()
        expected = fresh(charges)
        new = (built - start, time.perf_counter() - built)
        fresh_stages = stages(fresh)
        del fresh
        start = time.perf_counter()
        moving.update(points)
        built = time.perf_counter()
        got = moving(charges)
        updated = (built - start, time.perf_counter() - built)
        same = np.array_equal(got, expected)
        print(f"        new Fmm (n_crit given) {new[0]:.2f} s + eval {new[1]:.2f} s "
              f"({fresh_stages});\n        update {updated[0]:.2f} s + eval "
              f"{updated[1]:.2f} s ({stages(moving)}); "
              f"same results: {same}", flush=True)
        best["new"] = min(best["new"], sum(new))
        best["update"] = min(best["update"], sum(updated))
    print(f"best step: new Fmm (defaults) + eval {best['defaults']:.2f} s, new Fmm (n_crit "
          f"given) + eval {best['new']:.2f} s, update + eval {best['update']:.2f} s; ratios "
          f"{best['defaults'] / best['update']:.2f} and {best['new'] / best['update']:.2f}")


if __name__ == "__main__":
    main()

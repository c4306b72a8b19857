"""Benchmark: points that move. Per step, ``Fmm.update`` and one evaluation against a new
``Fmm`` of the same points with the same ``n_crit`` and one evaluation, interleaved in one
process.

Usage: ``python benchmarks/moving_points.py [--n 1000000] [--distribution sphere cube]
[--step 1e-3 1e-2] [--steps 20] [--order 6] [--check-targets 200]``. Each step moves every point
by a random displacement of ``--step`` times the points' extent (each component normal with
that standard deviation over sqrt(3)), the same positions for both ways. Prints per step the
seconds of the update (and what it did: ``Fmm.last_update``) and of the new ``Fmm``, each with
its evaluation, and the relative L2 error of the update's potentials against a direct sum on
``--check-targets`` sampled points; at the end the medians, their ratios and how many steps
rebuilt. The first ``Fmm`` chooses ``n_crit`` (``auto``); the new ones and the updates use it.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import time

import numpy as np

import fmmloopy
from fmmloopy.base.distributions import DISTRIBUTIONS


def timed(call, *args, **kwargs) -> tuple[float, object]:
    clock = time.perf_counter()
    result = call(*args, **kwargs)
    return time.perf_counter() - clock, result


def run(n: int, distribution: str, step: float, steps: int, order: int, check_targets: int,
        seed: int) -> dict:
    rng = np.random.default_rng(seed)
    points = DISTRIBUTIONS[distribution](n, rng)
    charges = rng.uniform(-1, 1, n)
    extent = float(np.ptp(points, axis=0).max())
    moving = fmmloopy.Fmm(points, order=order)  # also warms kernels and operators
    moving(charges)
    n_crit = moving.n_crit
    print(f"{n} points, {distribution}, step {step:g} of the extent, order {order}, n_crit "
          f"{n_crit} (chosen by the first Fmm)", flush=True)
    times = collections.defaultdict(list)
    what, errors = collections.Counter(), []
    sample = rng.choice(n, min(check_targets, n), replace=False)
    for index in range(steps):
        points = points + step * extent / np.sqrt(3) * rng.standard_normal(points.shape)
        new_s, fresh = timed(fmmloopy.Fmm, points, order=order, n_crit=n_crit)
        new_eval_s, _ = timed(fresh, charges)
        del fresh
        update_s, _ = timed(moving.update, points)
        eval_s, got = timed(moving, charges)
        exact = fmmloopy.DirectSum(points, points[sample])(charges)
        errors.append(float(np.linalg.norm(got[sample] - exact) / np.linalg.norm(exact)))
        kind = "kept" if moving.last_update == fmmloopy.api.fmm.KEPT_BOXES else "rebuilt"
        what[moving.last_update if "at an update before" not in moving.last_update
             else "rebuilt without trying (the boxes did not hold the points of a recent "
                  "update)"] += 1
        for name, seconds in (("update", update_s), ("update_eval", update_s + eval_s),
                              ("new", new_s), ("new_eval", new_s + new_eval_s)):
            times[name].append(seconds)
        print(f"step {index:2d}: update {update_s:.3f} s ({kind}) + eval {eval_s:.3f} s; new Fmm "
              f"{new_s:.3f} s + eval {new_eval_s:.3f} s; error {errors[-1]:.2e}"
              + ("" if kind == "kept" else f" [{moving.last_update}]"), flush=True)
    median = {name: statistics.median(values) for name, values in times.items()}
    rebuilt = sum(count for name, count in what.items()
                  if name != fmmloopy.api.fmm.KEPT_BOXES)
    print(f"median: update {median['update']:.3f} s, new Fmm {median['new']:.3f} s (ratio "
          f"{median['new'] / median['update']:.2f}); update + eval {median['update_eval']:.3f} s,"
          f" new Fmm + eval {median['new_eval']:.3f} s (ratio "
          f"{median['new_eval'] / median['update_eval']:.2f}); rebuilt {rebuilt} of {steps} "
          f"steps; largest error {max(errors):.2e}", flush=True)
    for name, count in what.most_common():
        print(f"    {count:3d} x {name}")
    return median


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=float, default=1e6)
    parser.add_argument("--distribution", nargs="+", choices=sorted(DISTRIBUTIONS),
                        default=["sphere", "cube"])
    parser.add_argument("--step", type=float, nargs="+", default=[1e-3, 1e-2])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--order", type=int, default=6)
    parser.add_argument("--check-targets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for distribution in args.distribution:
        for step in args.step:
            run(int(args.n), distribution, step, args.steps, args.order, args.check_targets,
                args.seed)


if __name__ == "__main__":
    main()

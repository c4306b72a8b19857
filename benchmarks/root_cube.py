"""Benchmark: what each root cube and ``n_crit`` of ``n_crit="auto"`` costs to evaluate, and
what the cost model chose (``fmmloopy/tree/cost.py``, ``choose_tree``).

Usage: ``python benchmarks/root_cube.py [--n 1000000] [--dist cube] [--eps 1e-6]
[--pair-flops 20 30] [--repeats 3]``.

For each root cube of ``ROOT_SCALES`` (the points' bounding cube, and cubes ``2^(1/3)`` and
``2^(2/3)`` times as wide) and each candidate ``n_crit`` making a distinct tree, an
``Fmm(points, eps=...)`` is built with that cube and ``n_crit`` (the set-up's choice replaced by
that one) and its evaluation timed (best of ``--repeats`` after a warm-up). Printed: per tree its
counts, the model's cost for each ``--pair-flops`` and the seconds; then which tree the model
picks among them for each pair cost, which tree ``Fmm``'s own choice is, and the fastest.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

import fmmloopy
import fmmloopy.api.setup as setup
from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.execution.precomputed import get_operators
from fmmloopy.tree.cost import ROOT_SCALES, TreeChoice, choose_n_crit


def fixed_choice(scale: float, n_crit: int | None = None):
    """A stand-in for the set-up's ``choose_tree`` that takes the cube ``scale`` times as wide
    and ``n_crit`` (None: the cube's own best), from the candidates counted there."""
    def choose(points, order, pair_flops, far_field, in_cube):
        scaled = points if scale == 1 else in_cube(scale)
        best, tried = choose_n_crit(scaled, order, pair_flops, far_field)
        tried = [dataclasses.replace(work, root_scale=scale) for work in tried]
        if n_crit is not None and n_crit not in [work.n_crit for work in tried]:
            raise SystemExit(f"n_crit {n_crit} was not counted in the cube x{scale:.3f}")
        return TreeChoice(scaled, scale, best if n_crit is None else n_crit, tried)
    return choose


def evaluation_seconds(points, charges, eps, repeats) -> tuple[float, fmmloopy.Fmm]:
    fmm = fmmloopy.Fmm(points, eps=eps)
    fmm(charges)
    seconds = []
    for _ in range(repeats):
        clock = time.perf_counter()
        fmm(charges)
        seconds.append(time.perf_counter() - clock)
    return min(seconds), fmm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--dist", default="cube", choices=sorted(DISTRIBUTIONS))
    parser.add_argument("--eps", type=float, default=1e-6)
    parser.add_argument("--pair-flops", type=float, nargs="+", default=[20.0, 30.0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    points = DISTRIBUTIONS[args.dist](args.n, rng)
    charges = rng.uniform(-1, 1, args.n)

    auto_seconds, auto = evaluation_seconds(points, charges, args.eps, args.repeats)
    order = auto.order
    far = get_operators("laplace", order).far_field_flops()
    original = setup.choose_tree
    rows = []
    try:
        for scale in ROOT_SCALES:
            setup.choose_tree = fixed_choice(scale)  # the candidates counted in this cube
            seen = set()
            for work in fmmloopy.Fmm(points, eps=args.eps).n_crit_candidates:
                if (work.nboxes, work.v_entries) in seen:
                    continue
                seen.add((work.nboxes, work.v_entries))
                setup.choose_tree = fixed_choice(scale, work.n_crit)
                seconds, fmm = evaluation_seconds(points, charges, args.eps, args.repeats)
                rows.append((scale, work, seconds, fmm.tree.root_half_width))
                print(f"cube x{scale:.3f} n_crit {work.n_crit:5d}: {work.nboxes:7d} boxes, "
                      f"{work.p2p_pairs:.3g} pairs, far field {work.far_field_cost(order, far):.3g}"
                      " flops; model " + ", ".join(
                          f"{work.cost(order, cost, far):.3g} ({cost:g})"
                          for cost in args.pair_flops) + f"; {seconds:.3f} s", flush=True)
    finally:
        setup.choose_tree = original
    fastest = min(rows, key=lambda row: row[2])
    print(f"{args.n} {args.dist} points, eps {args.eps:g} (order {order}); fastest: cube "
          f"x{fastest[0]:.3f} n_crit {fastest[1].n_crit}, {fastest[2]:.3f} s")
    for cost in args.pair_flops:
        pick = min(rows, key=lambda row: row[1].cost(order, cost, far))
        print(f"  the model at {cost:g} flops per pair picks cube x{pick[0]:.3f} n_crit "
              f"{pick[1].n_crit}: {pick[2]:.3f} s ({pick[2] / fastest[2]:.3f} of the fastest)")
    mine = next((row for row in rows if row[3] == auto.tree.root_half_width
                 and row[1].n_crit == auto.n_crit), None)
    print(f"  Fmm's own choice (this device's pair cost): n_crit {auto.n_crit}, root half-width "
          f"{auto.tree.root_half_width:.6g}: {auto_seconds:.3f} s"
          + ("" if mine is None else f" (cube x{mine[0]:.3f})"))


if __name__ == "__main__":
    main()

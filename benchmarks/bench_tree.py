"""Benchmark: tree and U/V/W/X lists for points uniform on the unit sphere surface.

Usage: ``python benchmarks/bench_tree.py [--sizes 100000 1000000] [--n-crit 150] [--repeat 3]
[--distribution sphere|cube]`` (cube: uniform in the unit cube, for comparison).
Prints, per size, the best time of ``repeat`` runs for the tree and for the lists, the depth,
box and leaf counts, and mean / max list sizes (U, W over leaves; V, X over all boxes).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fmmloopy.base.distributions import DISTRIBUTIONS
from fmmloopy.tree.lists import build_interaction_lists, list_size_summary
from fmmloopy.tree.octree import build_tree


def run(n: int, n_crit: int, repeat: int, distribution: str = "sphere") -> dict[str, float]:
    """Time tree and lists for ``n`` points; return the measurements."""
    pts = DISTRIBUTIONS[distribution](n, np.random.default_rng(0))
    t_tree, t_lists = np.inf, np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        tree = build_tree(pts, n_crit=n_crit)
        t1 = time.perf_counter()
        lists = build_interaction_lists(tree)
        t2 = time.perf_counter()
        t_tree, t_lists = min(t_tree, t1 - t0), min(t_lists, t2 - t1)
    leaf = tree.box_is_leaf
    out = {"n": n, "tree_s": t_tree, "lists_s": t_lists, "depth": tree.nlevels - 1,
           "boxes": tree.nboxes, "leaves": int(leaf.sum())}
    for name, size in list_size_summary(tree, lists).items():
        out[f"{name.lower()}_mean"], out[f"{name.lower()}_max"] = size["mean"], size["max"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+",
                        default=[100_000, 200_000, 500_000, 1_000_000])
    parser.add_argument("--n-crit", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--distribution", choices=sorted(DISTRIBUTIONS), default="sphere")
    args = parser.parse_args()
    print(f"{args.distribution}, n_crit={args.n_crit}, best of {args.repeat}")
    print(f"{'N':>9} {'tree s':>7} {'lists s':>7} {'total s':>7} {'us/pt':>6} {'depth':>5} "
          f"{'boxes':>7} {'leaves':>7}  mean/max U      V        W       X")
    for n in args.sizes:
        r = run(n, args.n_crit, args.repeat, args.distribution)
        total = r["tree_s"] + r["lists_s"]
        lists = "  ".join(f"{r[f'{k}_mean']:5.1f}/{r[f'{k}_max']:<3d}" for k in "uvwx")
        print(f"{n:>9} {r['tree_s']:7.3f} {r['lists_s']:7.3f} {total:7.3f} {1e6 * total / n:6.2f} "
              f"{r['depth']:>5} {r['boxes']:>7} {r['leaves']:>7}  {lists}", flush=True)


if __name__ == "__main__":
    main()

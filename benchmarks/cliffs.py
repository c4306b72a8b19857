"""Benchmark: point sets that used to turn the FMM into a direct sum or spoil its result.

Usage: ``python benchmarks/cliffs.py [--case outlier coincident far-point] [--n N]``.

- ``outlier``: N points uniform in the unit cube (sources and targets) plus one target at
  (1e7, 1e7, 1e7): the root box is 1e7 wide, so at depth 20 all sources share one leaf.
- ``coincident``: N points at one place (sources and targets).
- ``far-point``: N points uniform in the unit cube plus one target at (1e200, 0, 0).

Prints the set-up and evaluation seconds, the tree's depth and largest leaf, and the relative
L2 error on 300 sampled targets (and on the far target alone) against a direct sum free of
overflow (``fmmloopy.maths.reference.direct_sum(..., scaled=True)``).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

import fmmloopy
from fmmloopy.maths.green import LAPLACE_3D
from fmmloopy.maths.reference import direct_sum

CASES = ("outlier", "coincident", "far-point")


def make_case(case: str, n: int, rng: np.random.Generator
              ) -> tuple[np.ndarray, np.ndarray | None, list[int]]:
    """Sources, targets (None: the sources) and the indices of the special targets."""
    if case == "coincident":
        return np.full((n, 3), 0.3), None, []
    points = rng.random((n, 3))
    far = [1e7, 1e7, 1e7] if case == "outlier" else [1e200, 0.0, 0.0]
    return points, np.vstack([points, [far]]), [n]


def run(case: str, n: int) -> dict:
    """Build and evaluate one case; return times, tree facts and errors."""
    rng = np.random.default_rng(0)
    sources, targets, special = make_case(case, n, rng)
    charges = rng.random(n)
    clock = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fmm = fmmloopy.Fmm(sources, targets)
    setup = time.perf_counter() - clock
    clock = time.perf_counter()
    potential = fmm(charges)
    evaluation = time.perf_counter() - clock
    all_targets = sources if targets is None else targets
    sample = np.unique(np.concatenate([rng.choice(n, min(n, 300), replace=False),
                                       np.array(special, dtype=int)]))
    expected = direct_sum(LAPLACE_3D, sources, charges, all_targets[sample], scaled=True)
    got = potential[sample]
    scale = np.linalg.norm(expected)
    error = np.linalg.norm(got - expected) / scale if scale else np.linalg.norm(got)
    out = {"case": case, "n": n, "setup_s": setup, "eval_s": evaluation,
           "depth": fmm.tree.nlevels - 1,
           "largest_leaf": int(fmm.tree.box_source_counts[fmm.tree.box_is_leaf].max()),
           "rel_l2_error": float(error)}
    for index in special:
        where = int(np.flatnonzero(sample == index)[0])
        out["far_target_error"] = float(abs(got[where] - expected[where]) / abs(expected[where]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--n", type=int, default=None,
                        help="points (default: 200000 outlier, 100000 coincident, "
                             "20000 far-point)")
    args = parser.parse_args()
    defaults = {"outlier": 200_000, "coincident": 100_000, "far-point": 20_000}
    for case in args.case:
        result = run(case, args.n or defaults[case])
        print("  ".join(f"{key} {value:.3g}" if isinstance(value, float) else f"{key} {value}"
                        for key, value in result.items()), flush=True)


if __name__ == "__main__":
    main()

"""The far field's share of a point set's kernel weights, and the eps table's errors divided by it.

Usage: ``python benchmarks/far_fraction.py [--orders 4 6 8] [--n 10000]``. For the Laplace rows of
the eps calibration table (``fmmloopy/maths/eps_calibration.json``, written by
``benchmarks/calibrate_eps.py``) it rebuilds the table's point sets (same seed, same draws)
and, on the tree of the FMM each row measured (that order, the ``n_crit`` the row's set
records), computes

    rho^2 = sum_t sum_(s far from t) |K(t, s)|^2 / sum_t sum_s |K(t, s)|^2

exactly (every target, every source; "far": outside the U list of the target's leaf), for
``|K|^2`` proportional to ``r^-2`` (charge potential), ``r^-4`` (charge gradient, dipole potential)
and ``r^-6`` (dipole gradient). For strengths drawn independently with mean 0 the FMM's relative
L2 error is about ``e_p rho`` (``e_p`` a far pair's relative error at order ``p``): the printed
``error / rho`` is that ``e_p``, and how little it varies between the sets says how well a rule
that knows ``rho`` would follow the points (docs/kernels.md, "Accuracy by eps").
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import fmmloopy
from fmmloopy.maths.accuracy import CALIBRATION_FILE, FAMILY_GRIDS

sys.path.insert(0, str(Path(__file__).parent))
from calibrate_eps import POINT_SETS, point_set, strengths  # noqa: E402

#: The power of ``1/r`` in ``|K|^2`` of each quantity (Laplace).
POWERS = {"charge potential": 2, "charge gradient": 4, "dipole potential": 4,
          "dipole gradient": 6}


def far_fraction(fmm: fmmloopy.Fmm) -> dict[str, float]:
    """``rho`` of each quantity on ``fmm``'s tree and evaluated lists (module docstring)."""
    tree, lists = fmm.tree, fmm.evaluated_lists
    sources, targets = tree.sources, tree.targets
    far = dict.fromkeys(POWERS, 0.0)
    total = dict.fromkeys(POWERS, 0.0)
    for leaf in np.flatnonzero(tree.box_is_leaf & (tree.box_target_counts > 0)):
        first = tree.box_target_starts[leaf]
        leaf_targets = targets[first:first + tree.box_target_counts[leaf]]
        near = np.zeros(len(sources), dtype=bool)
        for box in lists.u_lists[lists.u_starts[leaf]:lists.u_starts[leaf + 1]]:
            start = tree.box_source_starts[box]
            near[start:start + tree.box_source_counts[box]] = True
        distance = np.linalg.norm(leaf_targets[:, None, :] - sources[None], axis=-1)
        with np.errstate(divide="ignore"):
            inverse_square = np.where(distance > 0, 1.0 / distance ** 2, 0.0)
        for quantity, power in POWERS.items():
            weights = inverse_square ** (power // 2)
            total[quantity] += float(weights.sum())
            far[quantity] += float(weights[:, ~near].sum())
    return {quantity: (far[quantity] / total[quantity]) ** 0.5 for quantity in POWERS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, nargs="+", default=[4, 6, 8])
    parser.add_argument("--table", type=Path, default=CALIBRATION_FILE)
    args = parser.parse_args()
    table = json.loads(args.table.read_text())
    rows = {row["order"]: row for row in table["rows"] if row["family"] == "laplace"}
    # The calibration's draws, in its order: each set's points, then its strengths.
    rng = np.random.default_rng([table["seed"], list(FAMILY_GRIDS).index("laplace")])
    n = rows[min(rows)]["n"]
    cases = {}
    for name in POINT_SETS:
        sources, targets = point_set(name, n, rng)
        strengths(len(sources), False, rng)
        cases[name] = (sources, targets)
    print("order  quantity           " + "  ".join(f"{name:>26s}" for name in POINT_SETS))
    print(" " * 27 + "  ".join(f"{'error   rho   error/rho':>26s}" for _ in POINT_SETS))
    for order in args.orders:
        measured = {}
        for name, (sources, targets) in cases.items():
            fmm = fmmloopy.Fmm(sources, targets, order=order,
                               n_crit=rows[order]["sets"][name]["n_crit"])
            measured[name] = far_fraction(fmm)
        for quantity in POWERS:
            cells = []
            for name in POINT_SETS:
                error = rows[order]["sets"][name]["errors"][quantity]
                rho = measured[name][quantity]
                cells.append(f"{error:8.1e} {rho:7.1e} {error / rho:8.1e}")
            print(f"{order:5d}  {quantity:17s}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
